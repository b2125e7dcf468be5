"""Project-level views: /metrics, and JSON for unknown routes and unhandled errors."""

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mamba_site.errors import ApiError, AuthInvalid, NotFound, allow_methods, error_response


def not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return error_response(NotFound(f"No route for {request.path}."), request)


def server_error(request: HttpRequest) -> JsonResponse:
    return error_response(ApiError(), request)


@allow_methods("GET")
async def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text format; with MAMBA_METRICS__TOKEN set, only for `Bearer <token>`."""
    token = settings.METRICS_TOKEN
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
            response = error_response(AuthInvalid("A valid metrics token is required."), request)
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    return HttpResponse(generate_latest(), content_type=CONTENT_TYPE_LATEST)

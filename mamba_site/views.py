"""Project-level views: /metrics, and JSON for unknown routes and unhandled errors (an HTML
page for the admin while its database is down)."""

import hmac
import sys

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import loader
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mamba_site.errors import (
    DATABASE_ERRORS,
    ApiError,
    AuthInvalid,
    DependencyUnavailable,
    NotFound,
    allow_methods,
    error_response,
    request_id_of,
)

ADMIN_PREFIX = "/admin/"


def not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return error_response(NotFound(f"No route for {request.path}."), request)


def server_error(request: HttpRequest) -> HttpResponse:
    """Django's handler500. It runs while the error is handled (asgiref re-raises it in its
    thread), so a database failure is told apart: a 503, as an HTML page for the admin."""
    if not isinstance(sys.exc_info()[1], DATABASE_ERRORS):
        return error_response(ApiError(), request)
    unavailable = DependencyUnavailable()
    if not request.path.startswith(ADMIN_PREFIX):
        return error_response(unavailable, request)
    # Rendered without the request: its context processors would query the database.
    page = loader.get_template("admin/unavailable.html").render(
        {"request_id": request_id_of(request)}
    )
    return HttpResponse(page, status=unavailable.status, headers=unavailable.headers)


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

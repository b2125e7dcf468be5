"""Project-level views: /metrics, and JSON for unknown routes and unhandled errors (an HTML
page for the admin while its database is down)."""

import hmac
import logging
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

logger = logging.getLogger(__name__)

ADMIN_PREFIX = "/admin/"


def not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return error_response(NotFound(f"No route for {request.path}."), request)


def server_error(request: HttpRequest) -> HttpResponse:
    """Django's handler500. It runs while the error is handled (asgiref re-raises it in its
    thread), so a database failure is told apart: a 503, as an HTML page for the admin."""
    error = _database_error(sys.exc_info()[1])
    if error is None:
        return error_response(ApiError(), request)
    logger.warning("Database unavailable in %s: %s", request.path, type(error).__name__)
    unavailable = DependencyUnavailable()
    if request.path.startswith(ADMIN_PREFIX):
        # Rendered without the request: its context processors would query the database.
        page = loader.get_template("admin/unavailable.html").render(
            {"request_id": request_id_of(request)}
        )
        response: HttpResponse = HttpResponse(
            page, status=unavailable.status, headers=unavailable.headers
        )
    else:
        response = error_response(unavailable, request)
    # Logged above in one line: Django's ERROR with a traceback per request would drown it.
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response


def _database_error(error: BaseException | None) -> BaseException | None:
    """The database error behind `error`: itself, or one it was raised from or while
    handling (an app may wrap it in an error of its own)."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, DATABASE_ERRORS):
            return error
        error = error.__cause__ or error.__context__
        seen += 1
    return None


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

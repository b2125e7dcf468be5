"""JSON handlers for unknown routes and unhandled errors."""

from django.http import HttpRequest, JsonResponse

from mamba_site.errors import ApiError, NotFound, error_response


def not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return error_response(NotFound(f"No route for {request.path}."), request)


def server_error(request: HttpRequest) -> JsonResponse:
    return error_response(ApiError(), request)

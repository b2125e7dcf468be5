"""API errors: stable codes, safe messages and the JSON error response."""

import functools
import logging
import math
from collections.abc import Callable, Coroutine, Mapping
from enum import StrEnum
from typing import Any, ClassVar

from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, JsonResponse
from django.http.response import HttpResponseBase

from mamba_site.db import DatabaseUnavailable

logger = logging.getLogger(__name__)

# A database failure that reaches a view is a 503, never a 500.
DATABASE_ERRORS = (DatabaseUnavailable, OperationalError, InterfaceError)


class ErrorCode(StrEnum):
    AUTH_REQUIRED = "AUTH_REQUIRED"
    AUTH_INVALID = "AUTH_INVALID"
    AUTH_EXPIRED = "AUTH_EXPIRED"
    FORBIDDEN = "FORBIDDEN"
    INVALID_REQUEST = "INVALID_REQUEST"
    VALIDATION_ERROR = "VALIDATION_ERROR"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    NOT_FOUND = "NOT_FOUND"
    MODEL_NOT_FOUND = "MODEL_NOT_FOUND"
    AGENT_NOT_FOUND = "AGENT_NOT_FOUND"
    TOOL_NOT_FOUND = "TOOL_NOT_FOUND"
    RATE_LIMITED = "RATE_LIMITED"
    PROVIDER_ERROR = "PROVIDER_ERROR"
    PROVIDER_NOT_CONFIGURED = "PROVIDER_NOT_CONFIGURED"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    AUTH_UNAVAILABLE = "AUTH_UNAVAILABLE"
    AGENTS_UNAVAILABLE = "AGENTS_UNAVAILABLE"
    RATE_LIMIT_UNAVAILABLE = "RATE_LIMIT_UNAVAILABLE"
    DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE"
    SERVER_BUSY = "SERVER_BUSY"
    REQUEST_TIMEOUT = "REQUEST_TIMEOUT"
    HEADERS_TOO_LARGE = "HEADERS_TOO_LARGE"
    TIMEOUT = "TIMEOUT"
    INTERNAL_ERROR = "INTERNAL_ERROR"


# Details echo what a client sent (a path, tool names, a field path): bounded, so an error
# answer stays small whatever the request was.
MAX_DETAIL_CHARS = 1000
ELLIPSIS = "…"


def truncate(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, ending with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - len(ELLIPSIS)] + ELLIPSIS


class ApiError(Exception):
    """An error whose `detail` is safe to show to any client, at most `MAX_DETAIL_CHARS` long."""

    status: ClassVar[int] = 500
    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL_ERROR
    default_detail: ClassVar[str] = "An internal error occurred."

    def __init__(
        self,
        detail: str | None = None,
        *,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.detail = truncate(detail or self.default_detail, MAX_DETAIL_CHARS)
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})
        super().__init__(self.detail)


class AuthRequired(ApiError):
    status, code = 401, ErrorCode.AUTH_REQUIRED
    default_detail = "Authentication required: send X-API-Key or Authorization: Bearer."


class AuthInvalid(ApiError):
    status, code, default_detail = 401, ErrorCode.AUTH_INVALID, "Invalid credentials."


class AuthExpired(ApiError):
    status, code, default_detail = 401, ErrorCode.AUTH_EXPIRED, "The credentials have expired."


class InvalidRequest(ApiError):
    status, code, default_detail = 400, ErrorCode.INVALID_REQUEST, "The request is invalid."


class ValidationFailed(ApiError):
    status, code = 422, ErrorCode.VALIDATION_ERROR
    default_detail = "The request body does not match the schema."


class UnsupportedMediaType(ApiError):
    status, code = 415, ErrorCode.UNSUPPORTED_MEDIA_TYPE
    default_detail = "Send the body as JSON with Content-Type: application/json."


class PayloadTooLarge(ApiError):
    status, code, default_detail = (
        413,
        ErrorCode.PAYLOAD_TOO_LARGE,
        "The request body is too large.",
    )


class MethodNotAllowed(ApiError):
    status, code, default_detail = 405, ErrorCode.METHOD_NOT_ALLOWED, "Method not allowed."


class Forbidden(ApiError):
    status, code, default_detail = 403, ErrorCode.FORBIDDEN, "Not allowed."


class NotFound(ApiError):
    status, code, default_detail = 404, ErrorCode.NOT_FOUND, "Not found."


class ModelNotFound(ApiError):
    status, code, default_detail = 404, ErrorCode.MODEL_NOT_FOUND, "The model is not available."


class AgentNotFound(ApiError):
    status, code, default_detail = 404, ErrorCode.AGENT_NOT_FOUND, "The agent does not exist."


class RateLimited(ApiError):
    status, code, default_detail = 429, ErrorCode.RATE_LIMITED, "Too many requests."


class ProviderError(ApiError):
    status, code = 502, ErrorCode.PROVIDER_ERROR
    default_detail = "The model provider returned an error."


class ProviderNotConfigured(ApiError):
    status, code = 503, ErrorCode.PROVIDER_NOT_CONFIGURED
    default_detail = (
        "No OpenAI API key is configured. Set MAMBA_OPENAI__API_KEY (or OPENAI_API_KEY) "
        "and restart the service."
    )


class ServiceUnavailable(ApiError):
    status, code = 503, ErrorCode.SERVICE_UNAVAILABLE
    default_detail = "The model provider is unavailable."


class DependencyUnavailable(ApiError):
    """A 503 because the database or Redis failed; clients may retry after `Retry-After`."""

    status, code = 503, ErrorCode.DATABASE_UNAVAILABLE
    default_detail = "The service's database is unavailable. Retry shortly."
    retry_after_seconds: ClassVar[int] = 5

    def __init__(self, detail: str | None = None, *, retry_after: float | None = None) -> None:
        seconds = max(1, math.ceil(retry_after or self.retry_after_seconds))
        super().__init__(detail, headers={"Retry-After": str(seconds)})


class AuthUnavailable(DependencyUnavailable):
    code = ErrorCode.AUTH_UNAVAILABLE
    default_detail = (
        "API keys cannot be checked right now (the key store is unavailable). Retry shortly."
    )


class AgentsUnavailable(DependencyUnavailable):
    code = ErrorCode.AGENTS_UNAVAILABLE
    default_detail = "Agents cannot be read right now (the database is unavailable). Retry shortly."


class RateLimitUnavailable(DependencyUnavailable):
    code = ErrorCode.RATE_LIMIT_UNAVAILABLE
    default_detail = "Limits cannot be checked right now (Redis is unavailable). Retry shortly."


class ServerBusy(DependencyUnavailable):
    """The server process holds as many request bodies as it may at once."""

    code = ErrorCode.SERVER_BUSY
    default_detail = "The server is receiving too many request bodies at once. Retry shortly."
    retry_after_seconds = 1


class RequestTimeout(ApiError):
    """The client did not send its request (head or body) in time."""

    status, code = 408, ErrorCode.REQUEST_TIMEOUT
    default_detail = "The request was not received in time."


class HeadersTooLarge(ApiError):
    """The request's headers are over the server's limits (size, count or one line)."""

    status, code = 431, ErrorCode.HEADERS_TOO_LARGE
    default_detail = "The request's headers are too large."


class UpstreamTimeout(ApiError):
    status, code, default_detail = (
        504,
        ErrorCode.TIMEOUT,
        "The model provider did not answer in time.",
    )


def request_id_of(request: HttpRequest | None) -> str:
    return getattr(request, "request_id", "") if request is not None else ""


def error_body(error: ApiError, request_id: str) -> dict[str, Any]:
    """The JSON error body, for responses made outside Django too (`mamba_site.bodylimit`)."""
    return {
        "detail": error.detail,
        "code": str(error.code),
        "request_id": request_id,
        **error.extra,
    }


def error_response(error: ApiError, request: HttpRequest | None = None) -> JsonResponse:
    body = error_body(error, request_id_of(request))
    return JsonResponse(body, status=error.status, headers=error.headers)


type AsyncView = Callable[..., Coroutine[Any, Any, HttpResponseBase]]


def json_errors(view: AsyncView) -> AsyncView:
    """Render `ApiError`s raised by an async view as JSON; anything else becomes a logged 500."""

    @functools.wraps(view)
    async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        try:
            return await view(request, *args, **kwargs)
        except ApiError as error:
            return error_response(error, request)
        except RequestDataTooBig:
            return error_response(PayloadTooLarge(), request)
        except DATABASE_ERRORS as error:
            logger.warning("Database unavailable in %s: %s", request.path, type(error).__name__)
            return error_response(DependencyUnavailable(), request)
        except Exception:
            logger.exception("Unhandled error in %s", request.path)
            return error_response(ApiError(), request)

    return wrapper


def allow_methods(*methods: str) -> Callable[[AsyncView], AsyncView]:
    """Like `require_http_methods`, but the 405 is our JSON error (with an `Allow` header)."""

    def decorator(view: AsyncView) -> AsyncView:
        @functools.wraps(view)
        async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if request.method not in methods:
                error = MethodNotAllowed(
                    f"Use {' or '.join(methods)} for {request.path}.",
                    headers={"Allow": ", ".join(methods)},
                )
                return error_response(error, request)
            return await view(request, *args, **kwargs)

        return wrapper

    return decorator

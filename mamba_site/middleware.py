"""Cross-cutting middleware: request id and access log (both async-only)."""

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from inspect import iscoroutinefunction, markcoroutinefunction

from django.http import HttpRequest
from django.http.response import HttpResponseBase

type AsyncGetResponse = Callable[[HttpRequest], Awaitable[HttpResponseBase]]

REQUEST_ID_HEADER = "X-Request-ID"
# Probes run every few seconds on every pod; logging each at INFO would drown the access log.
QUIET_PREFIXES = ("/health/",)

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")
access_logger = logging.getLogger("mamba.access")


class RequestIdLogFilter(logging.Filter):
    """Adds `request_id` to every log record (`-` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True


def _valid_request_id(value: str | None) -> str | None:
    if not value or len(value) > 64:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


class AsyncMiddleware:
    async_capable = True
    sync_capable = False

    def __init__(self, get_response: AsyncGetResponse) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)


class RequestIdMiddleware(AsyncMiddleware):
    """Accepts a client's `X-Request-ID` when it is a UUID, else makes one; echoes it back."""

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        request_id = _valid_request_id(request.headers.get(REQUEST_ID_HEADER)) or str(uuid.uuid4())
        request.request_id = request_id  # type: ignore[attr-defined]
        request_id_var.set(request_id)
        response = await self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        return response


class AccessLogMiddleware(AsyncMiddleware):
    """One line per request once its response starts (streams log their own end)."""

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        started = time.perf_counter()
        response = await self.get_response(request)
        duration_ms = (time.perf_counter() - started) * 1000
        level = logging.DEBUG if request.path.startswith(QUIET_PREFIXES) else logging.INFO
        access_logger.log(
            level,
            "%s %s %s %.1fms",
            request.method,
            request.path,
            response.status_code,
            duration_ms,
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round(duration_ms, 1),
            },
        )
        return response

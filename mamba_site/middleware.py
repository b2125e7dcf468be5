"""Cross-cutting middleware: request id, Host validation, access log, the frontend of a
request's origin, API authentication, and Django's own middleware limited to the admin."""

import logging
import time
from collections.abc import Awaitable, Callable
from inspect import iscoroutinefunction, markcoroutinefunction
from typing import Any, cast

from asgiref.sync import sync_to_async
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.middleware.csrf import CsrfViewMiddleware
from django.utils.deprecation import MiddlewareMixin

from mamba_site import metrics
from mamba_site.auth import authenticate, www_authenticate
from mamba_site.errors import ApiError, InvalidRequest, error_response
from mamba_site.frontends import request_frontend
from mamba_site.logs import REQUEST_ID_HEADER, request_id_from, request_id_var
from mamba_site.quotas import request_hit

type AsyncGetResponse = Callable[[HttpRequest], Awaitable[HttpResponseBase]]

# Probes run every few seconds on every pod; logging each at INFO would drown the access log.
QUIET_PREFIXES = ("/health", "/metrics")
# Routes that authenticate on their own (the admin's login, the metrics token) or not at all.
PUBLIC_PATHS = ("/health", "/metrics")
ADMIN_PREFIX = "/admin/"
PUBLIC_PREFIXES = ("/health/", ADMIN_PREFIX)

access_logger = logging.getLogger("mamba.access")


class AsyncMiddleware:
    async_capable = True
    sync_capable = False

    def __init__(self, get_response: AsyncGetResponse) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        """Passes the request on; subclasses do their work around it."""
        return await self.get_response(request)


class RequestIdMiddleware(AsyncMiddleware):
    """Accepts a client's `X-Request-ID` when it is a UUID, else makes one; echoes it back."""

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        # When Mamba began with the request (its Server-Timing counts from here).
        request.received_at = time.perf_counter()  # type: ignore[attr-defined]
        request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))
        request.request_id = request_id  # type: ignore[attr-defined]
        request_id_var.set(request_id)
        response = await self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        return response


class HostValidationMiddleware(AsyncMiddleware):
    """Refuses a Host outside ALLOWED_HOSTS with a JSON 400 (Django's CommonMiddleware would,
    but it runs for the admin only). Placed after the request id, so the error carries it."""

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        try:
            request.get_host()
        except DisallowedHost:
            return error_response(
                InvalidRequest("The Host header is not one this service answers to."), request
            )
        return await self.get_response(request)


class AccessLogMiddleware(AsyncMiddleware):
    """One line per request once its response starts (streams log their own end)."""

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        started = time.perf_counter()
        response = await self.get_response(request)
        duration = time.perf_counter() - started
        route = route_of(request)
        method = metrics.method_label(request.method)
        metrics.http_requests.labels(route, method, response.status_code).inc()
        metrics.http_duration.labels(route, method).observe(duration)
        level = logging.DEBUG if request.path.startswith(QUIET_PREFIXES) else logging.INFO
        principal = getattr(request, "principal", None)
        if principal is not None and principal.frontend_name is not None:
            metrics.frontend_requests.labels(principal.frontend_name, response.status_code).inc()
        access_logger.log(
            level,
            "%s %s %s %.1fms",
            request.method,
            request.path,
            response.status_code,
            duration * 1000,
            extra={
                "method": request.method,
                "path": request.path,
                "route": route,
                "status": response.status_code,
                "duration_ms": round(duration * 1000, 1),
                "key": principal.name if principal is not None else None,
                # Only a frontend's: its limits count per client.
                "client": principal.client if principal is not None else None,
            },
        )
        return response


def route_of(request: HttpRequest) -> str:
    """The URL pattern that serves the request's path, as metrics and logs label it."""
    match = request.resolver_match
    if match is not None:
        return "/" + match.route if match.route else "unmatched"
    # A middleware answered before the view ran (401, 429, a redirect): resolve the path.
    return metrics.route_of_path(request.path_info, getattr(request, "urlconf", None))


class FrontendOriginMiddleware(AsyncMiddleware):
    """Looks up the enabled frontend of the request's `Origin` before CORS, whose check (a
    synchronous signal) then only reads it; the `origin` auth mode reads it too."""

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        await request_frontend(request)
        return await self.get_response(request)


class ApiAuthMiddleware(AsyncMiddleware):
    """Authenticates every API request (MAMBA_AUTH__MODE) and counts it against its limit."""

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if request.path in PUBLIC_PATHS or request.path.startswith(PUBLIC_PREFIXES):
            return await self.get_response(request)
        try:
            principal = await authenticate(request)
            # Set before the limit's check, so that a refusal's log line names the caller.
            request.principal = principal  # type: ignore[attr-defined]
            limit_headers = await request_hit(principal)
        except ApiError as error:
            response: HttpResponseBase = error_response(error, request)
            if error.status == 401:
                metrics.auth_failures.labels(str(error.code)).inc()
                response["WWW-Authenticate"] = www_authenticate(error)
            return response
        response = await self.get_response(request)
        for name, value in limit_headers.items():
            response[name] = value
        return response


class _AdminOnly(MiddlewareMixin):
    """Runs one of Django's middleware for the admin only. Django runs their sync hooks in a
    worker thread (two hops per request each); the API needs none of sessions, users,
    messages or CSRF cookies, so its requests skip them.

    Mixed in before the middleware class (which is a `MiddlewareMixin` too), so `super()` is
    that middleware."""

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.async_mode:
            return self.__acall__(request)
        if request.path.startswith(ADMIN_PREFIX):
            return super().__call__(request)
        return self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        if request.path.startswith(ADMIN_PREFIX):
            return await super().__acall__(request)
        # In async mode (the only caller of __acall__) get_response is a coroutine function.
        return await cast(Awaitable[HttpResponseBase], self.get_response(request))


class AdminSessionMiddleware(_AdminOnly, SessionMiddleware):
    pass


class AdminCommonMiddleware(_AdminOnly, CommonMiddleware):
    pass


class AdminCsrfViewMiddleware(_AdminOnly, CsrfViewMiddleware):
    # Async on purpose: Django adapts each process_view to its own mode (the base is sync).
    async def process_view(  # type: ignore[override]
        self, request: HttpRequest, callback: Any, args: Any, kwargs: Any
    ) -> HttpResponseBase | None:
        if not request.path.startswith(ADMIN_PREFIX):
            return None
        return await sync_to_async(super().process_view)(request, callback, args, kwargs)


class AdminAuthenticationMiddleware(_AdminOnly, AuthenticationMiddleware):
    pass


class AdminMessageMiddleware(_AdminOnly, MessageMiddleware):
    pass


class AdminXFrameOptionsMiddleware(_AdminOnly, XFrameOptionsMiddleware):
    pass

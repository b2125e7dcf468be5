"""HTTPS redirect and security headers: Django's `SecurityMiddleware`, async, same settings.

Django's runs its hooks through `MiddlewareMixin`, which under ASGI calls each in a worker
thread: two thread hops per request. This one does the same work on the event loop
(django/middleware/security.py is the reference; keep them in step)."""

import re

from django.conf import settings
from django.http import HttpRequest, HttpResponsePermanentRedirect
from django.http.response import HttpResponseBase

from mamba_site.middleware import AsyncGetResponse, AsyncMiddleware


def _hsts_value() -> str:
    value = f"max-age={settings.SECURE_HSTS_SECONDS}"
    if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
        value += "; includeSubDomains"
    if settings.SECURE_HSTS_PRELOAD:
        value += "; preload"
    return value


def _static_headers() -> dict[str, str]:
    """The headers every response gets unless it set them itself."""
    headers = {}
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        headers["X-Content-Type-Options"] = "nosniff"
    policy = settings.SECURE_REFERRER_POLICY
    if policy:
        # A comma separated string or a sequence of values: fallbacks for older browsers.
        values = policy.split(",") if isinstance(policy, str) else policy
        headers["Referrer-Policy"] = ",".join(value.strip() for value in values)
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        headers["Cross-Origin-Opener-Policy"] = settings.SECURE_CROSS_ORIGIN_OPENER_POLICY
    return headers


class SecurityMiddleware(AsyncMiddleware):
    """Redirects plain HTTP to HTTPS (SECURE_SSL_REDIRECT, except SECURE_REDIRECT_EXEMPT
    paths), and adds HSTS (HTTPS only), nosniff, Referrer-Policy and
    Cross-Origin-Opener-Policy to every response, the redirect included."""

    def __init__(self, get_response: AsyncGetResponse) -> None:
        super().__init__(get_response)
        # Read once, as Django's does: settings do not change in a running process.
        self.redirect = settings.SECURE_SSL_REDIRECT
        self.redirect_host = settings.SECURE_SSL_HOST
        self.redirect_exempt = tuple(re.compile(r) for r in settings.SECURE_REDIRECT_EXEMPT)
        self.hsts = _hsts_value() if settings.SECURE_HSTS_SECONDS else ""
        self.headers = _static_headers()

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if self._redirects(request):
            host = self.redirect_host or request.get_host()
            response: HttpResponseBase = HttpResponsePermanentRedirect(
                f"https://{host}{request.get_full_path()}"
            )
        else:
            response = await self.get_response(request)
        if self.hsts and request.is_secure():
            response.setdefault("Strict-Transport-Security", self.hsts)
        for name, value in self.headers.items():
            response.setdefault(name, value)
        return response

    def _redirects(self, request: HttpRequest) -> bool:
        if not self.redirect or request.is_secure():
            return False
        path = request.path.lstrip("/")
        return not any(pattern.search(path) for pattern in self.redirect_exempt)

"""System checks for the configuration, also run when the ASGI server starts."""

import logging
from typing import Any

from django.conf import settings
from django.core import checks
from django.core.checks.security import base as django_security
from django.core.checks.security import csrf as django_csrf
from django.core.exceptions import ImproperlyConfigured

from mamba_site.clients import trusted_proxies_parse
from mamba_site.providers import ProvidersConfigError, providers

logger = logging.getLogger("mamba.startup")

TAG = "mamba"


@checks.register(TAG)
def check_upstream_configured(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    if settings.OPENAI_API_KEY or settings.PROVIDERS_FILE:
        return []
    if settings.MOCK_MODEL_ENABLED:
        return [
            checks.Warning(
                "No OpenAI API key is configured: /chat answers with the offline model "
                "'mock/echo'.",
                hint="Set MAMBA_OPENAI__API_KEY (or OPENAI_API_KEY) to talk to a real model.",
                id="mamba.W001",
            )
        ]
    return [
        checks.Warning(
            "No OpenAI API key is configured: /chat will answer 503 PROVIDER_NOT_CONFIGURED.",
            hint="Set MAMBA_OPENAI__API_KEY (or OPENAI_API_KEY), or MAMBA_MOCK_MODEL__ENABLED=true "
            "for the offline model 'mock/echo'.",
            id="mamba.W002",
        )
    ]


AUTH_MODES = {"none", "api_key", "jwt", "origin"}


@checks.register(TAG)
def check_auth_mode(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    modes = {mode.strip() for mode in settings.AUTH_MODE.split(",")}
    if not modes <= AUTH_MODES or ("none" in modes and len(modes) > 1):
        return [
            checks.Error(
                f"MAMBA_AUTH__MODE={settings.AUTH_MODE!r} is not a mode.",
                hint="Use none, or any of api_key, jwt and origin, comma separated "
                "(api_key,origin).",
                id="mamba.E002",
            )
        ]
    if "none" in modes:
        if not settings.DEBUG and not settings.AUTH_ALLOW_NONE_IN_PRODUCTION:
            return [
                checks.Error(
                    "MAMBA_AUTH__MODE=none with MAMBA_DEBUG off would serve the API to anyone.",
                    hint="Set MAMBA_AUTH__MODE=api_key (or jwt), or "
                    "MAMBA_AUTH__ALLOW_NONE_IN_PRODUCTION=true if a proxy in front authenticates.",
                    id="mamba.E001",
                )
            ]
        return [
            checks.Warning(
                "MAMBA_AUTH__MODE=none: the API answers without authentication.",
                hint="Fine for development; use api_key or jwt anywhere else.",
                id="mamba.W003",
            )
        ]
    if "jwt" in modes and not (
        settings.AUTH_JWT_SECRET or settings.AUTH_JWT_PUBLIC_KEY or settings.AUTH_JWT_JWKS_URL
    ):
        return [
            checks.Error(
                "MAMBA_AUTH__MODE includes jwt but no key to verify tokens is configured.",
                hint="Set MAMBA_AUTH__JWT__SECRET, MAMBA_AUTH__JWT__PUBLIC_KEY or "
                "MAMBA_AUTH__JWT__JWKS_URL.",
                id="mamba.E003",
            )
        ]
    return []


@checks.register(TAG)
def check_trusted_proxies(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    try:
        trusted_proxies_parse(settings.TRUSTED_PROXIES)
    except ValueError as error:
        return [
            checks.Error(
                f"MAMBA_TRUSTED_PROXIES={settings.TRUSTED_PROXIES!r}: {error}",
                hint="Leave it empty, give the number of proxies in front (1), or their "
                "networks (10.0.0.0/8,fd00::/8).",
                id="mamba.E006",
            )
        ]
    return []


@checks.register(TAG)
def check_origin_clients(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Behind a proxy, with no trusted proxies every client of a frontend is the proxy."""
    modes = {mode.strip() for mode in settings.AUTH_MODE.split(",")}
    if "origin" not in modes or settings.TRUSTED_PROXIES.strip():
        return []
    return [
        checks.Warning(
            "MAMBA_AUTH__MODE includes origin and MAMBA_TRUSTED_PROXIES is empty: frontends' "
            "per-client limits count by the address that connects, which behind a proxy or "
            "ingress is the proxy's, one client for everybody.",
            hint="Behind an ingress set MAMBA_TRUSTED_PROXIES (1, or the proxies' CIDRs); "
            "see k8s/README.md. Served directly, ignore this.",
            id="mamba.W004",
        )
    ]


FRONTEND_MIDDLEWARE = "mamba_site.middleware.FrontendOriginMiddleware"
CORS_MIDDLEWARE = "corsheaders.middleware.CorsMiddleware"


@checks.register(TAG)
def check_frontend_middleware(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    middleware = list(settings.MIDDLEWARE)
    if CORS_MIDDLEWARE not in middleware or (
        FRONTEND_MIDDLEWARE in middleware
        and middleware.index(FRONTEND_MIDDLEWARE) < middleware.index(CORS_MIDDLEWARE)
    ):
        return []
    return [
        checks.Error(
            f"{FRONTEND_MIDDLEWARE} must come before {CORS_MIDDLEWARE} in MIDDLEWARE.",
            hint="Without it there, CORS does not allow the registered frontends' origins.",
            id="mamba.E007",
        )
    ]


MAX_TOKENS_PARAMS = ("max_tokens", "max_completion_tokens")


@checks.register(TAG)
def check_max_tokens_param(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    if settings.OPENAI_MAX_TOKENS_PARAM in MAX_TOKENS_PARAMS:
        return []
    return [
        checks.Error(
            f"MAMBA_OPENAI__MAX_TOKENS_PARAM={settings.OPENAI_MAX_TOKENS_PARAM!r} is not one "
            "the Chat Completions API knows.",
            hint="Use max_tokens or max_completion_tokens.",
            id="mamba.E004",
        )
    ]


@checks.register(TAG)
def check_providers(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """The providers file, read and validated as requests will use it."""
    try:
        providers.load()
    except ProvidersConfigError as error:
        return [
            checks.Error(
                str(error),
                hint='See the README\'s "Providers, routing and fallbacks" for the format.',
                id="mamba.E005",
            )
        ]
    return []


# Django's deploy checks look for its own middleware by name. Ours stand in for three of them
# (async, or limited to the admin), so settings.py silences Django's "not in MIDDLEWARE"
# warnings (security.W001, W002, W003) and these checks say the same about ours: that each is
# installed, and what Django would say about the settings it reads.
SECURITY_MIDDLEWARE = "mamba_site.security.SecurityMiddleware"
ADMIN_CSRF_MIDDLEWARE = "mamba_site.middleware.AdminCsrfViewMiddleware"
ADMIN_XFRAME_MIDDLEWARE = "mamba_site.middleware.AdminXFrameOptionsMiddleware"


def _missing(middleware: str, stands_in_for: str, what: str, id: str) -> checks.Warning:
    return checks.Warning(
        f"{middleware} is not in MIDDLEWARE, so {what}.",
        hint=f"It stands in for {stands_in_for}: put it back in MIDDLEWARE.",
        id=id,
    )


@checks.register(checks.Tags.security, deploy=True)
def check_security_middleware(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    if SECURITY_MIDDLEWARE not in settings.MIDDLEWARE:
        what = (
            "the SECURE_SSL_REDIRECT, SECURE_HSTS_*, SECURE_CONTENT_TYPE_NOSNIFF, "
            "SECURE_REFERRER_POLICY and SECURE_CROSS_ORIGIN_OPENER_POLICY settings have no effect"
        )
        return [_missing(SECURITY_MIDDLEWARE, "SecurityMiddleware", what, "mamba.W010")]
    messages: list[checks.CheckMessage] = []
    if not settings.SECURE_HSTS_SECONDS:
        messages.append(django_security.W004)
    else:
        if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS is not True:
            messages.append(django_security.W005)
        if settings.SECURE_HSTS_PRELOAD is not True:
            messages.append(django_security.W021)
    if settings.SECURE_CONTENT_TYPE_NOSNIFF is not True:
        messages.append(django_security.W006)
    if settings.SECURE_SSL_REDIRECT is not True:
        messages.append(django_security.W008)
    policy = settings.SECURE_REFERRER_POLICY
    if policy is None:
        messages.append(django_security.W022)
    else:
        values = {v.strip() for v in policy.split(",")} if isinstance(policy, str) else set(policy)
        if not values <= django_security.REFERRER_POLICY_VALUES:
            messages.append(django_security.E023)
    opener = settings.SECURE_CROSS_ORIGIN_OPENER_POLICY
    if opener is not None and opener not in django_security.CROSS_ORIGIN_OPENER_POLICY_VALUES:
        messages.append(django_security.E024)
    return messages


@checks.register(checks.Tags.security, deploy=True)
def check_admin_middleware(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    messages: list[checks.CheckMessage] = []
    if ADMIN_CSRF_MIDDLEWARE not in settings.MIDDLEWARE:
        what = "the admin's forms have no CSRF protection"
        messages.append(_missing(ADMIN_CSRF_MIDDLEWARE, "CsrfViewMiddleware", what, "mamba.W011"))
    elif not settings.CSRF_USE_SESSIONS and settings.CSRF_COOKIE_SECURE is not True:
        messages.append(django_csrf.W016)
    if ADMIN_XFRAME_MIDDLEWARE not in settings.MIDDLEWARE:
        what = "the admin's pages may be framed (clickjacking)"
        messages.append(
            _missing(ADMIN_XFRAME_MIDDLEWARE, "XFrameOptionsMiddleware", what, "mamba.W012")
        )
    elif settings.X_FRAME_OPTIONS != "DENY":
        messages.append(django_security.W019)
    return messages


REDIS_ERROR_MODES = ("local", "closed")


@checks.register(TAG)
def check_outage_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """What the service does while Redis or the database fails (README: "When a dependency
    fails")."""
    messages: list[checks.CheckMessage] = []
    if settings.LIMITS_ON_REDIS_ERROR not in REDIS_ERROR_MODES:
        messages.append(
            checks.Error(
                f"MAMBA_LIMITS__ON_REDIS_ERROR={settings.LIMITS_ON_REDIS_ERROR!r} is not a mode.",
                hint="Use local (count the limits in each process while Redis fails) or closed "
                "(answer limited requests 503 RATE_LIMIT_UNAVAILABLE).",
                id="mamba.E008",
            )
        )
    pool = settings.DATABASES["default"].get("OPTIONS", {}).get("pool")
    if isinstance(pool, dict) and pool.get("max_size", 0) < settings.DATABASE_THREADS:
        messages.append(
            checks.Warning(
                f"MAMBA_DATABASE__THREADS={settings.DATABASE_THREADS} is more than the "
                f"connection pool's {pool.get('max_size')}: database calls would wait for a "
                "connection.",
                hint="Keep MAMBA_DATABASE__THREADS at most MAMBA_DATABASE__POOL_MAX_SIZE.",
                id="mamba.W005",
            )
        )
    return messages


def log_startup_warnings() -> None:
    """Log the configuration checks; refuse to start on an error (daphne runs no checks)."""
    errors = []
    for message in checks.run_checks(tags=[TAG]):
        if message.is_serious():
            logger.error("%s %s", message.msg, message.hint or "")
            errors.append(message.msg)
        else:
            logger.warning("%s %s", message.msg, message.hint or "")
    if errors:
        raise ImproperlyConfigured(" ".join(errors))

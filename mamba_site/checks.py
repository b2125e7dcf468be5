"""System checks for the configuration, also run when the ASGI server starts."""

import logging
from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

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


AUTH_MODES = {"none", "api_key", "jwt"}


@checks.register(TAG)
def check_auth_mode(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    modes = {mode.strip() for mode in settings.AUTH_MODE.split(",")}
    if not modes <= AUTH_MODES or ("none" in modes and len(modes) > 1):
        return [
            checks.Error(
                f"MAMBA_AUTH__MODE={settings.AUTH_MODE!r} is not a mode.",
                hint="Use none, api_key, jwt or api_key,jwt.",
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
                id="mamba.E006",
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
                id="mamba.W004",
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

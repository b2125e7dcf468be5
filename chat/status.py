"""What people see of routing: the admin's Providers page and /health's providers component.
Both show this replica's view; no key, header value or provider body ever reaches them."""

import os
import socket
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from chat.cooldowns import RedisCooldowns
from chat.routing import Router, routers
from mamba_site.providers import Provider

SETTINGS_SOURCE = "MAMBA_OPENAI__* settings"
SETTINGS_KEY_ENV = "MAMBA_OPENAI__API_KEY (or OPENAI_API_KEY)"


async def providers_resting() -> list[dict[str, Any]]:
    """The targets resting now, here or on another replica, and why. The report is public:
    model names clients chose (passthrough) show as `<provider>/other`."""
    resting = []
    for row in await routers.get().current_report():
        if not row["resting"]:
            continue
        here = row["cooling_seconds"] > 0
        last_error = row["last_errors"][-1][1] if row["last_errors"] else ""
        resting.append(
            {
                "target": f"{row['provider']}/other" if row["passthrough"] else row["target"],
                "where": "this replica" if here else "another replica",
                "seconds_left": row["cooling_seconds"] if here else row["elsewhere_seconds"],
                "last_error": last_error if here else row["elsewhere_error"],
                "failures_in_row": row["failures_in_row"],
            }
        )
    return resting


def providers_page(router: Router, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The Providers page's context: routes with their targets' rows, providers' settings."""
    config = router.config
    from_file = config.source != "settings"
    rows = [
        {
            **row,
            "last_errors": [
                {"at": datetime.fromtimestamp(at, UTC), "kind": kind}
                for at, kind in reversed(row["last_errors"])
            ],
        }
        for row in rows
    ]
    models = [
        {
            "name": route.name,
            "strategy": route.strategy,
            "weights": route.weights,
            "fallbacks": route.fallbacks,
            "rows": [row for row in rows if row["model"] == route.name and not row["passthrough"]],
        }
        for route in config.models.values()
    ]
    cooldowns = router.cooldowns
    refreshed = cooldowns.refreshed_at
    return {
        "source": config.source if from_file else SETTINGS_SOURCE,
        "replica": f"{socket.gethostname()} (pid {os.getpid()})",
        "shared": isinstance(cooldowns, RedisCooldowns),
        "shared_age": None if refreshed is None else round(router.clock() - refreshed, 1),
        "models": models,
        "passthrough": config.passthrough,
        "allowed": config.allowed,
        "passthrough_rows": [row for row in rows if row["passthrough"]],
        "mock_enabled": config.mock_enabled,
        "providers": [
            provider_settings(provider, from_file=from_file)
            for provider in config.providers.values()
        ],
    }


def provider_settings(provider: Provider, *, from_file: bool) -> dict[str, Any]:
    """The settings of a provider that matter, safe to show: the key's variable name and
    whether it holds a value, header names without values, the URL without user or query."""
    key_env = provider.api_key_env if from_file else SETTINGS_KEY_ENV
    return {
        "name": provider.name,
        "base_url": _safe_url(provider.base_url),
        "key_env": key_env,
        "key_set": bool(key_env) and bool(provider.api_key),
        "timeout_seconds": provider.timeout_seconds,
        "connect_timeout_seconds": provider.connect_timeout_seconds,
        "first_byte_timeout_seconds": provider.first_byte_timeout_seconds,
        "max_retries": provider.max_retries,
        "cooldown_failures": provider.cooldown_failures,
        "cooldown_seconds": provider.cooldown_seconds,
        "stream_usage": provider.stream_usage,
        "max_tokens_param": provider.max_tokens_param,
        "max_connections": provider.max_connections,
        "header_names": sorted(provider.headers),
    }


def _safe_url(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return parts._replace(netloc=netloc, query="", fragment="").geturl()

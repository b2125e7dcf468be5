"""System checks for the configuration, also logged when the ASGI server starts."""

import logging
from typing import Any

from django.conf import settings
from django.core import checks

logger = logging.getLogger("mamba.startup")

TAG = "mamba"


@checks.register(TAG)
def check_upstream_configured(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    if settings.OPENAI_API_KEY:
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


def log_startup_warnings() -> None:
    for message in checks.run_checks(tags=[TAG]):
        logger.warning("%s %s", message.msg, message.hint or "")

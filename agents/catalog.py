"""The model catalog: what GET /models lists and what an agent may pin."""

from typing import Any

from django.conf import settings

DEFAULT_CATALOG: tuple[dict[str, Any], ...] = (
    {
        "id": "gpt-4o",
        "name": "GPT-4o",
        "provider": "openai",
        "description": "OpenAI's flagship multimodal model.",
        "context_window": 128000,
        "supports_tools": True,
    },
    {
        "id": "gpt-4o-mini",
        "name": "GPT-4o mini",
        "provider": "openai",
        "description": "A small, fast and affordable model.",
        "context_window": 128000,
        "supports_tools": True,
    },
)
# The offline model of chat.mock: deterministic replies without a key.
MOCK_MODEL = "mock/echo"
MOCK_ENTRY = {
    "id": MOCK_MODEL,
    "name": "Offline mock",
    "provider": "mamba",
    "description": "Deterministic offline replies for development; no API key needed.",
    "context_window": 0,
    "supports_tools": True,
}


def model_catalog() -> list[dict[str, Any]]:
    entries = [_entry(item) for item in settings.MODELS_CATALOG] or list(DEFAULT_CATALOG)
    if settings.MODELS_ALLOWED:
        entries = [e for e in entries if e["id"] in settings.MODELS_ALLOWED]
    if settings.MOCK_MODEL_ENABLED:
        entries.append(MOCK_ENTRY)
    return entries


def _entry(item: dict[str, Any] | str) -> dict[str, Any]:
    """A catalog entry from settings, where only `id` is required."""
    if isinstance(item, str):
        item = {"id": item}
    return {
        "id": item["id"],
        "name": item.get("name", item["id"]),
        "provider": item.get("provider", "openai"),
        "description": item.get("description", ""),
        "context_window": item.get("context_window", 0),
        "supports_tools": item.get("supports_tools", True),
    }


def known_model_ids() -> set[str]:
    """Model names an agent may pin: the catalog (or the allowlist, when one is set)."""
    return set(settings.MODELS_ALLOWED) or {entry["id"] for entry in model_catalog()}

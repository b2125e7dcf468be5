"""Model providers and routes: the `MAMBA_PROVIDERS_FILE` TOML file (or the `MAMBA_OPENAI__*`
settings as one provider named `openai`), validated, and the model catalog derived from it.

Pure configuration: no network, no clients. `chat/routing.py` runs requests over it.
"""

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

MOCK_PROVIDER = "mock"
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
MAX_TOKENS_PARAMS = ("max_tokens", "max_completion_tokens")
HTTP_CLIENTS = ("aiohttp", "httpx")
type Strategy = Literal["ordered", "weighted"]


class ProvidersConfigError(ValueError):
    """The providers file is wrong; the message names the file, the table and the key."""


@dataclass(frozen=True, slots=True)
class Provider:
    """One OpenAI-compatible API and how to talk to it."""

    name: str
    base_url: str
    api_key: str = field(repr=False)
    api_key_env: str = ""
    timeout_seconds: float = 60.0
    connect_timeout_seconds: float = 10.0
    # How long one attempt may wait for the provider to start its answer; the chat's
    # first-byte deadline bounds all attempts together.
    first_byte_timeout_seconds: float = 10.0
    max_connections: int = 200
    # The connection pool under the openai SDK: aiohttp's, or httpx's own (which respx mocks).
    http_client: str = "aiohttp"
    stream_usage: bool = True
    max_tokens_param: str = "max_tokens"
    headers: Mapping[str, str] = field(default_factory=dict, compare=False)
    # Retries of this provider's targets before the first content, within the deadline.
    max_retries: int = 1
    # After this many failures in a row a target rests for `cooldown_seconds`, then is probed.
    cooldown_failures: int = 3
    cooldown_seconds: float = 30.0


@dataclass(frozen=True, slots=True)
class Target:
    """A model at one provider: `provider/model`."""

    provider: str
    model: str

    @property
    def label(self) -> str:
        return f"{self.provider}/{self.model}"


@dataclass(frozen=True, slots=True)
class ModelRoute:
    """A model name clients use, the targets that serve it and where to go when all fail."""

    name: str
    targets: tuple[Target, ...]
    strategy: Strategy = "ordered"
    weights: tuple[float, ...] = ()
    fallbacks: tuple[str, ...] = ()
    entry: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ProvidersConfig:
    """Every provider and model route; `passthrough` names the provider that serves model
    names no route declares (None: such names are unknown)."""

    providers: Mapping[str, Provider]
    models: Mapping[str, ModelRoute]
    passthrough: str | None = None
    allowed: tuple[str, ...] = ()
    source: str = "settings"
    mock_enabled: bool = False
    catalog: tuple[Mapping[str, Any], ...] = ()

    def route(self, name: str) -> ModelRoute | None:
        """The route of a model name, or None when this configuration does not serve it."""
        if name in self.models:
            return self.models[name]
        if self.passthrough is None or (self.allowed and name not in self.allowed):
            return None
        return ModelRoute(name=name, targets=(Target(self.passthrough, name),))

    def model_names(self) -> list[str]:
        """The names clients may pick: the catalog's (the routes' when a file declares them)."""
        return [str(entry["id"]) for entry in self.catalog]

    def known_names(self) -> set[str]:
        """Names an agent may pin: the declared routes, or the allowlist, or the catalog."""
        if self.models:
            return set(self.models) | ({MOCK_MODEL} if self.mock_enabled else set())
        return set(self.allowed) or set(self.model_names())


def from_settings(
    *,
    api_key: str,
    base_url: str,
    timeout_seconds: float,
    connect_timeout_seconds: float,
    first_byte_timeout_seconds: float,
    max_connections: int,
    http_client: str,
    max_retries: int,
    stream_usage: bool,
    max_tokens_param: str,
    allowed: list[str],
    catalog: list[Any],
    mock_enabled: bool,
) -> ProvidersConfig:
    """Today's single provider `openai`: every model name goes to it (within `allowed`)."""
    provider = Provider(
        name="openai",
        base_url=base_url,
        api_key=api_key,
        timeout_seconds=timeout_seconds,
        connect_timeout_seconds=connect_timeout_seconds,
        first_byte_timeout_seconds=first_byte_timeout_seconds,
        max_connections=max_connections,
        http_client=http_client,
        stream_usage=stream_usage,
        max_tokens_param=max_tokens_param,
        max_retries=max_retries,
    )
    entries = [_catalog_entry(item) for item in catalog] or [dict(e) for e in DEFAULT_CATALOG]
    if allowed:
        entries = [e for e in entries if e["id"] in allowed]
    if mock_enabled:
        entries.append(dict(MOCK_ENTRY))
    return ProvidersConfig(
        providers={"openai": provider} if api_key else {},
        models={},
        passthrough="openai" if api_key else None,
        allowed=tuple(allowed),
        mock_enabled=mock_enabled,
        catalog=tuple(entries),
    )


def from_file(
    path: str | Path, *, environ: Mapping[str, str], mock_enabled: bool
) -> ProvidersConfig:
    """Read and validate a providers file; raises `ProvidersConfigError`."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ProvidersConfigError(f"{path}: cannot be read ({error.strerror}).") from None
    except tomllib.TOMLDecodeError as error:
        raise ProvidersConfigError(f"{path}: not valid TOML ({error}).") from None
    return _parse(data, source=str(path), environ=environ, mock_enabled=mock_enabled)


class _Table:
    """A TOML table being read: typed getters whose errors name the file, table and key."""

    def __init__(self, source: str, name: str, data: Any) -> None:
        self.source, self.name = source, name
        if not isinstance(data, dict):
            raise self.error("", "must be a table")
        self.data: dict[str, Any] = data
        self.read: set[str] = set()

    def error(self, key: str, message: str) -> ProvidersConfigError:
        where = f"[{self.name}]" + (f" {key}" if key else "")
        return ProvidersConfigError(f"{self.source}: {where}: {message}.")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        self.read.add(key)
        if key not in self.data:
            if default is None:
                raise self.error(key, "is required")
            return default
        value = self.data[key]
        # TOML booleans are not numbers here, whatever Python thinks of bool and int.
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _kinds(kind)):
            raise self.error(key, f"must be {_kind_name(kind)}, not {type(value).__name__}")
        return value

    def number(self, key: str, default: float, *, minimum: float = 0.0) -> float:
        value = float(self.get(key, (int, float), default))
        if not math.isfinite(value) or value <= minimum:
            raise self.error(key, f"must be a number above {minimum:g}")
        return value

    def integer(self, key: str, default: int, *, minimum: int = 0) -> int:
        value: int = self.get(key, int, default)
        if value < minimum:
            raise self.error(key, f"must be at least {minimum}")
        return value

    def strings(self, key: str, default: tuple[str, ...] | None = None) -> tuple[str, ...]:
        values = self.get(key, list, None if default is None else list(default))
        if not all(isinstance(v, str) and v for v in values):
            raise self.error(key, "must be a list of non-empty strings")
        return tuple(values)

    def check_unknown(self, extra_allowed: tuple[str, ...] = ()) -> None:
        unknown = sorted(set(self.data) - self.read - set(extra_allowed))
        if unknown:
            raise self.error(unknown[0], "is not a known key")


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    names |= {list: "a list", dict: "a table"}
    kinds = _kinds(kind)
    return "a number" if set(kinds) == {int, float} else " or ".join(names[k] for k in kinds)


def _parse(
    data: dict[str, Any], *, source: str, environ: Mapping[str, str], mock_enabled: bool
) -> ProvidersConfig:
    top = _Table(source, "top level", data)
    provider_tables = top.get("providers", dict, {})
    model_tables = top.get("models", dict, {})
    routing = _Table(source, "routing", top.get("routing", dict, {}))
    top.check_unknown()
    if not provider_tables:
        raise top.error("providers", "declare at least one [providers.<name>] table")
    providers = {
        name: _provider(_Table(source, f"providers.{name}", table), name, environ)
        for name, table in provider_tables.items()
    }
    passthrough = routing.get("passthrough", str, "") or None
    routing.check_unknown()
    if passthrough is not None and passthrough not in providers:
        raise routing.error("passthrough", f"names an unknown provider {passthrough!r}")
    models = {
        name: _model(_Table(source, f'models."{name}"', table), name, providers)
        for name, table in model_tables.items()
    }
    if not models and passthrough is None:
        raise top.error("models", "declare a [models.<name>] table or [routing] passthrough")
    _check_fallbacks(models, source)
    catalog = [_catalog_entry({"id": name, **route.entry}) for name, route in models.items()]
    if mock_enabled:
        catalog.append(dict(MOCK_ENTRY))
    return ProvidersConfig(
        providers=providers,
        models=models,
        passthrough=passthrough,
        source=source,
        mock_enabled=mock_enabled,
        catalog=tuple(catalog),
    )


def _provider(table: _Table, name: str, environ: Mapping[str, str]) -> Provider:
    if name == MOCK_PROVIDER or "/" in name:
        raise table.error("", f"{name!r} is not a usable provider name")
    base_url = table.get("base_url", str)
    if urlsplit(base_url).scheme not in ("http", "https") or not urlsplit(base_url).netloc:
        raise table.error("base_url", "must be an http(s) URL")
    key_env = table.get("api_key_env", str, "")
    if "api_key" in table.data:
        raise table.error("api_key", "secrets stay in the environment: use api_key_env")
    api_key = ""
    if key_env:
        api_key = environ.get(key_env, "")
        if not api_key:
            raise table.error("api_key_env", f"the environment variable {key_env} is not set")
    headers = table.get("headers", dict, {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise table.error("headers", "must map header names to strings")
    http_client = table.get("http_client", str, "aiohttp")
    if http_client not in HTTP_CLIENTS:
        raise table.error("http_client", f"must be one of {', '.join(HTTP_CLIENTS)}")
    max_tokens_param = table.get("max_tokens_param", str, "max_tokens")
    if max_tokens_param not in MAX_TOKENS_PARAMS:
        raise table.error("max_tokens_param", f"must be one of {', '.join(MAX_TOKENS_PARAMS)}")
    provider = Provider(
        name=name,
        base_url=base_url.rstrip("/"),
        # Servers that need no key (a local model server) still get a non-empty one.
        api_key=api_key or "unused",
        api_key_env=key_env,
        timeout_seconds=table.number("timeout_seconds", 60.0),
        connect_timeout_seconds=table.number("connect_timeout_seconds", 10.0),
        first_byte_timeout_seconds=table.number("first_byte_timeout_seconds", 10.0),
        max_connections=table.integer("max_connections", 200, minimum=1),
        http_client=http_client,
        stream_usage=table.get("stream_usage", bool, True),
        max_tokens_param=max_tokens_param,
        headers=dict(headers),
        max_retries=table.integer("max_retries", 1),
        cooldown_failures=table.integer("cooldown_failures", 3, minimum=1),
        cooldown_seconds=table.number("cooldown_seconds", 30.0),
    )
    table.check_unknown()
    return provider


CATALOG_KEYS = ("name", "description", "context_window", "supports_tools")


def _model(table: _Table, name: str, providers: Mapping[str, Provider]) -> ModelRoute:
    if not name or name == MOCK_MODEL:
        raise table.error("", f"{name!r} is not a usable model name")
    targets = []
    for text in table.strings("targets"):
        provider, _, model = text.partition("/")
        if not model:
            raise table.error("targets", f"{text!r} is not provider/model")
        if provider not in providers:
            raise table.error("targets", f"{text!r} names an unknown provider {provider!r}")
        targets.append(Target(provider, model))
    if not targets:
        raise table.error("targets", "must list at least one provider/model")
    strategy = table.get("strategy", str, "ordered")
    if strategy not in ("ordered", "weighted"):
        raise table.error("strategy", 'must be "ordered" or "weighted"')
    weights: tuple[float, ...] = ()
    if strategy == "weighted":
        raw = table.get("weights", list, [1] * len(targets))
        if len(raw) != len(targets) or not all(
            isinstance(w, int | float) and not isinstance(w, bool) and w >= 0 for w in raw
        ):
            raise table.error("weights", "must give one number >= 0 per target")
        if not any(raw):
            raise table.error("weights", "must not all be 0")
        weights = tuple(float(w) for w in raw)
    fallbacks = table.strings("fallbacks", ())
    entry = {key: table.data[key] for key in CATALOG_KEYS if key in table.data}
    table.check_unknown(CATALOG_KEYS)
    return ModelRoute(
        name=name,
        targets=tuple(targets),
        strategy=strategy,
        weights=weights,
        fallbacks=fallbacks,
        entry=entry,
    )


def _check_fallbacks(models: Mapping[str, ModelRoute], source: str) -> None:
    for route in models.values():
        for fallback in route.fallbacks:
            if fallback not in models:
                raise ProvidersConfigError(
                    f'{source}: [models."{route.name}"] fallbacks: {fallback!r} is not a '
                    "declared model"
                )
    # A cycle would send a failing request round and round; refuse it.
    for start in models:
        path: list[str] = []
        _walk(start, models, path, source)


def _walk(name: str, models: Mapping[str, ModelRoute], path: list[str], source: str) -> None:
    if name in path:
        cycle = " -> ".join([*path[path.index(name) :], name])
        raise ProvidersConfigError(f'{source}: [models."{path[0]}"] fallbacks: a cycle ({cycle})')
    path.append(name)
    for fallback in models[name].fallbacks:
        _walk(fallback, models, path, source)
    path.pop()


def _catalog_entry(item: Mapping[str, Any] | str) -> dict[str, Any]:
    """A catalog entry, where only `id` is required."""
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


class ProvidersHandler:
    """The process's providers configuration, read once from settings (and the file they
    name); rebuilt when a test changes a setting it depends on, as Django's own handlers are."""

    SETTINGS = frozenset(
        {
            "PROVIDERS_FILE",
            "OPENAI_API_KEY",
            "OPENAI_BASE_URL",
            "OPENAI_TIMEOUT_SECONDS",
            "OPENAI_CONNECT_TIMEOUT_SECONDS",
            "OPENAI_FIRST_BYTE_TIMEOUT_SECONDS",
            "OPENAI_MAX_CONNECTIONS",
            "OPENAI_HTTP_CLIENT",
            "OPENAI_MAX_RETRIES",
            "OPENAI_STREAM_USAGE",
            "OPENAI_MAX_TOKENS_PARAM",
            "MODELS_ALLOWED",
            "MODELS_CATALOG",
            "MOCK_MODEL_ENABLED",
        }
    )

    def __init__(self) -> None:
        self._config: ProvidersConfig | None = None

    def get(self) -> ProvidersConfig:
        if self._config is None:
            self._config = self.load()
        return self._config

    def load(self) -> ProvidersConfig:
        """Raises `ProvidersConfigError` for a bad providers file."""
        import os

        from django.conf import settings

        if settings.PROVIDERS_FILE:
            # The file names the variables that hold its keys: secrets stay out of the file.
            return from_file(
                settings.PROVIDERS_FILE,
                environ=os.environ,
                mock_enabled=settings.MOCK_MODEL_ENABLED,
            )
        return from_settings(
            api_key=settings.OPENAI_API_KEY,
            base_url=settings.OPENAI_BASE_URL,
            timeout_seconds=settings.OPENAI_TIMEOUT_SECONDS,
            connect_timeout_seconds=settings.OPENAI_CONNECT_TIMEOUT_SECONDS,
            first_byte_timeout_seconds=settings.OPENAI_FIRST_BYTE_TIMEOUT_SECONDS,
            max_connections=settings.OPENAI_MAX_CONNECTIONS,
            http_client=settings.OPENAI_HTTP_CLIENT,
            max_retries=settings.OPENAI_MAX_RETRIES,
            stream_usage=settings.OPENAI_STREAM_USAGE,
            max_tokens_param=settings.OPENAI_MAX_TOKENS_PARAM,
            allowed=list(settings.MODELS_ALLOWED),
            catalog=list(settings.MODELS_CATALOG),
            mock_enabled=settings.MOCK_MODEL_ENABLED,
        )

    def setting_changed(self, *, setting: str, **kwargs: Any) -> None:
        if setting in self.SETTINGS:
            self._config = None


providers = ProvidersHandler()


def providers_config() -> ProvidersConfig:
    return providers.get()


def model_catalog() -> list[dict[str, Any]]:
    """What GET /models lists."""
    return [dict(entry) for entry in providers_config().catalog]


def known_model_ids() -> set[str]:
    """Model names an agent may pin."""
    return providers_config().known_names()

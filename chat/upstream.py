"""The only user of the `openai` SDK: clients, streamed completions and error translation."""

import asyncio
import logging
import re
import weakref
from asyncio import AbstractEventLoop, get_running_loop
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import orjson
from django.conf import settings

from chat import mock
from mamba_site import metrics
from mamba_site.errors import (
    ApiError,
    InvalidRequest,
    ModelNotFound,
    ProviderError,
    ProviderNotConfigured,
    RateLimited,
    ServiceUnavailable,
    UpstreamTimeout,
)

logger = logging.getLogger(__name__)

MOCK_MODEL = mock.MODEL
OPENAI_PREFIX = "openai/"
DRAIN_LINES = 8
_SAFE_CODE = re.compile(r"^[a-z0-9_.-]{1,64}$")

# One client (and so one connection pool) per provider per event loop: daphne runs one loop,
# tests run many, and an httpx pool must not outlive the loop it was made on.
_clients: weakref.WeakKeyDictionary[AbstractEventLoop, dict[str, openai.AsyncOpenAI]] = (
    weakref.WeakKeyDictionary()
)


def reset_clients() -> None:
    _clients.clear()


# The openai SDK annotates `http_client` and `timeout` with httpx2's types only, but accepts
# httpx's too (openai/_httpx2.py: is_legacy_httpx_async_client, normalize_httpx_timeout); the
# client stays on httpx, which the mock transport and respx (tests) are written for.
def _build_client(provider: str) -> openai.AsyncOpenAI:
    timeout = httpx.Timeout(
        settings.OPENAI_TIMEOUT_SECONDS, connect=settings.OPENAI_CONNECT_TIMEOUT_SECONDS
    )
    limits = httpx.Limits(
        max_connections=settings.OPENAI_MAX_CONNECTIONS,
        max_keepalive_connections=settings.OPENAI_MAX_CONNECTIONS,
    )
    if provider == "mock":
        http_client = httpx.AsyncClient(transport=mock.MockTransport(), timeout=timeout)
        return openai.AsyncOpenAI(
            api_key="mock",
            base_url=mock.BASE_URL,
            http_client=http_client,  # type: ignore[arg-type]
            max_retries=0,
        )
    http_client = httpx.AsyncClient(timeout=timeout, limits=limits)
    return openai.AsyncOpenAI(
        api_key=settings.OPENAI_API_KEY,
        base_url=settings.OPENAI_BASE_URL,
        http_client=http_client,  # type: ignore[arg-type]
        max_retries=settings.OPENAI_MAX_RETRIES,
        timeout=timeout,  # type: ignore[arg-type]
    )


def client_for(provider: str) -> openai.AsyncOpenAI:
    per_loop = _clients.setdefault(get_running_loop(), {})
    client = per_loop.get(provider)
    if client is None:
        client = per_loop[provider] = _build_client(provider)
    return client


@dataclass(frozen=True, slots=True)
class Route:
    """Where a request goes: the provider and the model name the provider knows."""

    provider: str
    model: str

    @property
    def label(self) -> str:
        return MOCK_MODEL if self.provider == "mock" else self.model


def route(model: str) -> Route:
    """Resolve a client's model name; raises `ApiError` when it cannot be served."""
    model = model.removeprefix(OPENAI_PREFIX)
    mock_enabled = settings.MOCK_MODEL_ENABLED
    if model == MOCK_MODEL:
        if not mock_enabled:
            raise ModelNotFound(f"Model {model!r} is not available: the offline model is disabled.")
        return Route("mock", model)
    if not settings.OPENAI_API_KEY:
        if mock_enabled:
            # Development without a key: every model answers offline, and says so.
            return Route("mock", model)
        raise ProviderNotConfigured()
    allowed = settings.MODELS_ALLOWED
    if allowed and model not in allowed:
        raise ModelNotFound(f"Model {model!r} is not available. Available: {', '.join(allowed)}.")
    return Route("openai", model)


class UpstreamStream:
    """An open streamed completion; `chunks()` yields each event's JSON as a dict."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    async def chunks(self) -> AsyncIterator[dict[str, Any]]:
        # Raw lines + orjson: the SDK's per-chunk pydantic parsing costs more than the proxy.
        done = 0
        try:
            async for line in self._response.aiter_lines():
                if done:
                    # Read the body to its end, so the connection goes back to the pool; a
                    # server that keeps talking after [DONE] only costs that connection.
                    done += 1
                    if done > DRAIN_LINES:
                        return
                    continue
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    done = 1
                    continue
                chunk = orjson.loads(data)
                if isinstance(chunk, dict) and chunk.get("error"):
                    logger.warning("Upstream sent an error event: %s", _error_code(chunk))
                    metrics.upstream_errors.labels(str(ProviderError.code)).inc()
                    raise ProviderError("The model provider reported an error during the reply.")
                yield chunk
        except (httpx.TransportError, openai.APIConnectionError) as error:
            if isinstance(error, httpx.TimeoutException | openai.APITimeoutError):
                raise translate_error(error) from error
            logger.warning("Upstream connection broke mid-reply: %s", type(error).__name__)
            metrics.upstream_errors.labels(str(ProviderError.code)).inc()
            raise ProviderError(
                "The connection to the model provider broke during the reply."
            ) from error
        except (httpx.HTTPError, openai.APIError) as error:
            raise translate_error(error) from error
        except orjson.JSONDecodeError as error:
            logger.warning("Upstream sent an event that is not JSON")
            raise ProviderError("The model provider sent a malformed reply.") from error

    async def aclose(self) -> None:
        await self._response.aclose()


async def open_stream(route: Route, params: dict[str, Any]) -> UpstreamStream:
    """Start a streamed completion; raises `ApiError` for failures before the first byte.

    The body goes out as built: the SDK's typed `create()` re-walks every message and tool
    schema on each request, which was half the cost of opening a stream. `post()` keeps the
    SDK's authentication, retries and errors.
    """
    client = client_for(route.provider)
    body: dict[str, Any] = {"model": route.model, "stream": True, **params}
    if settings.OPENAI_STREAM_USAGE:
        body["stream_options"] = {"include_usage": True}
    try:
        response = await client.post(
            "/chat/completions", cast_to=httpx.Response, body=body, stream=True
        )
    except (openai.APIError, httpx.HTTPError) as error:
        raise translate_error(error, model=route.label) from error
    return UpstreamStream(response)


async def complete_text(route: Route, params: dict[str, Any], *, time_limit: float) -> str:
    """A short, non-streamed completion (titles); raises `ApiError` on any failure."""
    client = client_for(route.provider).with_options(timeout=time_limit, max_retries=0)
    try:
        async with asyncio.timeout(time_limit):
            completion = await client.chat.completions.create(model=route.model, **params)
    except TimeoutError:
        raise UpstreamTimeout() from None
    except (openai.APIError, httpx.HTTPError) as error:
        raise translate_error(error, model=route.label) from error
    if not completion.choices:
        return ""
    return completion.choices[0].message.content or ""


def translate_error(error: Exception, *, model: str = "") -> ApiError:
    """Our error for a provider failure: a safe message, never the provider's body."""
    translated = _translate_error(error, model=model)
    metrics.upstream_errors.labels(str(translated.code)).inc()
    return translated


def _translate_error(error: Exception, *, model: str) -> ApiError:
    if isinstance(error, openai.APITimeoutError | httpx.TimeoutException):
        logger.warning("Upstream timed out: %s", type(error).__name__)
        return UpstreamTimeout()
    if isinstance(error, openai.APIConnectionError | httpx.TransportError):
        logger.warning("Upstream unreachable: %s", type(error).__name__)
        return ServiceUnavailable("The model provider is unreachable.")
    if not isinstance(error, openai.APIStatusError):
        logger.warning("Upstream failed: %s", type(error).__name__)
        return ProviderError()
    status, code = error.status_code, _error_code(error.body)
    logger.warning("Upstream answered %s (%s)", status, code or "no code")
    if status == 404 or code == "model_not_found":
        return ModelNotFound(f"Model {model!r} is not available from the provider.")
    if status in (401, 403):
        return ProviderError("The model provider refused the gateway's credentials.")
    if status == 429:
        retry_after = error.response.headers.get("retry-after", "")
        headers = {"Retry-After": retry_after} if retry_after.isdigit() else {}
        return RateLimited("The model provider is rate limiting requests.", headers=headers)
    if status in (400, 413, 422):
        reason = f" ({code})" if code else ""
        return InvalidRequest(f"The model provider rejected the request{reason}.")
    if status == 503:
        return ServiceUnavailable()
    return ProviderError()


def _error_code(body: Any) -> str:
    """The provider's error code when it is a plain identifier (safe to show and log)."""
    if isinstance(body, dict):
        body = body.get("error", body)
    code = body.get("code") or body.get("type") if isinstance(body, dict) else None
    return code if isinstance(code, str) and _SAFE_CODE.match(code) else ""

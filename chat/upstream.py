"""The provider's wire format: Chat Completions requests over HTTP, one connection pool per
provider, streamed and plain replies, and every way a provider can fail, as an
`UpstreamFailure` that says what to do next.

Requests go straight to the pool's transport with headers and JSON built once per provider:
through the openai SDK, building and sending a request cost more CPU than streaming a
50-chunk reply, and importing it ~35 MB of memory per process (bench/README.md).
"""

import logging
import math
import re
import weakref
from asyncio import AbstractEventLoop, get_running_loop
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import Enum
from typing import Any

import httpx
import orjson

from chat import mock
from chat.transport import AiohttpTransport, BodyReader, body_reader
from mamba_site.errors import (
    ApiError,
    InvalidRequest,
    ModelNotFound,
    ProviderError,
    RateLimited,
    ServiceUnavailable,
    UpstreamTimeout,
)
from mamba_site.providers import MOCK_PROVIDER, Provider

logger = logging.getLogger(__name__)

DRAIN_LINES = 8
# A non-stream answer is read this far to be closed cleanly; its content is never shown.
MAX_ERROR_BODY_BYTES = 64 * 1024
_SAFE_CODE = re.compile(r"^[a-z0-9_.-]{1,64}$")
USER_AGENT = b"mamba-gateway"

MALFORMED_TEXT = "The model provider sent a malformed reply."
CUT_OFF_TEXT = "The model provider's reply was cut off."
EMPTY_TEXT = "The model provider sent an empty reply."
NOT_A_STREAM_TEXT = "The model provider's reply was not a stream."
BROKEN_TEXT = "The connection to the model provider broke during the reply."
ERROR_EVENT_TEXT = "The model provider reported an error during the reply."
STALLED_TEXT = "The model took too long to answer."


class Next(Enum):
    """What a failure means for the request: try again (here or elsewhere), give up on this
    provider (its credentials are wrong), or answer the client (the request is at fault)."""

    RETRY = "retry"
    SKIP_PROVIDER = "skip provider"
    ANSWER = "answer"


class UpstreamFailure(Exception):
    """A provider failed. `kind` names the way (for metrics and logs), `error` is what the client
    sees if nothing else can serve it."""

    def __init__(
        self,
        kind: str,
        error: ApiError,
        *,
        next_step: Next = Next.RETRY,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(kind)
        self.kind = kind
        self.error = error
        self.next_step = next_step
        self.retry_after = retry_after


def malformed() -> UpstreamFailure:
    return UpstreamFailure("malformed", ProviderError(MALFORMED_TEXT))


def cut_off() -> UpstreamFailure:
    return UpstreamFailure("truncated", ProviderError(CUT_OFF_TEXT))


def empty() -> UpstreamFailure:
    return UpstreamFailure("empty", ProviderError(EMPTY_TEXT))


def stalled() -> UpstreamFailure:
    return UpstreamFailure("stalled", UpstreamTimeout(STALLED_TEXT))


class ProviderClient:
    """One provider's connection pool, and what every request to it carries."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider
        self.url = httpx.URL(f"{provider.base_url}/chat/completions")
        self.headers = [
            (b"host", self.url.netloc),  # a request given its stream is not given a Host
            (b"authorization", b"Bearer " + provider.api_key.encode()),
            (b"content-type", b"application/json"),
            (b"user-agent", USER_AGENT),
            *((name.encode(), value.encode()) for name, value in provider.headers.items()),
        ]
        self.timeout = {
            "connect": provider.connect_timeout_seconds,
            "read": provider.timeout_seconds,
            "write": provider.timeout_seconds,
            "pool": provider.timeout_seconds,
        }
        # A stream's silence is watched by the step that reads it (`UpstreamStream.silence`),
        # on the loop's ticker: no read timer re-armed by the connection on every chunk.
        self.stream_timeout = self.timeout | {"read": None}
        self.transport = _transport(provider)

    async def post(self, body: dict[str, Any], *, stream: bool = False) -> httpx.Response:
        """The response, its body unread; raises `UpstreamFailure` for any failure. A
        `stream`'s body is read without a read timeout: its reader watches the silence."""
        content = orjson.dumps(body)
        headers = [*self.headers, (b"content-length", str(len(content)).encode())]
        request = httpx.Request(
            "POST",
            self.url,
            headers=headers,
            stream=_SentOnce(content),
            extensions={"timeout": self.stream_timeout if stream else self.timeout},
        )
        try:
            response = await self.transport.handle_async_request(request)
        except httpx.HTTPError as error:
            raise failure_of(error) from error
        if not response.is_success:
            raise await _status_failure(response, model=str(body.get("model", "")))
        return response

    async def aclose(self) -> None:
        await self.transport.aclose()


class _SentOnce(httpx.AsyncByteStream):
    """A request body given up once sent: the request stays referenced by its response for
    as long as the reply streams, and the body holds the whole conversation."""

    def __init__(self, content: bytes) -> None:
        self._content = content

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content, self._content = self._content, b""
        yield content


def _transport(provider: Provider) -> httpx.AsyncBaseTransport:
    if provider.name == MOCK_PROVIDER:
        return mock.MockTransport()
    if provider.http_client == "aiohttp":
        return AiohttpTransport(max_connections=provider.max_connections)
    limits = httpx.Limits(
        max_connections=provider.max_connections,
        max_keepalive_connections=provider.max_connections,
    )
    return httpx.AsyncHTTPTransport(limits=limits)


class Clients:
    """One `ProviderClient` (and so one connection pool) per provider per event loop: daphne
    runs one loop, tests run many, and a pool must not outlive the loop it was made on. One
    `Clients` serves one providers configuration (a new configuration, new clients)."""

    def __init__(self) -> None:
        self._per_loop: weakref.WeakKeyDictionary[AbstractEventLoop, dict[str, ProviderClient]] = (
            weakref.WeakKeyDictionary()
        )

    async def aclose(self) -> None:
        """Close this loop's connection pools (shutdown, tests)."""
        for client in self._per_loop.pop(get_running_loop(), {}).values():
            await client.aclose()

    def get(self, provider: Provider) -> ProviderClient:
        clients = self._per_loop.setdefault(get_running_loop(), {})
        client = clients.get(provider.name)
        if client is None:
            client = clients[provider.name] = ProviderClient(provider)
        return client


class UpstreamStream:
    """An open streamed completion; `batch()` gives the events' JSON objects, as many as the
    next read brought (a read is one chunk when they arrive one by one, several when the
    process fell behind: the busier, the fewer trips through the layers above). A coroutine
    call per read, no generator: it keeps its place in its own slots.

    `done` tells whether the provider ended with `[DONE]`: a stream that ends without it and
    without a finish reason was cut off (the step loop decides, it sees the finish reason).
    `silence` is the provider's longest pause within a reply (its `timeout_seconds`), which
    its reader enforces."""

    __slots__ = ("_after_done", "_body", "_ended", "_failure", "_rest", "done", "silence")

    def __init__(self, body: BodyReader, silence: float = math.inf) -> None:
        self._body = body
        self.silence = silence
        self.done = False
        self._after_done = 0
        self._rest = b""
        self._ended = False
        self._failure: UpstreamFailure | None = None

    async def batch(self) -> list[dict[str, Any]] | None:
        """The chunks of the next read that brought any; None once the body has ended.
        Raises `UpstreamFailure` (after the batch of what came before a bad event)."""
        # The body's bytes as they arrive, split into lines here and parsed with orjson: no
        # text decoding, no per-chunk pydantic model (requests ask for no compression).
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure
        while not self._ended:
            try:
                data = await self._body.read()
            except httpx.HTTPError as error:
                self._ended = True
                if isinstance(error, httpx.TimeoutException):
                    raise UpstreamFailure("timeout", UpstreamTimeout()) from error
                logger.warning("Upstream connection broke mid-reply: %s", type(error).__name__)
                raise UpstreamFailure("broken", ProviderError(BROKEN_TEXT)) from error
            if not data:
                self._ended = True
                # A last line without its newline still counts.
                rest = self._rest
                if rest.startswith(b"data:") and not self.done:
                    chunk = self._parse(rest[5:].strip())
                    if chunk is not None:
                        return [chunk]
                return None
            lines = (self._rest + data).split(b"\n")
            self._rest = lines.pop()
            batch: list[dict[str, Any]] = []
            for line in lines:
                if self.done:
                    # Read the body to its end, so the connection goes back to the pool; a
                    # server that keeps talking after [DONE] only costs that connection.
                    self._after_done += 1
                    if self._after_done > DRAIN_LINES:
                        self._ended = True
                        break
                    continue
                if line.startswith(b"data:"):
                    try:
                        chunk = self._parse(line[5:].strip())
                    except UpstreamFailure as bad:
                        self._ended = True
                        if not batch:
                            raise
                        self._failure = bad  # what came before it is shown first
                        break
                    if chunk is not None:
                        batch.append(chunk)
            if batch:
                return batch
        return None

    def _parse(self, data: bytes) -> dict[str, Any] | None:
        """One event's JSON object; None for `[DONE]`; raises `UpstreamFailure`."""
        if data == b"[DONE]":
            self.done = True
            return None
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            logger.warning("Upstream sent an event that is not JSON")
            raise malformed() from None
        if not isinstance(chunk, dict):
            logger.warning("Upstream sent an event that is not a JSON object")
            raise malformed()
        if chunk.get("error"):
            logger.warning("Upstream sent an error event: %s", error_code(chunk))
            raise UpstreamFailure("error_event", ProviderError(ERROR_EVENT_TEXT))
        return chunk

    async def aclose(self) -> None:
        await self._body.aclose()


async def open_stream(client: ProviderClient, *, body: dict[str, Any]) -> UpstreamStream:
    """Start a streamed completion; raises `UpstreamFailure` before the first byte of content."""
    response = await client.post(body, stream=True)
    content_type = response.headers.get("content-type", "")
    if not content_type.startswith("text/event-stream"):
        await _discard(response)
        logger.warning("Upstream answered 200 with %s instead of a stream", content_type[:40])
        raise UpstreamFailure("not_sse", ProviderError(NOT_A_STREAM_TEXT))
    return UpstreamStream(body_reader(response), client.provider.timeout_seconds)


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    usage: dict[str, Any]


async def complete(client: ProviderClient, *, body: dict[str, Any]) -> Completion:
    """A short, non-streamed completion (titles); raises `UpstreamFailure`."""
    response = await client.post(body)
    try:
        raw = await _read_limited(response, MAX_ERROR_BODY_BYTES)
    except httpx.HTTPError as error:
        raise UpstreamFailure("broken", ProviderError(BROKEN_TEXT)) from error
    finally:
        await response.aclose()
    try:
        completion = orjson.loads(raw)
        content = completion["choices"][0]["message"].get("content") or ""
        usage = completion.get("usage") or {}
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
        logger.warning("Upstream sent a completion that is not one")
        raise malformed() from None
    if not isinstance(content, str) or not isinstance(usage, dict):
        raise malformed()
    return Completion(content, usage)


async def _read_limited(response: httpx.Response, limit: int) -> bytes:
    body = b""
    async for part in response.aiter_bytes():
        body += part
        if len(body) > limit:
            raise malformed()
    return body


async def _discard(response: httpx.Response) -> None:
    try:
        await _read_limited(response, MAX_ERROR_BODY_BYTES)
    except (httpx.HTTPError, UpstreamFailure):
        pass
    finally:
        await response.aclose()


def failure_of(error: httpx.HTTPError) -> UpstreamFailure:
    """Our failure for a transport error: a safe message, never the provider's."""
    if isinstance(error, httpx.TimeoutException):
        logger.warning("Upstream timed out: %s", type(error).__name__)
        return UpstreamFailure("timeout", UpstreamTimeout())
    logger.warning("Upstream unreachable: %s", type(error).__name__)
    return UpstreamFailure("connect", ServiceUnavailable("The model provider is unreachable."))


async def _status_failure(response: httpx.Response, *, model: str) -> UpstreamFailure:
    """Our failure for an error status; the provider's body is read for its code only."""
    try:
        raw = await _read_limited(response, MAX_ERROR_BODY_BYTES)
        body = orjson.loads(raw)
    except (httpx.HTTPError, UpstreamFailure, orjson.JSONDecodeError):
        body = None
    finally:
        await response.aclose()
    status, code = response.status_code, error_code(body)
    logger.warning("Upstream answered %s (%s)", status, code or "no code")
    kind = f"status_{status}"
    if status == 404 or code == "model_not_found":
        not_found = ModelNotFound(f"Model {model!r} is not available from the provider.")
        return UpstreamFailure(kind, not_found, next_step=Next.ANSWER)
    if status in (401, 403):
        refused = ProviderError("The model provider refused the gateway's credentials.")
        return UpstreamFailure(kind, refused, next_step=Next.SKIP_PROVIDER)
    if status == 429:
        retry_after = _seconds(response.headers.get("retry-after", ""))
        headers = {"Retry-After": str(round(retry_after))} if retry_after is not None else {}
        limited = RateLimited("The model provider is rate limiting requests.", headers=headers)
        return UpstreamFailure(kind, limited, retry_after=retry_after)
    if status in (400, 413, 422):
        reason = f" ({code})" if code else ""
        rejected = InvalidRequest(f"The model provider rejected the request{reason}.")
        return UpstreamFailure(kind, rejected, next_step=Next.ANSWER)
    if status == 503:
        return UpstreamFailure(kind, ServiceUnavailable())
    return UpstreamFailure(kind, ProviderError())


def _seconds(value: str) -> float | None:
    """`Retry-After` in seconds (the delta form; an HTTP date is not worth waiting for)."""
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 <= seconds < 86400 else None


def error_code(body: Any) -> str:
    """The provider's error code when it is a plain identifier (safe to show and log)."""
    if isinstance(body, dict):
        body = body.get("error", body)
    code = body.get("code") or body.get("type") if isinstance(body, dict) else None
    return code if isinstance(code, str) and _SAFE_CODE.match(code) else ""

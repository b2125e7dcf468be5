"""An httpx transport over aiohttp: the openai SDK and httpx's API on top, aiohttp's connection
pool underneath (httpcore's pool walks every connection, and polls each idle one's socket, on
every request; at a few hundred streams that cost more than the streams)."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx

# Errors as httpx names them, so the SDK and `chat.upstream` see one kind of failure.
_CONNECT_ERRORS = (aiohttp.ClientConnectorError, aiohttp.ClientProxyConnectionError)


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One aiohttp session (made lazily, on the loop that first uses it) per transport."""

    def __init__(self, *, max_connections: int, keepalive_seconds: float = 30.0) -> None:
        self._max_connections = max_connections
        self._keepalive_seconds = keepalive_seconds
        self._session: aiohttp.ClientSession | None = None

    def _session_get(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                limit_per_host=0,
                keepalive_timeout=self._keepalive_seconds,
                ttl_dns_cache=60,
            )
            # httpx decodes the body by its headers; aiohttp must hand it over as it came.
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=timeouts.get("pool"),
            sock_connect=timeouts.get("connect"),
            sock_read=timeouts.get("read"),
        )
        try:
            response = await self._session_get().request(
                request.method,
                str(request.url),
                headers=request.headers.multi_items(),
                data=b"".join([part async for part in request.stream]),  # type: ignore[union-attr]
                timeout=timeout,
                allow_redirects=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
            )
        except _CONNECT_ERRORS as error:
            raise httpx.ConnectError(str(error), request=request) from error
        except (TimeoutError, aiohttp.ServerTimeoutError) as error:
            raise httpx.ConnectTimeout("Timed out before the response", request=request) from error
        except aiohttp.ClientError as error:
            raise httpx.RemoteProtocolError(str(error), request=request) from error
        return httpx.Response(
            status_code=response.status,
            headers=list(response.raw_headers),
            stream=_Body(response),
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _Body(httpx.AsyncByteStream):
    """The response's body. Neither it nor the response keeps the request (its headers, the
    provider's key among them) for as long as a stream runs: its errors name none."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        try:
            while data := await content.readany():
                yield data
        except (TimeoutError, aiohttp.ServerTimeoutError) as error:
            raise httpx.ReadTimeout("Timed out reading") from error
        except (aiohttp.ClientError, asyncio.IncompleteReadError) as error:
            # aiohttp raises a broken body's error before the bytes that came just ahead of
            # the break; the reply shown must keep them (its end is reported as broken).
            rest = content._read_nowait(-1) if content._buffer else b""
            if rest:
                yield rest
            raise httpx.ReadError(str(error)) from error

    async def aclose(self) -> None:
        # A body read to its end gave its connection back already; one cut short closes it.
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


def raw_body(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body's bytes as they arrive: from aiohttp directly when this transport made the
    response (httpx's `aiter_raw` adds a generator and a re-chunking step to every read)."""
    stream = response.stream
    return stream.__aiter__() if isinstance(stream, _Body) else response.aiter_raw()

"""An httpx transport over aiohttp: the openai SDK and httpx's API on top, aiohttp's connection
pool underneath (httpcore's pool walks every connection, and polls each idle one's socket, on
every request; at a few hundred streams that cost more than the streams)."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Protocol

import aiohttp
import httpx
from multidict import CIMultiDict, CIMultiDictProxy

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


class BodyReader(Protocol):
    """A streamed reply's body: `read()` gives the bytes as they arrive, b"" at its end."""

    async def read(self) -> bytes: ...

    async def aclose(self) -> None: ...


# What a streaming reply's aiohttp response holds instead of headers nobody reads again.
_NO_HEADERS: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())


class _Body(httpx.AsyncByteStream):
    """The response's body, read by `read()` (iterated, for httpx's own reads). For as long
    as a stream runs it keeps the aiohttp response for its body and its connection only: the
    request's headers (the provider's key among them) and the response's (copied into
    httpx's response by then) are let go, and its errors name neither."""

    __slots__ = ("_failure", "_response")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self._failure: httpx.ReadError | None = None
        info = response._request_info
        response._request_info = aiohttp.RequestInfo(
            info.url, info.method, _NO_HEADERS, info.real_url
        )
        response._headers = _NO_HEADERS
        response._raw_headers = ()
        response._cache.clear()  # what its properties cached (`reify`)

    async def read(self) -> bytes:
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure
        content = self._response.content
        try:
            return await content.readany()
        except (TimeoutError, aiohttp.ServerTimeoutError) as error:
            raise httpx.ReadTimeout("Timed out reading") from error
        except (aiohttp.ClientError, asyncio.IncompleteReadError) as error:
            failure = httpx.ReadError(str(error))
            failure.__cause__ = error
            # aiohttp raises a broken body's error before the bytes that came just ahead of
            # the break; the reply shown must keep them (its end is reported as broken).
            rest = content._read_nowait(-1) if content._buffer else b""
            if rest:
                self._failure = failure
                return rest
            raise failure from error

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while data := await self.read():
            yield data

    async def aclose(self) -> None:
        # A body read to its end gave its connection back already; one cut short closes it.
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


class _RawBody:
    """The body of a response from another transport (httpx's own, the mock's)."""

    __slots__ = ("_parts", "_response")

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self._parts = response.aiter_raw()

    async def read(self) -> bytes:
        return await anext(self._parts, b"")

    async def aclose(self) -> None:
        await self._response.aclose()


def body_reader(response: httpx.Response) -> BodyReader:
    """The body's bytes as they arrive, read one coroutine call at a time: from aiohttp
    directly when this transport made the response (no httpx response kept, no generator
    layer per read), else through httpx's `aiter_raw`."""
    stream = response.stream
    return stream if isinstance(stream, _Body) else _RawBody(response)

"""A minimal HTTP/1.1 client for the load generator: one keep-alive connection, streamed POSTs.

The load generator shares two cores with the servers it measures, so what it spends per chunk
is taken from them. httpx reads a paced stream at ~100 µs of CPU per chunk (httpcore, h11 and
anyio layers); at 50 paced direct streams that was 0.8 of a core, and the generator, not the
upstream, set the direct figure. This client does only what the bench needs: plain HTTP,
`Content-Length` request bodies, chunked or sized responses, one request at a time.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

READ_LIMIT = 1 << 20  # the longest line or chunk header accepted


class ProtocolError(Exception):
    """The server answered something this client does not read."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    body: AsyncIterator[bytes]  # the body's pieces: one per HTTP chunk when chunked


class RawConnection:
    """One connection, opened on first use and again after the server or an error closed it."""

    def __init__(self) -> None:
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._origin: tuple[str, int] | None = None

    async def aclose(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def abort(self) -> None:
        """Drop the connection at once (a client that leaves mid-stream)."""
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.transport.abort()

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Response:
        """Send a POST and read the response head; read `Response.body` to its end before the
        next request (or `abort()`)."""
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        if self._writer is None or self._writer.is_closing() or self._origin != (host, port):
            await self.aclose()
            self._reader, self._writer = await asyncio.open_connection(host, port, limit=READ_LIMIT)
            self._origin = (host, port)
        reader, writer = self._reader, self._writer
        assert reader is not None
        lines = [f"POST {parts.path or '/'} HTTP/1.1", f"host: {host}:{port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines += ["content-type: application/json", f"content-length: {len(body)}", "", ""]
        writer.write("\r\n".join(lines).encode() + body)
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        try:
            status = int(status_line.split(" ", 2)[1])
        except (IndexError, ValueError):
            raise ProtocolError(f"not an HTTP status line: {status_line[:80]!r}") from None
        response_headers = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if sep:
                response_headers[name.strip().lower()] = value.strip()
        return Response(status, response_headers, self._body(reader, response_headers))

    async def _body(
        self, reader: asyncio.StreamReader, headers: dict[str, str]
    ) -> AsyncIterator[bytes]:
        keep = headers.get("connection", "").lower() != "close"
        if "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                line = await reader.readuntil(b"\r\n")
                try:
                    size = int(line.split(b";", 1)[0], 16)
                except ValueError:
                    raise ProtocolError(f"bad chunk size line {line[:40]!r}") from None
                if size == 0:
                    while await reader.readuntil(b"\r\n") != b"\r\n":
                        pass  # trailers
                    break
                piece = await reader.readexactly(size + 2)
                yield piece[:-2]
        elif "content-length" in headers:
            left = int(headers["content-length"])
            while left > 0:
                piece = await reader.read(min(left, 65536))
                if not piece:
                    raise asyncio.IncompleteReadError(b"", left)
                left -= len(piece)
                yield piece
        else:  # until the server closes
            keep = False
            while piece := await reader.read(65536):
                yield piece
        if not keep:
            await self.aclose()

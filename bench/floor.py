"""The floors: the thinnest streaming proxies, to measure Mamba against.

`python -m bench.floor --upstream URL [--port 0] [--push]` serves `POST /v1/chat/completions`
on an asyncio server under uvloop and passes each request's body to `URL`. Nothing else: no
authentication, no validation, no translation, no metrics, no logging, no framework.

- By default (the floor) with aiohttp, Mamba's upstream client, pooled the same way: the
  reply's bytes are read as they arrive (a task woken per read, `content.readany()`) and
  copied to the client, one HTTP chunk per read. What it spends per request and per chunk is
  what any gateway that reads its upstream through aiohttp's API pays to pass a stream
  through on this machine.
- `--push` (the push floor): a plain asyncio protocol per client connection, whose
  `data_received` writes the upstream's bytes (head and chunked framing as they came) to the
  client at once: no HTTP parsing, no task woken per chunk. What it spends is about what a
  Python process pays for the wake-up, the read and the write of a chunk at all.
- `--push --translate` (the push translator): the push floor doing Mamba's own work on each
  read in that callback: the reply parsed as HTTP (httptools, the parser under aiohttp's),
  its lines split, each event decoded (orjson), translated and encoded as UI message chunks
  (`chat.translate`, `chat.protocol`), written as one HTTP chunk; `start`, `start-step`, the
  closing chunks and `[DONE]` as Mamba writes them. What a gateway built that way (an HTTP
  client of its own, no task per chunk) would pay before authentication, limits, metrics
  and usage.

`bench.suite` measures both in the same run as Mamba and the fake (`--floor`). They read only
what the bench sends (a request line, headers, a `Content-Length` body, one request at a time
per connection; the fake's chunked replies); they are not servers for anything else.
"""

import argparse
import asyncio
import contextlib
import signal
import sys
from urllib.parse import urlsplit

import aiohttp
import httptools
import orjson
import uvloop

from chat import protocol as p
from chat.translate import BlockIds, Translator

HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)
FAILED = b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n"
HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-bench"}


async def proxy(
    session: aiohttp.ClientSession,
    url: str,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:
    """Answer the connection's requests in turn until the client closes it."""
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
        while head := await reader.readuntil(b"\r\n\r\n"):
            body = await reader.readexactly(_content_length(head))
            async with session.post(url, data=body, headers=HEADERS) as response:
                if response.status != 200:
                    writer.write(FAILED)
                    continue
                writer.write(HEAD)
                content = response.content
                while data := await content.readany():
                    writer.write(_chunk(data))
                writer.write(b"0\r\n\r\n")
    writer.close()


# The end of a chunked body; the fake's replies are chunked.
LAST_CHUNK = b"0\r\n\r\n"


class _Passing(asyncio.Protocol):
    """The push floor's upstream connection: every byte goes to the client as it comes."""

    def __init__(self, client: asyncio.WriteTransport) -> None:
        self.client = client
        self.reply_ended: asyncio.Future[None] | None = None

    def data_received(self, data: bytes) -> None:
        self.client.write(data)
        if data.endswith(LAST_CHUNK):
            self._end()

    def connection_lost(self, exc: Exception | None) -> None:
        self._end()

    def _end(self) -> None:
        if self.reply_ended is not None and not self.reply_ended.done():
            self.reply_ended.set_result(None)


class _Translating(_Passing):
    """The push translator's upstream connection: each read parsed, translated and written
    to the client at once (httptools calls `on_*` from `feed_data`)."""

    def __init__(self, client: asyncio.WriteTransport) -> None:
        super().__init__(client)
        self.parser = httptools.HttpResponseParser(self)
        self.rest = b""
        self.translator = Translator(BlockIds("floor"))
        self.replies = 0

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.client.close()
            self._end()

    def on_headers_complete(self) -> None:
        self.replies += 1
        self.rest = b""
        self.translator = Translator(BlockIds(f"floor{self.replies}"))
        opening = p.encode(p.Start(f"msg-floor{self.replies}")) + p.encode(p.StartStep())
        self.client.write(HEAD + _chunk(opening))

    def on_body(self, body: bytes) -> None:
        lines = (self.rest + body).split(b"\n")
        self.rest = lines.pop()
        out = []
        for line in lines:
            if line.startswith(b"data:") and (data := line[5:].strip()) != b"[DONE]":
                out += [p.encode(event) for event in self.translator.feed(orjson.loads(data))]
        if out:
            self.client.write(_chunk(b"".join(out)))

    def on_message_complete(self) -> None:
        events = [*self.translator.close(), p.FinishStep()]
        events.append(p.Finish(self.translator.finish_reason or "other"))
        closing = b"".join(p.encode(event) for event in events) + b"data: [DONE]\n\n"
        self.client.write(_chunk(closing) + LAST_CHUNK)
        self._end()


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def push(
    url: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, translating: bool
) -> None:
    """Answer the connection's requests in turn over one upstream connection of its own."""
    parts = urlsplit(url)
    loop = asyncio.get_running_loop()
    protocol = _Translating if translating else _Passing
    transport, upstream = await loop.create_connection(
        lambda: protocol(writer.transport), parts.hostname or "127.0.0.1", parts.port or 80
    )
    request = f"POST {parts.path} HTTP/1.1\r\nhost: {parts.netloc}\r\n".encode()
    request += b"".join(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in HEADERS.items())
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
        while head := await reader.readuntil(b"\r\n\r\n"):
            body = await reader.readexactly(_content_length(head))
            upstream.reply_ended = loop.create_future()
            transport.write(b"%scontent-length: %d\r\n\r\n%s" % (request, len(body), body))
            await upstream.reply_ended
    transport.close()
    writer.close()


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


async def serve(port: int, upstream: str, pushing: bool, translating: bool) -> None:
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=600)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
        url = f"{upstream}/chat/completions"
        server = await asyncio.start_server(
            (lambda r, w: push(url, r, w, translating))
            if pushing
            else (lambda r, w: proxy(session, url, r, w)),
            "127.0.0.1",
            port,
        )
        print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        async with server:
            await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", required=True, help="the fake's base URL, with /v1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--push", action="store_true", help="the push floor (see above)")
    parser.add_argument(
        "--translate", action="store_true", help="with --push: the push translator (see above)"
    )
    args = parser.parse_args(argv)
    if args.translate and not args.push:
        parser.error("--translate goes with --push")
    uvloop.run(serve(args.port, args.upstream.rstrip("/"), args.push, args.translate))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The floor: the thinnest streaming proxy on Mamba's own stack, to measure Mamba against.

`python -m bench.floor --upstream URL [--port 0]` serves `POST /v1/chat/completions` on an
asyncio server under uvloop and passes each request's body to `URL` with aiohttp (Mamba's
upstream client, pooled the same way), then copies the reply's bytes to the client as they
arrive, one HTTP chunk per read. Nothing else: no authentication, no validation, no
translation, no metrics, no logging, no framework. What it spends per request and per chunk
is what any Python gateway on uvloop and aiohttp pays to pass a stream through on this
machine; `bench.suite` measures it in the same run as Mamba and the fake (`--floor`).

It reads only what the bench sends (a request line, headers, a `Content-Length` body, one
request at a time per connection); it is not a server for anything else.
"""

import argparse
import asyncio
import contextlib
import signal
import sys

import aiohttp
import uvloop

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
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = await reader.readexactly(length)
            async with session.post(url, data=body, headers=HEADERS) as response:
                if response.status != 200:
                    writer.write(FAILED)
                    continue
                writer.write(HEAD)
                content = response.content
                while data := await content.readany():
                    writer.write(b"%x\r\n%s\r\n" % (len(data), data))
                writer.write(b"0\r\n\r\n")
    writer.close()


async def serve(port: int, upstream: str) -> None:
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=600)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
        url = f"{upstream}/chat/completions"
        server = await asyncio.start_server(
            lambda r, w: proxy(session, url, r, w), "127.0.0.1", port
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
    args = parser.parse_args(argv)
    uvloop.run(serve(args.port, args.upstream.rstrip("/")))
    return 0


if __name__ == "__main__":
    sys.exit(main())

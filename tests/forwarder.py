"""A TCP forwarder the tests control, in front of a real server (PostgreSQL, Redis): it
forwards, refuses (stops listening, resets open connections), blackholes (accepts and never
answers; open connections freeze), drops (resets open connections, forwards new ones), and
heals. It runs on a thread and event loop of its own, so that code blocking in other threads
(database threads) and the test's own loop both reach it."""

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

CHUNK = 65536


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def reset(self) -> None:
        """Close both sides with a reset (RST), as a crashed server or a proxy does."""
        for writer in (self.client, self.upstream):
            if writer is None:
                continue
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        for task in self.tasks:
            task.cancel()


class Forwarder:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = 0
        self.accepted = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._flowing: asyncio.Event | None = None

    # -- control, from any thread --

    def start(self) -> "Forwarder":
        self._thread.start()
        self._call(self._start())
        return self

    def close(self) -> None:
        self._call(self._refuse())
        self._call(self._cancel_all())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def refuse(self) -> None:
        """Connections are refused, open ones reset: the server is down."""
        self._call(self._refuse())

    def blackhole(self) -> None:
        """Connections are accepted but nothing is forwarded either way, also on open ones."""
        self._call(self._blackhole())

    def drop(self) -> None:
        """Open connections are reset; new ones are forwarded."""
        self._call(self._drop())

    def heal(self) -> None:
        self._call(self._heal())

    @property
    def url_netloc(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> "Forwarder":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, coroutine: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    # -- on the forwarder's loop --

    async def _start(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        await self._listen()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _refuse(self) -> None:
        if self._server is not None:
            self._server.close()  # not wait_closed(): it waits for every connection to end
            self._server = None
        await self._drop()

    async def _cancel_all(self) -> None:
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _blackhole(self) -> None:
        assert self._flowing is not None
        self._flowing.clear()
        if self._server is None:
            await self._listen()

    async def _drop(self) -> None:
        for link in list(self._links):
            link.reset()
        self._links.clear()

    async def _heal(self) -> None:
        assert self._flowing is not None
        if self._server is None:
            await self._listen()
        self._flowing.set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        self.accepted += 1
        link = _Link(writer)
        self._links.add(link)
        try:
            await self._flowing.wait()  # a blackholed connection waits here, unanswered
            up_reader, link.upstream = await asyncio.open_connection(*self.upstream)
            link.tasks = [
                asyncio.ensure_future(self._pump(reader, link.upstream)),
                asyncio.ensure_future(self._pump(up_reader, writer)),
            ]
            await asyncio.wait(link.tasks, return_when=asyncio.FIRST_COMPLETED)
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            self._links.discard(link)
            for task in link.tasks:
                task.cancel()
            for side in (writer, link.upstream):
                if side is not None:
                    side.transport.abort()

    async def _pump(self, source: asyncio.StreamReader, target: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        with contextlib.suppress(OSError):
            while data := await source.read(CHUNK):
                await self._flowing.wait()  # frozen while blackholed, resumed when healed
                target.write(data)
                await target.drain()

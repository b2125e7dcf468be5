"""The load generator: streamed requests with a fixed number in flight, timed per request."""

import asyncio
import contextlib
import functools
import ssl
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from bench.rawhttp import ProtocolError, RawConnection

MODEL = "gpt-4o"
TIMEOUT_SECONDS = 120.0  # the longest one request may take, start to end of body


@dataclass(slots=True)
class Target:
    """Where a scenario sends its requests, and how to read one SSE event of the reply."""

    # "direct" (OpenAI chunks), "mamba" (UI message stream) or "translator" (the push
    # translator, `bench.floor`: asked as the upstream is, answering as Mamba does)
    kind: str
    url: str
    api_key: str | None = None  # sent as X-API-Key (Mamba in `api_key` auth mode)

    @property
    def headers(self) -> dict[str, str]:
        if self.kind != "mamba":
            return {}
        # Mamba runs behind a TLS-terminating ingress: without this it redirects to https.
        headers = {"x-forwarded-proto": "https"}
        return headers | {"x-api-key": self.api_key} if self.api_key else headers

    def body(self, text: str) -> dict[str, Any]:
        messages = [{"role": "user", "content": text}]
        if self.kind != "mamba":
            options = {"stream": True, "stream_options": {"include_usage": True}}
            return {"model": MODEL, "messages": messages, **options}
        return {"model": MODEL, "messages": messages, "tools": []}


@dataclass(slots=True)
class Outcome:
    """One request: timings in seconds from just before it was sent."""

    ok: bool = False
    status: int = 0
    error: str = ""
    ttft_s: float | None = None
    total_s: float = 0.0
    bytes: int = 0
    reads: int = 0  # body pieces the client read: how much the server batches its writes
    events: int = 0  # SSE events (`data:` lines) received
    tokens: int = 0  # events that carry content: OpenAI content deltas / `text-delta`
    done: bool = False  # ended with `data: [DONE]`
    finished: bool = False  # had a `finish` event (Mamba) / a finish_reason (direct)
    failed: bool = False  # had an `error` event / a `finishReason` "error"
    index: int = 0  # the order in which its run started it (the first `concurrency`: a burst)
    started_s: float = 0.0  # when it was sent, from the start of its run


@dataclass(slots=True)
class _Reader:
    """Splits the body into SSE events across chunk boundaries and classifies each event."""

    is_token: Callable[[bytes], bool]
    is_finish: Callable[[bytes], bool]
    outcome: Outcome
    started: float
    tail: bytes = b""
    last: list[bytes] = field(default_factory=list)

    def feed(self, chunk: bytes) -> None:
        self.outcome.bytes += len(chunk)
        self.outcome.reads += 1
        events = (self.tail + chunk).split(b"\n\n")
        self.tail = events.pop()
        out = self.outcome
        for event in events:
            if not event.startswith(b"data:"):
                continue  # a keep-alive comment
            out.events += 1
            if self.is_token(event):
                out.tokens += 1
                if out.ttft_s is None:
                    out.ttft_s = time.perf_counter() - self.started
            elif self.is_finish(event):
                out.finished = True
                out.failed = out.failed or b'"finishReason":"error"' in event
            elif event.startswith((b'data: {"type":"error"', b'data: {"error"')):
                out.failed = True
        if events:
            self.last = events

    def close(self) -> None:
        ended = bool(self.last) and self.last[-1] == b"data: [DONE]"
        self.outcome.done = ended and not self.tail.strip()


def _direct_token(event: bytes) -> bool:
    return b'"content":"' in event and b'"content":""' not in event


def _direct_finish(event: bytes) -> bool:
    return b'"finish_reason":"' in event


def _mamba_token(event: bytes) -> bool:
    return event.startswith(b'data: {"type":"text-delta"')


def _mamba_finish(event: bytes) -> bool:
    return event.startswith(b'data: {"type":"finish"')


CLASSIFIERS = {
    "direct": (_direct_token, _direct_finish),
    "mamba": (_mamba_token, _mamba_finish),
    "translator": (_mamba_token, _mamba_finish),
}


async def one_request(client: httpx.AsyncClient, target: Target, text: str) -> Outcome:
    """Send one request and read the whole body, chunk by chunk, as a browser would."""
    outcome = Outcome()
    is_token, is_finish = CLASSIFIERS[target.kind]
    started = time.perf_counter()
    reader = _Reader(is_token, is_finish, outcome, started)
    try:
        async with client.stream(
            "POST", target.url, json=target.body(text), headers=target.headers
        ) as response:
            outcome.status = response.status_code
            async for chunk in response.aiter_raw():
                reader.feed(chunk)
        reader.close()
    except (httpx.HTTPError, OSError) as error:
        outcome.error = f"{type(error).__name__}: {error}"[:200]
    outcome.total_s = time.perf_counter() - started
    outcome.ok = _judge(outcome)
    return outcome


async def one_request_raw(conn: RawConnection, target: Target, text: str) -> Outcome:
    """`one_request` on a `RawConnection`; `reads` counts HTTP chunks (the server's writes)."""
    outcome = Outcome()
    is_token, is_finish = CLASSIFIERS[target.kind]
    started = time.perf_counter()
    reader = _Reader(is_token, is_finish, outcome, started)
    headers = {"accept": "text/event-stream", **target.headers}
    try:
        async with asyncio.timeout(TIMEOUT_SECONDS):
            response = await conn.post(target.url, orjson.dumps(target.body(text)), headers)
            outcome.status = response.status
            async for chunk in response.body:
                reader.feed(chunk)
        reader.close()
    except (OSError, TimeoutError, ProtocolError, asyncio.IncompleteReadError) as error:
        outcome.error = f"{type(error).__name__}: {error}"[:200]
        conn.abort()
    except BaseException:
        conn.abort()  # cancelled mid-stream: the connection is in an unknown state
        raise
    outcome.total_s = time.perf_counter() - started
    outcome.ok = _judge(outcome)
    return outcome


def _judge(outcome: Outcome) -> bool:
    if outcome.error:
        return False
    problems = [
        (outcome.status != 200, f"HTTP {outcome.status}"),
        (not outcome.done, "no [DONE] at the end"),
        (not outcome.finished, "no finish event"),
        (outcome.failed, "error event in the stream"),
        (outcome.tokens == 0, "no content"),
    ]
    outcome.error = "; ".join(message for failed, message in problems if failed)
    return not outcome.error


@dataclass(slots=True)
class RunResult:
    outcomes: list[Outcome]
    wall_s: float
    client_cpu_s: float


# One httpx client shared by all workers, or a client per worker: an httpx client or a
# `RawConnection` (see `worker_clients`).
type Client = httpx.AsyncClient | RawConnection
type Clients = Client | Sequence[Client]


def client_of(clients: Clients, worker: int) -> Client:
    if isinstance(clients, (httpx.AsyncClient, RawConnection)):
        return clients
    return clients[worker % len(clients)]


async def request(client: Client, target: Target, text: str) -> Outcome:
    if isinstance(client, RawConnection):
        return await one_request_raw(client, target, text)
    return await one_request(client, target, text)


async def run_load(
    clients: Clients, target: Target, text: str, requests: int, concurrency: int
) -> RunResult:
    """`requests` requests, `concurrency` workers each sending the next one when done (worker
    `i` with `client_of(clients, i)`)."""
    pending = iter(range(requests))
    outcomes: list[Outcome] = []

    async def worker(client: Client) -> None:
        for index in pending:
            sent = time.perf_counter()
            outcome = await request(client, target, text)
            outcome.index, outcome.started_s = index, sent - started
            outcomes.append(outcome)

    cpu, started = time.process_time(), time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for number in range(min(concurrency, requests)):
            group.create_task(worker(client_of(clients, number)))
    wall = time.perf_counter() - started
    return RunResult(outcomes, wall, time.process_time() - cpu)


@dataclass(slots=True)
class HeldStreams:
    """Streams opened and kept open by `hold_streams` (see there)."""

    requested: int
    opened: int = 0  # answered 200 (the response headers arrived)
    failed: Counter[str] = field(default_factory=Counter)
    ended_early: int = 0  # finished by the server before they were closed
    open_s: float = 0.0  # from the first request to the last answer
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    settled: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def open_now(self) -> int:
        return self.opened - self.ended_early

    async def close(self) -> None:
        """Cancel every stream: each connection is closed, as a browser leaving does."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def _open(
    stack: contextlib.AsyncExitStack, client: Client, target: Target, text: str
) -> tuple[int, AsyncIterator[bytes]]:
    """Send a request; its status and body, closed (the connection dropped if the body was
    not read to its end) when `stack` closes."""
    if isinstance(client, RawConnection):
        stack.callback(client.abort)
        headers = {"accept": "text/event-stream", **target.headers}
        response = await client.post(target.url, orjson.dumps(target.body(text)), headers)
        return response.status, response.body
    streamed = await stack.enter_async_context(
        client.stream("POST", target.url, json=target.body(text), headers=target.headers)
    )
    return streamed.status_code, streamed.aiter_raw()


async def hold_streams(
    clients: Clients, target: Target, text: str, count: int, opening: int
) -> HeldStreams:
    """Open `count` streams with `text` (a reply that does not end, such as "hang"), stream
    `i` with `client_of(clients, i)`, at most `opening` waiting for their response headers at
    once, and keep reading them until `close()`. Returns at once; `settled` is set when every
    stream was answered or failed."""
    held = HeldStreams(count)
    gate = asyncio.Semaphore(opening)
    started = time.perf_counter()
    answered = 0

    def answer() -> None:
        nonlocal answered
        answered += 1
        held.open_s = time.perf_counter() - started
        if answered == count:
            held.settled.set()

    async def one(client: Client) -> None:
        async with contextlib.AsyncExitStack() as stack:
            try:
                async with gate:
                    status, body = await _open(stack, client, target, text)
            except (httpx.HTTPError, OSError, ProtocolError, asyncio.IncompleteReadError) as error:
                held.failed[f"{type(error).__name__}: {error}"[:200]] += 1
                answer()
                return
            if status != 200:
                held.failed[f"HTTP {status}"] += 1
                answer()
                return
            held.opened += 1
            answer()
            with contextlib.suppress(httpx.HTTPError, OSError, ProtocolError):
                async for _ in body:
                    pass
            held.ended_early += 1

    held.tasks = [asyncio.create_task(one(client_of(clients, i))) for i in range(count)]
    return held


# How long an idle pooled connection is kept. httpx's default (5 s) is shorter than a stream
# takes when 200 share one process: the pool then closed idle connections and opened new ones
# all the time (~1 per request), the kernel counted accept-queue overflows (daphne listens with
# twisted's backlog of 50), and in one run 8 of 2000 requests were reset before any answer.
KEEPALIVE_SECONDS = 600.0


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every client (the targets are plain HTTP; building one per client
    would cost milliseconds each)."""
    return ssl.create_default_context()


@contextlib.asynccontextmanager
async def worker_clients(count: int, kind: str = "raw") -> AsyncIterator[list[Client]]:
    """`count` clients of one connection each, one per worker, as `count` browser tabs would
    be: `RawConnection`s ("raw") or httpx clients ("httpx"). A shared httpx pool costs CPU in
    proportion to its connections on every request (httpcore scans all of them): ~60 ms per
    request at 200 connections on this machine against ~3 ms with a client per worker."""
    clients: list[Client] = [
        RawConnection() if kind == "raw" else make_client(1, 1) for _ in range(count)
    ]
    try:
        yield clients
    finally:
        await asyncio.gather(*(client.aclose() for client in clients), return_exceptions=True)


def make_client(concurrency: int, connections: int | None = None) -> httpx.AsyncClient:
    """A client with `connections` pooled connections at most (default: room for two targets
    at `concurrency`), kept while idle, and no read timeout."""
    size = connections or max(2 * concurrency, 10)
    limits = httpx.Limits(
        max_connections=size, max_keepalive_connections=size, keepalive_expiry=KEEPALIVE_SECONDS
    )
    timeout = httpx.Timeout(120.0, connect=10.0)
    return httpx.AsyncClient(
        limits=limits, timeout=timeout, headers={"accept": "text/event-stream"}, verify=_tls()
    )

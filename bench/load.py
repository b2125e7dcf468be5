"""The load generator: streamed requests with a fixed number in flight, timed per request."""

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

MODEL = "gpt-4o"


@dataclass(slots=True)
class Target:
    """Where a scenario sends its requests, and how to read one SSE event of the reply."""

    kind: str  # "direct" (OpenAI chunks) or "mamba" (UI message stream)
    url: str

    @property
    def headers(self) -> dict[str, str]:
        # Mamba runs behind a TLS-terminating ingress: without this it redirects to https.
        return {"x-forwarded-proto": "https"} if self.kind == "mamba" else {}

    def body(self, text: str) -> dict[str, Any]:
        messages = [{"role": "user", "content": text}]
        if self.kind == "direct":
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


CLASSIFIERS = {"direct": (_direct_token, _direct_finish), "mamba": (_mamba_token, _mamba_finish)}


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


async def run_load(
    client: httpx.AsyncClient, target: Target, text: str, requests: int, concurrency: int
) -> RunResult:
    """`requests` requests, `concurrency` workers each sending the next one when done."""
    pending = iter(range(requests))
    outcomes: list[Outcome] = []

    async def worker() -> None:
        for _ in pending:
            outcomes.append(await one_request(client, target, text))

    cpu, started = time.process_time(), time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(min(concurrency, requests)):
            group.create_task(worker())
    wall = time.perf_counter() - started
    return RunResult(outcomes, wall, time.process_time() - cpu)


def make_client(concurrency: int) -> httpx.AsyncClient:
    """One client for every scenario; a pool larger than the concurrency, no read timeout."""
    size = max(2 * concurrency, 10)
    limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
    timeout = httpx.Timeout(120.0, connect=10.0)
    return httpx.AsyncClient(
        limits=limits, timeout=timeout, headers={"accept": "text/event-stream"}
    )

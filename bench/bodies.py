"""Loop stall while a maximum body is validated: `python -m bench.bodies`."""

# In-process: each body is passed to `mamba_site.bodies.parse_body` (as the chat views do)
# while a ticker task on the same event loop wakes every millisecond; the longest time the
# ticker waited beyond its millisecond is how long the loop could serve nothing else (other
# streams' chunks, health probes). Bodies are built from the settings' limits: worst cases
# at the body size limit (mostly refused now) and the worst bodies still accepted.

import argparse
import asyncio
import base64
import gc
import inspect
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

TICK_SECONDS = 0.001
PROSE = (
    'Some prose, with commas: colons, "quotes", a C:\\path and {braces} [brackets].\n'
    "Another line of plain words that a model would read without trouble at all.\n"
)


@dataclass(frozen=True, slots=True)
class Limits:
    body_bytes: int
    json_values: int
    messages: int
    parts: int
    text_chars: int
    depth: int


@dataclass(frozen=True, slots=True)
class Result:
    name: str
    size: int
    outcome: str
    wall_ms: float
    stall_ms: float
    worst_stall_ms: float


def user(parts: list[Any]) -> dict[str, Any]:
    return {"id": "u", "role": "user", "parts": parts}


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def tool(value: Any) -> dict[str, Any]:
    return {
        "type": "tool-generateChart",
        "toolCallId": "call",
        "state": "output-available",
        "input": value,
        "output": value,
    }


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def fill(limit: int, make: Callable[[int], bytes]) -> bytes:
    """The largest `make(n)` not over `limit` bytes (make grows with n)."""
    low, high = 1, 2
    while len(make(high)) <= limit:
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if len(make(middle)) <= limit else (low, middle)
    return make(low)


def body(value: Any) -> bytes:
    return orjson.dumps(value)


def raw_nested(depth: int, limit: int) -> bytes:
    """Tool inputs nested `depth` deep (past orjson.dumps' own depth limit) up to `limit`."""
    part = b'{"type":"tool-x","toolCallId":"c","state":"input-available","input":%s}' % (
        b"[" * depth + b"1" + b"]" * depth
    )
    head, tail = b'{"messages":[{"id":"u","role":"user","parts":[', b"]}]}"
    return fill(limit, lambda n: head + b",".join([part] * n) + tail)


def cases(limits: Limits) -> dict[str, bytes]:
    size = limits.body_bytes
    per_message = max(1, min(limits.parts, limits.json_values // (6 * limits.messages)))
    chart = {"data": [{"x": i, "y": i * 2} for i in range(20)], "title": "t"}
    prose = PROSE * (limits.text_chars // len(PROSE))
    return {
        # At the body size limit: what one anonymous request could send before.
        "one data URL": fill(size, lambda n: body({"messages": [user([image(n)])]})),
        "one long text": fill(size, lambda n: body({"messages": [user([text(PROSE * n)])]})),
        "small text parts": fill(size, lambda n: body({"messages": [user([text("x")] * n)]})),
        "small messages": fill(
            size, lambda n: body({"messages": [{"role": "user", "content": "x"}] * n})
        ),
        "tool parts with JSON": fill(
            size, lambda n: body({"messages": [user([text("x")]), assistant([tool(chart)] * n)]})
        ),
        "tool inputs 200 deep": raw_nested(200, size),
        # Escapes make counting what is outside strings cost the most.
        "escapes and commas": fill(
            size,
            lambda n: body({"messages": [user([text("\\" * n + "," * limits.json_values)])]}),
        ),
        # The worst bodies the limits still accept.
        "accepted: most text + image": fill(
            size, lambda n: body({"messages": [user([text(prose), image(n)])]})
        ),
        "accepted: most parts": body(
            {"messages": [user([text("x")] * per_message)] * limits.messages}
        ),
        "accepted: most tool JSON": spread(limits, tool(chart)),
        "accepted: deepest tool JSON": spread(limits, tool(nested(limits.depth))),
    }


def values(value: Any) -> int:
    """JSON values and keys in `value`."""
    if isinstance(value, dict):
        return 1 + sum(1 + values(item) for item in value.values())
    if isinstance(value, list):
        return 1 + sum(values(item) for item in value)
    return 1


def spread(limits: Limits, part: dict[str, Any]) -> bytes:
    """Copies of a tool part, as many to a message as allowed, up to the JSON value limit."""
    messages = [user([text("x")])]
    budget = limits.json_values - values({"messages": messages})
    full = assistant([part] * limits.parts)
    full_values = values(full)
    while budget >= full_values and len(messages) < limits.messages:
        messages.append(full)
        budget -= full_values
    rest = (budget - values(assistant([]))) // values(part)
    if rest > 0:
        messages.append(assistant([part] * min(rest, limits.parts)))
    return body({"messages": messages})


def image(size: int) -> dict[str, Any]:
    """A file part with a base64 data URL of about `size` characters."""
    data = base64.b64encode(random.Random(0).randbytes(size * 3 // 4)).decode()
    return {"type": "file", "mediaType": "image/png", "url": f"data:image/png;base64,{data}"}


def assistant(parts: list[Any]) -> dict[str, Any]:
    return {"id": "a", "role": "assistant", "parts": parts}


async def ticker(gaps: list[float]) -> None:
    last = time.perf_counter()
    while True:
        await asyncio.sleep(TICK_SECONDS)
        now = time.perf_counter()
        gaps.append(now - last - TICK_SECONDS)
        last = now


async def measure_once(content: bytes, concurrent: int) -> tuple[str, float, float]:
    """Outcome, wall time and the longest loop stall (ms) of `concurrent` validations at once."""
    # Imported here, once main() has set Django up.
    from django.test import RequestFactory

    from chat.schemas import ChatRequest
    from mamba_site.bodies import parse_body
    from mamba_site.errors import ApiError

    async def validate(request: Any) -> str:
        try:
            result: Any = parse_body(request, ChatRequest)
            if inspect.isawaitable(result):  # parse_body was sync before it used a thread
                await result
        except ApiError as error:
            errors = error.extra.get("errors") or [{"type": error.code}]
            return f"{error.status} {errors[0]['type']}"
        return "200"

    factory = RequestFactory()
    requests = [
        factory.post("/chat", data=content, content_type="application/json")
        for _ in range(concurrent)
    ]
    gc.collect()
    gaps: list[float] = []
    task = asyncio.create_task(ticker(gaps))
    await asyncio.sleep(0.02)
    gaps.clear()
    started = time.perf_counter()
    outcomes = await asyncio.gather(*(validate(request) for request in requests))
    wall = time.perf_counter() - started
    await asyncio.sleep(0.02)
    task.cancel()
    return outcomes[0], wall * 1000, max(gaps, default=0.0) * 1000


async def run(limits: Limits, runs: int, concurrent: int, only: str | None) -> list[Result]:
    results = []
    for name, content in cases(limits).items():
        if only and only not in name:
            continue
        await measure_once(content, 1)  # warm-up: schema caches, allocator
        figures = [await measure_once(content, concurrent) for _ in range(runs)]
        results.append(
            Result(
                name=name,
                size=len(content),
                outcome=figures[0][0],
                wall_ms=statistics.median(f[1] for f in figures),
                stall_ms=statistics.median(f[2] for f in figures),
                worst_stall_ms=max(f[2] for f in figures),
            )
        )
    return results


def markdown(results: list[Result]) -> str:
    lines = [
        "| body | size | outcome | validation ms | loop stall ms | worst stall ms |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.name} | {r.size / 2**20:.2f} MiB | {r.outcome} | {r.wall_ms:,.1f} | "
            f"{r.stall_ms:,.1f} | {r.worst_stall_ms:,.1f} |"
        )
    return "\n".join(lines)


def settings_limits() -> Limits:
    from django.conf import settings

    # Settings an older checkout does not have get the defaults of this one.
    return Limits(
        body_bytes=settings.CHAT_MAX_BODY_BYTES,
        json_values=getattr(settings, "CHAT_MAX_JSON_VALUES", 100_000),
        messages=getattr(settings, "CHAT_MAX_MESSAGES", 1000),
        parts=getattr(settings, "CHAT_MAX_PARTS_PER_MESSAGE", 200),
        text_chars=getattr(settings, "CHAT_MAX_TEXT_CHARS", 2_000_000),
        depth=getattr(settings, "CHAT_MAX_JSON_DEPTH", 32),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="measured runs per body")
    parser.add_argument("--concurrent", type=int, default=1, help="bodies validated at once")
    parser.add_argument("--only", help="only the bodies whose name contains this")
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mamba_site.settings")
    os.environ.setdefault("MAMBA_SECRET_KEY", "bench-only")
    os.environ.setdefault("MAMBA_LOGGING__LEVEL", "WARNING")
    import django

    django.setup()
    results = asyncio.run(
        run(settings_limits(), max(1, args.runs), max(1, args.concurrent), args.only)
    )
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

import asyncio

import orjson
import pytest

from chat import protocol as p
from tests.chat.conftest import parse_sse

LIMITS = p.StreamLimits(keepalive_seconds=5, idle_timeout_seconds=10, total_timeout_seconds=30)


def test_encode_writes_one_sse_event_with_camel_case_keys():
    raw = p.encode(p.ToolInputStart("c1", "generateChart"))
    assert raw.endswith(b"\n\n")
    assert orjson.loads(raw.removeprefix(b"data: ")) == {
        "type": "tool-input-start",
        "toolCallId": "c1",
        "toolName": "generateChart",
    }


def test_encode_omits_absent_optional_keys_instead_of_null():
    assert orjson.loads(p.encode(p.Finish("stop"))[6:]) == {
        "type": "finish",
        "finishReason": "stop",
    }


class Written:
    """A `write` for `p.pump` that keeps every write, and can hold one until released."""

    def __init__(self, hold_after: int | None = None):
        self.parts: list[bytes] = []
        self.hold_after = hold_after
        self.release = asyncio.Event()

    async def __call__(self, data: bytes) -> None:
        if self.hold_after is not None and len(self.parts) >= self.hold_after:
            await self.release.wait()  # a client that stopped reading
        self.parts.append(data)

    def joined(self) -> bytes:
        return b"".join(self.parts)


async def collect(events, limits=LIMITS, safe_error=lambda e: "safe text"):
    async def source():
        for e in events:
            if isinstance(e, BaseException):
                raise e
            if isinstance(e, float):
                await asyncio.sleep(e)
                continue
            yield [e]

    written = Written()
    await p.pump(source(), written, limits=limits, message_id="m1", safe_error=safe_error)
    return written.joined()


async def test_stream_ends_with_done():
    raw = await collect([p.Start("m1"), p.Finish("stop")])
    assert parse_sse(raw) == [
        {"type": "start", "messageId": "m1"},
        {"type": "finish", "finishReason": "stop"},
        "[DONE]",
    ]


async def test_stream_closes_open_blocks_before_error():
    events = [
        p.Start("m1"),
        p.StartStep(),
        p.TextStart("t1"),
        p.TextDelta("t1", "x"),
        RuntimeError("secret internals"),
    ]
    types = [e if e == "[DONE]" else e["type"] for e in parse_sse(await collect(events))]
    assert types == [
        "start",
        "start-step",
        "text-start",
        "text-delta",
        "text-end",
        "finish-step",
        "error",
        "finish",
        "[DONE]",
    ]


async def test_stream_error_ends_unfinished_tool_calls():
    events = [
        p.Start("m1"),
        p.StartStep(),
        p.ToolInputStart("c1", "x"),
        p.ToolInputStart("c2", "y"),
        p.ToolInputAvailable("c2", "y", {}),
        p.ToolOutputAvailable("c2", {}),
        RuntimeError("boom"),
    ]
    parsed = parse_sse(await collect(events))
    assert parsed[6:9] == [
        {"type": "tool-output-error", "toolCallId": "c1", "errorText": p.INTERRUPTED},
        {"type": "finish-step"},
        {"type": "error", "errorText": "safe text"},
    ]


async def test_stream_error_text_comes_from_safe_error():
    raw = await collect([p.Start("m1"), RuntimeError("secret internals")])
    assert b"secret internals" not in raw
    assert {"type": "error", "errorText": "safe text"} in parse_sse(raw)


async def test_stream_error_before_start_still_sends_start():
    events = parse_sse(await collect([RuntimeError("x")]))
    assert events[0] == {"type": "start", "messageId": "m1"}


async def test_stream_sends_keepalive_while_producer_is_silent():
    limits = p.StreamLimits(keepalive_seconds=0.05, idle_timeout_seconds=5, total_timeout_seconds=5)
    raw = await collect([p.Start("m1"), 0.2, p.Finish("stop")], limits=limits)
    assert raw.count(b": keep-alive\n\n") >= 2
    assert parse_sse(raw)[-1] == "[DONE]"


async def test_stream_idle_timeout_ends_with_error():
    limits = p.StreamLimits(
        keepalive_seconds=0.05, idle_timeout_seconds=0.2, total_timeout_seconds=5
    )
    seen = []
    raw = await collect(
        [p.Start("m1"), 5.0, p.Finish("stop")],
        limits=limits,
        safe_error=lambda e: seen.append(e) or "timed out",
    )
    assert isinstance(seen[0], p.StreamTimeout)
    assert {"type": "error", "errorText": "timed out"} in parse_sse(raw)


async def test_stream_total_timeout_ends_a_busy_stream():
    limits = p.StreamLimits(keepalive_seconds=1, idle_timeout_seconds=1, total_timeout_seconds=0.3)
    events = [p.Start("m1")] + [
        x for _ in range(100) for x in (0.02, p.StartStep(), p.FinishStep())
    ]
    raw = await collect(events, limits=limits, safe_error=lambda e: "too long")
    assert {"type": "error", "errorText": "too long"} in parse_sse(raw)


async def test_stream_close_cancels_and_closes_producer():
    closed = asyncio.Event()

    async def source():
        try:
            yield [p.Start("m1")]
            await asyncio.sleep(30)
        finally:
            closed.set()

    written = Written()
    pumping = asyncio.ensure_future(
        p.pump(source(), written, limits=LIMITS, message_id="m1", safe_error=str)
    )
    await asyncio.sleep(0.05)
    assert b"start" in written.joined()
    pumping.cancel()  # the client left
    with pytest.raises(asyncio.CancelledError):
        await pumping
    await asyncio.wait_for(closed.wait(), 1)


async def test_stream_ends_cleanly_when_the_server_drains():
    import time

    drain_at = time.monotonic() + 0.2

    async def source():
        yield [p.Start("m1")]
        yield [p.StartStep(), p.TextStart("t1")]
        await asyncio.sleep(5)

    written = Written()
    await p.pump(
        source(),
        written,
        limits=LIMITS,
        message_id="m1",
        safe_error=lambda e: type(e).__name__,
        drain_deadline=lambda: drain_at,
    )
    events = parse_sse(written.joined())
    assert events[-5:] == [
        {"type": "text-end", "id": "t1"},
        {"type": "finish-step"},
        {"type": "error", "errorText": "StreamInterrupted"},
        {"type": "finish", "finishReason": "error"},
        "[DONE]",
    ]


async def test_stream_keepalives_follow_their_interval_below_a_second():
    limits = p.StreamLimits(keepalive_seconds=0.1, idle_timeout_seconds=5, total_timeout_seconds=5)
    raw = await collect([p.Start("m1"), 0.55, p.Finish("stop")], limits=limits)
    assert 4 <= raw.count(b": keep-alive\n\n") <= 6


async def test_stream_disconnect_while_the_client_stopped_reading_is_a_cancellation():
    seen = []

    async def events():
        try:
            yield [p.Start("m1")]
            for _ in range(1000):
                yield [p.StartStep()]
        except BaseException as error:
            seen.append(type(error))
            raise

    written = Written(hold_after=1)  # the first write goes out, the second never does
    pumping = asyncio.ensure_future(
        p.pump(events(), written, limits=LIMITS, message_id="m1", safe_error=str)
    )
    await asyncio.sleep(0.05)  # the producer waits at a `yield` while the write waits
    pumping.cancel()  # the client leaves
    with pytest.raises(asyncio.CancelledError):
        await pumping
    # The producer learns why it ended (a disconnect, counted as one), not a bare close.
    assert seen == [asyncio.CancelledError]


async def test_stream_writes_each_batch_at_once_and_finish_with_done():
    async def events():
        yield [p.Start("m1"), p.StartStep()]
        yield [p.TextStart("t1"), p.TextDelta("t1", "a"), p.TextDelta("t1", "b")]
        yield [p.TextEnd("t1"), p.FinishStep(), p.Finish("stop")]

    written = Written()
    await p.pump(events(), written, limits=LIMITS, message_id="m1", safe_error=str)
    assert [len(parse_sse(part)) for part in written.parts] == [2, 3, 4]
    assert written.parts[-1].endswith(b"data: [DONE]\n\n")


async def test_stream_producer_ending_without_finish_is_an_error():
    async def events():
        yield [p.Start("m1"), p.StartStep(), p.TextStart("t1"), p.TextDelta("t1", "a")]

    written = Written()
    await p.pump(events(), written, limits=LIMITS, message_id="m1", safe_error=lambda e: "cut")
    assert parse_sse(written.joined())[-5:] == [
        {"type": "text-end", "id": "t1"},
        {"type": "finish-step"},
        {"type": "error", "errorText": "cut"},
        {"type": "finish", "finishReason": "error"},
        "[DONE]",
    ]

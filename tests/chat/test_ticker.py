"""The loop-wide ticker: one timer for every stream's clocks, whatever the number of streams."""

import asyncio
import logging

import pytest

from chat import protocol as p
from chat.ticker import MAX_PERIOD_SECONDS, MIN_PERIOD_SECONDS, Ticker, period_for, ticker
from chat.watch import Watch
from tests.chat.conftest import parse_sse


class Timers:
    """Counts the timers scheduled on the running loop (asyncio's `call_later` goes through
    its `call_at`)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        loop = asyncio.get_running_loop()
        self.count = 0
        call_at = loop.call_at

        def counted(*args, **kwargs):
            self.count += 1
            return call_at(*args, **kwargs)

        monkeypatch.setattr(loop, "call_at", counted)


class Clock:
    def __init__(self, fail: bool = False) -> None:
        self.ticks: list[float] = []
        self.fail = fail

    def tick(self, now: float) -> None:
        self.ticks.append(now)
        if self.fail:
            raise RuntimeError("a bug in one clock")


def test_period_is_a_tenth_of_the_interval_within_bounds():
    assert period_for(0.1) == pytest.approx(0.01)
    assert period_for(0.001) == MIN_PERIOD_SECONDS
    assert period_for(60) == MAX_PERIOD_SECONDS


async def test_one_ticker_per_loop():
    assert ticker() is ticker()
    other = await asyncio.to_thread(asyncio.run, _a_ticker())
    assert other is not ticker()


async def _a_ticker() -> Ticker:
    return ticker()


async def test_silent_streams_share_one_timer(monkeypatch):
    """200 silent streams, keep-alives every 50 ms for 0.3 s: a timer per stream would have
    scheduled well over a thousand; the ticker schedules one per period."""
    limits = p.StreamLimits(keepalive_seconds=0.05, idle_timeout_seconds=5, total_timeout_seconds=5)
    release = asyncio.Event()  # the producers wait on it: no timer of theirs

    async def source():
        yield [p.Start("m1")]
        await release.wait()
        yield [p.Finish("stop")]

    async def stream() -> bytes:
        parts: list[bytes] = []

        async def write(data: bytes) -> None:
            parts.append(data)

        await p.pump(source(), write, limits=limits, message_id="m1", safe_error=str)
        return b"".join(parts)

    timers = Timers(monkeypatch)
    streams = [asyncio.ensure_future(stream()) for _ in range(200)]
    await asyncio.sleep(0.3)
    scheduled_by_streams = timers.count - 1  # the sleep's own
    release.set()
    bodies = await asyncio.gather(*streams)
    for raw in bodies:
        assert raw.count(p.KEEPALIVE) >= 3
        assert parse_sse(raw)[-1] == "[DONE]"
    # 0.3 s at the period of a 50 ms interval (5 ms): about 60 ticks, not one per stream.
    assert scheduled_by_streams < 120
    assert len(ticker()) == 0


async def test_a_failing_clock_is_dropped_and_the_others_go_on(caplog):
    clocks = ticker()
    good, bad = Clock(), Clock(fail=True)
    clocks.add(good, 0.05)
    clocks.add(bad, 0.05)
    with caplog.at_level(logging.ERROR, logger="chat.ticker"):
        await asyncio.sleep(0.05)
    assert len(bad.ticks) == 1
    assert len(good.ticks) >= 3
    assert "A stream's clock failed" in caplog.text
    clocks.discard(good)
    assert len(clocks) == 0


async def test_period_follows_the_shortest_interval_registered():
    clocks = ticker()
    slow, fast = Clock(), Clock()
    clocks.add(slow, 60)
    assert clocks.period == MAX_PERIOD_SECONDS
    clocks.add(fast, 0.1)  # the next tick comes sooner, not after the slow clock's period
    assert clocks.period == pytest.approx(0.01)
    await asyncio.sleep(0.05)
    assert len(slow.ticks) >= 2
    clocks.discard(fast)
    await asyncio.sleep(0.02)
    assert clocks.period == MAX_PERIOD_SECONDS
    clocks.discard(slow)


async def test_no_timer_once_every_clock_left(monkeypatch):
    clocks = ticker()
    clock = Clock()
    clocks.add(clock, 0.05)
    await asyncio.sleep(0.02)
    clocks.discard(clock)
    timers = Timers(monkeypatch)
    seen = len(clock.ticks)
    await asyncio.sleep(0.05)
    assert timers.count == 1  # the sleep's own
    assert len(clock.ticks) == seen


async def test_watch_ends_a_silent_block_and_absorbs_its_cancellation():
    async with Watch(0.05) as watch:
        await asyncio.sleep(5)
    assert watch.expired
    assert len(ticker()) == 0


async def test_watch_touched_or_paused_does_not_expire():
    async with Watch(0.05) as watch:
        for _ in range(10):
            await asyncio.sleep(0.02)
            watch.touch()
        watch.pause()  # the consumer is slow: not the watched party's silence
        await asyncio.sleep(0.15)
        watch.resume()
    assert not watch.expired


async def test_watch_lets_a_cancellation_from_elsewhere_through():
    async def guarded():
        async with Watch(5):
            await asyncio.sleep(5)

    task = asyncio.ensure_future(guarded())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(ticker()) == 0

"""One timer per event loop for the clocks of every running stream: keep-alives, idle and total
timeouts, the drain's deadline, a provider's silence.

A stream's clock only notes what happened (a write, a chunk); the loop's ticker looks at all
of them every `period` and each decides what is due. A timer per stream, re-armed as it
fires, made the loop's timer heap grow and churn with the streams; the ticker's cost is one
timer and one short call per stream per period, the same whether a stream is busy or silent.
"""

import logging
import time
import weakref
from asyncio import AbstractEventLoop, TimerHandle, get_running_loop
from typing import Protocol

logger = logging.getLogger(__name__)

# How often the ticker looks at its clocks: at least once a second (what every production
# limit needs), more often while a clock with a shorter interval is registered (tests).
MAX_PERIOD_SECONDS = 1.0
MIN_PERIOD_SECONDS = 0.005
# A clock is looked at this many times within its shortest interval (at most once a second).
CHECKS_PER_INTERVAL = 10


class Clock(Protocol):
    def tick(self, now: float) -> None:
        """Called every period with `time.monotonic()`; may `discard` itself."""


def period_for(interval: float) -> float:
    """The period a clock whose shortest interval is `interval` seconds needs."""
    return min(max(interval / CHECKS_PER_INTERVAL, MIN_PERIOD_SECONDS), MAX_PERIOD_SECONDS)


class Ticker:
    """The clocks of one event loop, and the one timer that ticks them."""

    __slots__ = ("__weakref__", "_clocks", "_handle", "_loop", "_period", "_ticking")

    def __init__(self, loop: AbstractEventLoop) -> None:
        self._loop = loop
        self._clocks: dict[Clock, float] = {}  # each clock's period
        self._handle: TimerHandle | None = None
        self._period = MAX_PERIOD_SECONDS
        self._ticking = False

    def __len__(self) -> int:
        return len(self._clocks)

    @property
    def period(self) -> float:
        return self._period

    def add(self, clock: Clock, interval: float) -> None:
        """Tick `clock` until it is discarded, at least `CHECKS_PER_INTERVAL` times within
        `interval` (its shortest), and at least once a second."""
        period = period_for(interval)
        self._clocks[clock] = period
        if self._ticking:  # the tick schedules the next one when it is done
            return
        if self._handle is None or period < self._period:
            if self._handle is not None:
                self._handle.cancel()
            self._period = period
            self._handle = self._loop.call_later(period, self._tick)

    def discard(self, clock: Clock) -> None:
        self._clocks.pop(clock, None)
        if not self._clocks and self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        self._handle = None
        self._ticking = True
        now = time.monotonic()
        try:
            for clock in list(self._clocks):
                try:
                    clock.tick(now)
                except Exception:  # one clock's fault must not stop the others'
                    logger.exception("A stream's clock failed")
                    self._clocks.pop(clock, None)
        finally:
            self._ticking = False
        if self._clocks:
            self._period = min(self._clocks.values())
            self._handle = self._loop.call_later(self._period, self._tick)


_tickers: weakref.WeakKeyDictionary[AbstractEventLoop, Ticker] = weakref.WeakKeyDictionary()


def ticker() -> Ticker:
    """The running loop's ticker (daphne runs one loop; tests run many)."""
    loop = get_running_loop()
    found = _tickers.get(loop)
    if found is None:
        found = _tickers[loop] = Ticker(loop)
    return found

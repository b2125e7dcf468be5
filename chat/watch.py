"""A silence watchdog: cancels the task it guards when `touch()` was not called for a while."""

import asyncio
import time
from types import TracebackType
from typing import Self

from chat.ticker import Ticker, ticker


class Watch:
    """Like `asyncio.timeout`, but re-armed by `touch()`, which only notes that something
    came: a clock on the loop's ticker, no timer of its own. When the silence reaches
    `seconds` (give or take the ticker's period) the guarded block ends, the cancellation is
    absorbed and `expired` is true."""

    __slots__ = ("_last", "_paused", "_task", "_ticker", "_touched", "expired", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._paused = False
        self._touched = False

    async def __aenter__(self) -> Self:
        task = asyncio.current_task()
        assert task is not None, "Watch guards a task"
        self._task = task
        self._last = time.monotonic()
        self._ticker: Ticker = ticker()
        self._ticker.add(self, self.seconds)
        return self

    def touch(self) -> None:
        self._touched = True

    def pause(self) -> None:
        """While the guarded block waits on its consumer (a generator at `yield`), the time
        is not the watched party's silence, and a cancellation would land elsewhere."""
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        self._touched = True

    def tick(self, now: float) -> None:
        if self._paused or self._touched:
            self._touched = False
            self._last = now
        elif now - self._last >= self.seconds:
            self._ticker.discard(self)
            self.expired = True
            self._task.cancel()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        self._ticker.discard(self)
        # Absorb only our own cancellation; one from elsewhere (the client left) goes on.
        return self.expired and exc_type is asyncio.CancelledError and self._task.uncancel() == 0

"""A silence watchdog: cancels the task it guards when `touch()` was not called for a while."""

import asyncio
from types import TracebackType
from typing import Self


class Watch:
    """Like `asyncio.timeout`, but re-armed by `touch()`, which only notes the time: one timer
    per quiet period, not one per chunk. When it fires the guarded block ends, the
    cancellation is absorbed and `expired` is true."""

    __slots__ = ("_handle", "_last", "_loop", "_paused", "_task", "expired", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._paused = False
        self._handle: asyncio.TimerHandle | None = None

    async def __aenter__(self) -> Self:
        self._loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None, "Watch guards a task"
        self._task = task
        self._last = self._loop.time()
        self._handle = self._loop.call_at(self._last + self.seconds, self._check)
        return self

    def touch(self) -> None:
        self._last = self._loop.time()

    def pause(self) -> None:
        """While the guarded block waits on its consumer (a generator at `yield`), the time
        is not the watched party's silence, and a cancellation would land elsewhere."""
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        self._last = self._loop.time()

    def _check(self) -> None:
        if self._paused:
            self._last = self._loop.time()
        due = self._last + self.seconds
        if self._loop.time() < due:
            self._handle = self._loop.call_at(due, self._check)
            return
        self._handle = None
        self.expired = True
        self._task.cancel()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        # Absorb only our own cancellation; one from elsewhere (the client left) goes on.
        return self.expired and exc_type is asyncio.CancelledError and self._task.uncancel() == 0

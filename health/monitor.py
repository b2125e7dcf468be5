"""The background upstream check: one task per event loop, started by the first probe."""

import asyncio
import contextlib
import contextvars
import logging
import weakref
from asyncio import AbstractEventLoop

import httpx
from django.conf import settings

from health.checks import PENDING, ComponentResult, Status, check_upstream

logger = logging.getLogger(__name__)


class UpstreamMonitor:
    """Checks the upstream every `HEALTH_CHECK_INTERVAL_SECONDS`; probes read `result`.

    Daphne has no ASGI lifespan, so the task starts on the first probe that asks for it
    (`upstream_monitor()`), and a task that died is started again by the next one.
    """

    def __init__(self) -> None:
        self.result: ComponentResult = PENDING
        self._checked = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def ensure_running(self) -> None:
        if self.running:
            return
        # A fresh context: the task must not carry the first probe's request id (or thread).
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name="mamba-health-upstream", context=contextvars.Context()
        )
        self._task.add_done_callback(self._finished)

    async def first_result(self, *, within: float) -> ComponentResult:
        """The result once the first check is done, or `pending` after `within` seconds."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await self._checked.wait()
        return self.result

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            # wait() does not raise the task's CancelledError, only our own if we are cancelled.
            await asyncio.wait([task])

    async def _run(self) -> None:
        timeout = httpx.Timeout(settings.HEALTH_TIMEOUT_SECONDS)
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
            while True:
                self._store(await check_upstream(client))
                await asyncio.sleep(settings.HEALTH_CHECK_INTERVAL_SECONDS)

    def _store(self, result: ComponentResult) -> None:
        if result.status != self.result.status:
            level = logging.WARNING if result.status == Status.DEGRADED else logging.INFO
            logger.log(level, "Upstream health: %s %s", result.status, result.error)
        self.result = result
        self._checked.set()

    def _finished(self, task: asyncio.Task[None]) -> None:
        # Drop the task (it holds the loop, which keys the registry), and report a crash.
        if self._task is task:
            self._task = None
        if not task.cancelled() and task.exception() is not None:
            logger.error("The upstream health check stopped", exc_info=task.exception())


# One monitor per event loop: daphne runs one; tests run one per test.
_monitors: weakref.WeakKeyDictionary[AbstractEventLoop, UpstreamMonitor] = (
    weakref.WeakKeyDictionary()
)


def upstream_monitor() -> UpstreamMonitor:
    """This event loop's monitor, its task started if it is not running."""
    loop = asyncio.get_running_loop()
    monitor = _monitors.get(loop)
    if monitor is None:
        monitor = _monitors[loop] = UpstreamMonitor()
    monitor.ensure_running()
    return monitor


async def upstream_monitor_stop() -> None:
    """Cancel this event loop's monitor task and forget its result."""
    monitor = _monitors.pop(asyncio.get_running_loop(), None)
    if monitor is not None:
        await monitor.stop()

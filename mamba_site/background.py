"""Work off the request's path: writes a response must not wait for (usage, last use)."""

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any

logger = logging.getLogger(__name__)

# The event loop keeps only weak references to tasks: without these, one could be collected
# before it ran to its end.
_running: set[asyncio.Task[None]] = set()


def run_in_background(coroutine: Coroutine[Any, Any, Any]) -> None:
    """Run `coroutine` as a task of the running loop; its failure is logged, never raised."""

    async def guarded() -> None:
        try:
            await coroutine
        except Exception:
            logger.exception("Background write failed")

    task = asyncio.get_running_loop().create_task(guarded())
    _running.add(task)
    task.add_done_callback(_running.discard)


async def background_wait(seconds: float | None = None) -> None:
    """Wait (up to `seconds`) for this loop's background work to end: at shutdown, so that a
    write in flight is not cut, and after each test, before its database is emptied."""
    loop = asyncio.get_running_loop()
    tasks = [task for task in _running if task.get_loop() is loop and not task.done()]
    if tasks:
        await asyncio.wait(tasks, timeout=seconds)


async def background_wait_at_shutdown(deadline: float, final: bool) -> None:
    await background_wait(max(0.0, deadline - time.monotonic()))

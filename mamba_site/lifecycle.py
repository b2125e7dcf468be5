"""The process's shutdown: until when open streams may run while the server drains, and what
must be done before it exits (writing kept usage records)."""

import logging
import math
import time
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)

# A hook gets the deadline (monotonic) and whether this is the last call: after the drain, and
# once more after what was still running at the grace's end was cancelled.
type ShutdownHook = Callable[[float, bool], Awaitable[None]]

# Streams end themselves (with an error chunk the client can act on) this long before the
# server cancels whatever is left.
DRAIN_MARGIN_SECONDS = 2.0

_drain = {"deadline": math.inf}


def drain_begin(grace_seconds: float) -> None:
    margin = min(DRAIN_MARGIN_SECONDS, grace_seconds / 2)
    _drain["deadline"] = time.monotonic() + grace_seconds - margin


def drain_deadline() -> float:
    """`math.inf` until a drain begins."""
    return _drain["deadline"]


_hooks: list[ShutdownHook] = []


def at_shutdown(hook: ShutdownHook) -> None:
    """Run `hook` when the server stops (python -m mamba_site.serve); once per hook."""
    if hook not in _hooks:
        _hooks.append(hook)


async def shutdown(deadline: float, *, final: bool) -> None:
    for hook in _hooks:
        try:
            await hook(deadline, final)
        except Exception:
            logger.exception("A shutdown hook failed")

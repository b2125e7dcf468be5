"""The process's shutdown: until when open streams may run while the server drains."""

import math
import time

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

"""Per-caller limits with the `limits` library: requests per minute, concurrent streams and
tokens per day, counted in process or in Redis (when REDIS_URL is set) so they hold across
replicas."""

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from django.conf import settings
from limits import RateLimitItemPerDay, RateLimitItemPerSecond
from limits.aio.storage import Storage
from limits.aio.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter
from limits.storage import storage_from_string

from mamba_site import metrics
from mamba_site.auth import Principal
from mamba_site.errors import RateLimited

# A stream slot is given back when the stream ends; the expiry only frees the slots of a
# replica that died holding them.
STREAM_SLOT_EXPIRY_SECONDS = 3600


@dataclass(frozen=True, slots=True)
class _Limiters:
    url: str
    storage: Storage
    moving: MovingWindowRateLimiter
    fixed: FixedWindowRateLimiter


# "current": the limiters for the REDIS_URL they were made for.
_state: dict[str, _Limiters] = {}


def _limiters() -> _Limiters:
    url = settings.REDIS_URL
    current = _state.get("current")
    if current is None or current.url != url:
        if url:
            uri = "async+" + url if not url.startswith("async+") else url
            storage = storage_from_string(uri, implementation="redispy")
        else:
            storage = storage_from_string("async+memory://")
        assert isinstance(storage, Storage)
        current = _state["current"] = _Limiters(
            url=url,
            storage=storage,
            moving=MovingWindowRateLimiter(storage),
            fixed=FixedWindowRateLimiter(storage),
        )
    return current


def _storage() -> Storage:
    return _limiters().storage


def quotas_reset() -> None:
    _state.clear()


def _limited(kind: str, detail: str, limit: int, reset_at: float) -> RateLimited:
    metrics.rate_limit_rejections.labels(kind).inc()
    retry_after = max(1, math.ceil(reset_at - time.time()))
    return RateLimited(
        detail,
        headers={
            "Retry-After": str(retry_after),
            "RateLimit-Limit": str(limit),
            "RateLimit-Remaining": "0",
            "RateLimit-Reset": str(retry_after),
        },
    )


async def request_hit(principal: Principal) -> dict[str, str]:
    """Count one request; the RateLimit-* headers to send, or raises `RateLimited` (429)."""
    limit = principal.requests_per_minute
    if not limit:
        return {}
    item = RateLimitItemPerSecond(limit, settings.RATE_LIMIT_WINDOW_SECONDS)
    limiter = _limiters().moving
    allowed = await limiter.hit(item, "rpm", principal.id)
    stats = await limiter.get_window_stats(item, "rpm", principal.id)
    if not allowed:
        detail = f"Rate limit of {limit} requests per minute reached."
        raise _limited("requests_per_minute", detail, limit, stats.reset_time)
    return {
        "RateLimit-Limit": str(limit),
        "RateLimit-Remaining": str(stats.remaining),
        "RateLimit-Reset": str(max(0, math.ceil(stats.reset_time - time.time()))),
    }


async def tokens_check(principal: Principal) -> None:
    """Raises `RateLimited` when the caller has used its tokens for the day (UTC)."""
    limit = principal.tokens_per_day
    if not limit:
        return
    limiter = _limiters().fixed
    item = RateLimitItemPerDay(limit)
    if not await limiter.test(item, "tokens", principal.id):
        stats = await limiter.get_window_stats(item, "tokens", principal.id)
        raise _limited(
            "tokens_per_day", f"Daily limit of {limit} tokens reached.", limit, stats.reset_time
        )


async def tokens_add(principal: Principal, tokens: int) -> None:
    if principal.tokens_per_day and tokens > 0:
        limiter = _limiters().fixed
        await limiter.hit(
            RateLimitItemPerDay(principal.tokens_per_day), "tokens", principal.id, cost=tokens
        )


async def stream_acquire(principal: Principal) -> Callable[[], Awaitable[None]]:
    """Take one of the caller's stream slots; returns the release, or raises `RateLimited`."""
    limit = principal.concurrent_streams
    if not limit:
        return _nothing
    storage = _storage()
    key = f"mamba/streams/{principal.id}"
    if await storage.incr(key, STREAM_SLOT_EXPIRY_SECONDS) > limit:
        await _give_back(storage, key)
        raise _limited(
            "concurrent_streams",
            f"Limit of {limit} concurrent streams reached.",
            limit,
            time.time() + 1,
        )

    async def release() -> None:
        await _give_back(storage, key)

    return release


async def _give_back(storage: Storage, key: str) -> None:
    # Not every storage has decr (Redis has not): an increment by -1 works in all of them.
    if await storage.incr(key, STREAM_SLOT_EXPIRY_SECONDS, amount=-1) < 0:
        await storage.clear(key)  # the slot had expired meanwhile; never count below zero


async def _nothing() -> None:
    return None

"""Per-caller limits with the `limits` library: requests per minute, concurrent streams (leases,
mamba_site/leases.py) and tokens per day, counted in Redis when REDIS_URL is set, so that they
hold across replicas, else in this process.

While Redis fails, the same limits are counted in this process (`LIMITS_ON_REDIS_ERROR=local`:
the service stays up and each replica still bounds a caller) or limited requests are refused
with a 503 (`closed`). After a failure Redis is left alone for `REDIS_RETRY_SECONDS`; then one
request asks it again while the others go on without waiting."""

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings
from limits import RateLimitItemPerDay, RateLimitItemPerSecond
from limits.aio.storage import Storage
from limits.aio.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter
from limits.storage import storage_from_string

from mamba_site import metrics
from mamba_site.auth import Principal
from mamba_site.dependencies import redis_state
from mamba_site.errors import RateLimited, RateLimitUnavailable
from mamba_site.leases import Lease, LeaseRenewer, LocalLeases, SharedLeases

if TYPE_CHECKING:
    import redis.asyncio as aioredis

LEASE_KEY_PREFIX = "mamba:leases:"


@dataclass(frozen=True, slots=True)
class _Limiters:
    storage: Storage
    moving: MovingWindowRateLimiter
    fixed: FixedWindowRateLimiter

    @classmethod
    def over(cls, storage: Storage) -> "_Limiters":
        return cls(storage, MovingWindowRateLimiter(storage), FixedWindowRateLimiter(storage))


class _Quotas:
    """The limiters of one REDIS_URL on one event loop (Redis connections belong to a loop)."""

    def __init__(self, url: str, loop: asyncio.AbstractEventLoop) -> None:
        self.url = url
        self.loop = loop
        local = storage_from_string("async+memory://")
        assert isinstance(local, Storage)
        self.local = _Limiters.over(local)
        self.local_leases = LocalLeases()
        self.shared: _Limiters | None = None
        self.shared_leases: SharedLeases | None = None
        self.pool: aioredis.ConnectionPool | None = None
        # What a failing Redis raises: a socket's errors, our own bound on a call, and with a
        # REDIS_URL redis-py's (imported only then: 6 MiB a process without it).
        self.errors: tuple[type[BaseException], ...] = (OSError, TimeoutError)
        if url:
            from redis.asyncio import Redis
            from redis.exceptions import RedisError

            from mamba_site.redis_client import redis_pool

            self.errors = (RedisError, OSError, TimeoutError)
            self.pool = redis_pool(url)
            uri = "async+" + url if not url.startswith("async+") else url
            shared = storage_from_string(
                uri,
                implementation="redispy",
                connection_pool=self.pool,  # type: ignore[arg-type]  # passed to redis-py
            )
            assert isinstance(shared, Storage)
            self.shared = _Limiters.over(shared)
            self.shared_leases = SharedLeases(Redis(connection_pool=self.pool))
        self.retry_at = 0.0  # after a failure: when Redis is asked again
        self.renewer = LeaseRenewer(self.renew, _renew_interval)

    def redis_due(self) -> bool:
        """Whether to ask Redis now; after a failure, once per `REDIS_RETRY_SECONDS` (the asker
        claims the turn, so concurrent requests do not all wait on a server that hangs)."""
        now = time.monotonic()
        if now < self.retry_at:
            return False
        if not redis_state.up:
            self.retry_at = now + settings.REDIS_RETRY_SECONDS
        return True

    async def ask[T](self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        """`call()` against Redis, bounded; raises one of `errors` (noted) on failure."""
        try:
            async with asyncio.timeout(settings.REDIS_TIMEOUT_SECONDS * 2):
                result = await call()
        except self.errors as error:
            self.retry_at = time.monotonic() + settings.REDIS_RETRY_SECONDS
            redis_state.failed(operation, error, meanwhile=_meanwhile())
            raise
        self.retry_at = 0.0
        redis_state.succeeded()
        return result

    async def count[T](
        self, limit: str, counting: Callable[[_Limiters], Awaitable[T]], *, check: bool = True
    ) -> T:
        """`counting` on the shared limiters, or on this process's when Redis fails. A check
        (`check`) is refused instead in closed mode; a count after the fact never is."""
        shared = self.shared
        if shared is None:
            return await counting(self.local)
        if self.redis_due():
            try:
                return await self.ask(limit, lambda: counting(shared))
            except self.errors:
                pass
        return await self._fallback(limit, lambda: counting(self.local), check=check)

    async def _fallback[T](
        self, limit: str, local: Callable[[], Awaitable[T]], *, check: bool
    ) -> T:
        if check and settings.LIMITS_ON_REDIS_ERROR == "closed":
            metrics.rate_limit_fallbacks.labels(limit, "closed").inc()
            raise RateLimitUnavailable(retry_after=settings.REDIS_RETRY_SECONDS)
        metrics.rate_limit_fallbacks.labels(limit, "local").inc()
        return await local()

    async def lease(self, principal: Principal, limit: int) -> Lease | None:
        key = LEASE_KEY_PREFIX + principal.id
        seconds = settings.LIMITS_STREAM_LEASE_SECONDS
        leases = self.shared_leases
        if leases is not None and self.redis_due():
            try:
                return await self.ask(
                    "concurrent_streams", lambda: leases.acquire(key, limit, seconds)
                )
            except self.errors:
                pass
        if leases is None:
            return self.local_leases.acquire(key, limit, seconds)

        async def local() -> Lease | None:
            return self.local_leases.acquire(key, limit, seconds)

        return await self._fallback("concurrent_streams", local, check=True)

    async def release(self, lease: Lease) -> None:
        self.renewer.discard(lease)
        leases = self.shared_leases
        if not lease.shared or leases is None:
            self.local_leases.release(lease)
        elif self.redis_due():
            # On failure (noted) the lease is no longer renewed: it expires by itself.
            with contextlib.suppress(*self.errors):
                await self.ask("release", lambda: leases.release(lease))

    async def renew(self, live: list[Lease]) -> None:
        seconds = settings.LIMITS_STREAM_LEASE_SECONDS
        shared = [lease for lease in live if lease.shared]
        for lease in live:
            if not lease.shared:
                self.local_leases.renew(lease, seconds)
        leases = self.shared_leases
        if shared and leases is not None and self.redis_due():
            # On failure (noted) the leases expire unless a later renewal reaches Redis in time.
            with contextlib.suppress(*self.errors):
                await self.ask("renew", lambda: leases.renew(shared, seconds))

    def stop(self) -> None:
        self.renewer.stop()


def _renew_interval() -> float:
    return float(settings.LIMITS_STREAM_LEASE_SECONDS) / 4


def _meanwhile() -> str:
    if settings.LIMITS_ON_REDIS_ERROR == "closed":
        return "limited requests are refused with 503 (MAMBA_LIMITS__ON_REDIS_ERROR=closed)"
    return "limits are counted in this process (MAMBA_LIMITS__ON_REDIS_ERROR=local)"


# "current": the limiters for the REDIS_URL and event loop they were made for.
_state: dict[str, _Quotas] = {}


def _quotas() -> _Quotas:
    url = settings.REDIS_URL
    loop = asyncio.get_running_loop()
    current = _state.get("current")
    if current is None or current.url != url or current.loop is not loop:
        if current is not None:
            current.stop()
        current = _state["current"] = _Quotas(url, loop)
    return current


def quotas_reset() -> None:
    """Forget the limiters and stop renewing their leases (a new process, as far as they go)."""
    current = _state.pop("current", None)
    if current is not None:
        current.stop()
    redis_state.forget()


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
    """Count one request; the RateLimit-* headers to send, or raises `RateLimited` (429) or, in
    closed mode while Redis fails, `RateLimitUnavailable` (503)."""
    limit = principal.requests_per_minute
    if not limit:
        return {}
    item = RateLimitItemPerSecond(limit, settings.RATE_LIMIT_WINDOW_SECONDS)

    async def hit(limiters: _Limiters) -> tuple[bool, float, int]:
        allowed = await limiters.moving.hit(item, "rpm", principal.id)
        stats = await limiters.moving.get_window_stats(item, "rpm", principal.id)
        return allowed, stats.reset_time, stats.remaining

    allowed, reset_time, remaining = await _quotas().count("requests_per_minute", hit)
    if not allowed:
        detail = f"Rate limit of {limit} requests per minute reached."
        raise _limited("requests_per_minute", detail, limit, reset_time)
    return {
        "RateLimit-Limit": str(limit),
        "RateLimit-Remaining": str(remaining),
        "RateLimit-Reset": str(max(0, math.ceil(reset_time - time.time()))),
    }


async def tokens_check(principal: Principal) -> None:
    """Raises `RateLimited` when the caller has used its tokens for the day (UTC)."""
    limit = principal.tokens_per_day
    if not limit:
        return
    item = RateLimitItemPerDay(limit)

    async def check(limiters: _Limiters) -> float | None:
        if await limiters.fixed.test(item, "tokens", principal.id):
            return None
        return (await limiters.fixed.get_window_stats(item, "tokens", principal.id)).reset_time

    reset_time = await _quotas().count("tokens_per_day", check)
    if reset_time is not None:
        detail = f"Daily limit of {limit} tokens reached."
        raise _limited("tokens_per_day", detail, limit, reset_time)


async def tokens_add(principal: Principal, tokens: int) -> None:
    """Count tokens a caller used (in this process while Redis fails, also in closed mode)."""
    if not (principal.tokens_per_day and tokens > 0):
        return
    item = RateLimitItemPerDay(principal.tokens_per_day)

    async def add(limiters: _Limiters) -> None:
        await limiters.fixed.hit(item, "tokens", principal.id, cost=tokens)

    await _quotas().count("tokens_per_day", add, check=False)


async def stream_acquire(principal: Principal) -> Callable[[], Awaitable[None]]:
    """Take one of the caller's stream slots (a lease, renewed while the stream lives);
    returns its release, or raises `RateLimited` (429) or `RateLimitUnavailable` (503)."""
    limit = principal.concurrent_streams
    if not limit:
        return _nothing
    quotas = _quotas()
    lease = await quotas.lease(principal, limit)
    if lease is None:
        raise _limited(
            "concurrent_streams",
            f"Limit of {limit} concurrent streams reached.",
            limit,
            time.time() + 1,
        )
    quotas.renewer.add(lease)

    async def release() -> None:
        await quotas.release(lease)

    return release


async def _nothing() -> None:
    return None

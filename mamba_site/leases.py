"""Stream slots as short leases. A slot is held for `LIMITS_STREAM_LEASE_SECONDS` and renewed,
every quarter of that, by one task per event loop for all the streams it serves; a process that
dies, or a release that fails, frees its slots within one lease.

In Redis a caller's leases are a sorted set (lease id -> expiry in ms, by Redis's clock, so
replicas' clocks do not matter); without Redis, or while it fails, they are kept here."""

import asyncio
import contextvars
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import redis.asyncio as aioredis

logger = logging.getLogger(__name__)

# KEYS[1]: the caller's set; ARGV: limit, lease ms, lease id. 1: taken, 0: all slots are.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], last[2])
return 1
"""
# KEYS: sets, ARGV: lease ms, then one lease id per key. Extends leases that still exist only
# (a released or expired one stays gone); returns how many it extended.
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local renewed = 0
for i, key in ipairs(KEYS) do
  renewed = renewed + redis.call('ZADD', key, 'XX', 'CH', now + tonumber(ARGV[1]), ARGV[i + 1])
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if last[2] then
    redis.call('PEXPIREAT', key, last[2])
  end
end
return renewed
"""
RENEW_BATCH = 500


@dataclass(eq=False, slots=True)
class Lease:
    key: str
    id: str
    shared: bool  # in Redis; else in this process


class LocalLeases:
    """Leases counted in this process (monotonic clock)."""

    def __init__(self) -> None:
        self._held: dict[str, dict[str, float]] = {}

    def acquire(self, key: str, limit: int, seconds: float) -> Lease | None:
        now = time.monotonic()
        held = {lease: until for lease, until in self._held.get(key, {}).items() if until > now}
        if len(held) >= limit:
            self._held[key] = held
            return None
        lease = Lease(key, uuid.uuid4().hex, shared=False)
        held[lease.id] = now + seconds
        self._held[key] = held
        return lease

    def renew(self, lease: Lease, seconds: float) -> None:
        held = self._held.get(lease.key, {})
        if lease.id in held:
            held[lease.id] = time.monotonic() + seconds

    def release(self, lease: Lease) -> None:
        held = self._held.get(lease.key, {})
        held.pop(lease.id, None)
        if not held:
            self._held.pop(lease.key, None)


class SharedLeases:
    """Leases in Redis."""

    def __init__(self, client: "aioredis.Redis") -> None:
        self._client = client
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)

    async def acquire(self, key: str, limit: int, seconds: float) -> Lease | None:
        lease = Lease(key, uuid.uuid4().hex, shared=True)
        taken = await self._acquire(keys=[key], args=[limit, _ms(seconds), lease.id])
        return lease if taken else None

    async def renew(self, leases: list[Lease], seconds: float) -> None:
        for start in range(0, len(leases), RENEW_BATCH):
            batch = leases[start : start + RENEW_BATCH]
            keys = [lease.key for lease in batch]
            await self._renew(keys=keys, args=[_ms(seconds), *(lease.id for lease in batch)])

    async def release(self, lease: Lease) -> None:
        await self._client.zrem(lease.key, lease.id)


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class LeaseRenewer:
    """The one task of an event loop that renews every live lease, every `interval()`
    seconds, with `renew(leases)`; it ends when no lease is left and starts with the next."""

    def __init__(
        self, renew: Callable[[list[Lease]], Awaitable[None]], interval: Callable[[], float]
    ) -> None:
        self._renew = renew
        self._interval = interval
        self._live: set[Lease] = set()
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._live)

    def add(self, lease: Lease) -> None:
        self._live.add(lease)
        task = self._task
        loop = asyncio.get_running_loop()
        if task is None or task.done() or task.get_loop() is not loop:
            # A fresh context: the renewer serves every stream, it logs no request's id.
            self._task = loop.create_task(
                self._run(), name="mamba-lease-renewer", context=contextvars.Context()
            )

    def discard(self, lease: Lease) -> None:
        self._live.discard(lease)

    def stop(self) -> None:
        """Stop renewing (the process is gone, as far as these leases are concerned)."""
        self._live.clear()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._task = None

    async def _run(self) -> None:
        while self._live:
            await asyncio.sleep(self._interval())
            if self._live:
                try:
                    await self._renew(list(self._live))
                except Exception:
                    logger.exception("Renewing the stream leases failed")

"""Cooldowns shared by the replicas through Redis (when `REDIS_URL` is set): a target that rests
on one replica is skipped by the others, and a success anywhere brings it back everywhere.

The hot path never waits on Redis. A rest is one key, `mamba:cooldown:<provider>/<model>`, set
with the cooldown as its expiry and deleted on a success, both by fire-and-forget tasks; the
keys of the known targets are read back in the background, at most once a second (started by
the router when it plans a request). Redis being slow or down changes nothing but that: rests
then hold per replica, and one warning a minute says so.
"""

import asyncio
import contextvars
import logging
import math
import os
import secrets
import socket
import time
import weakref
from asyncio import AbstractEventLoop
from collections.abc import Callable, Collection, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from mamba_site.providers import Target

if TYPE_CHECKING:
    import redis.asyncio as redis

logger = logging.getLogger(__name__)

KEY_PREFIX = "mamba:cooldown:"
REFRESH_SECONDS = 1.0
# Reads and writes give up this soon: a late answer is worth less than the next refresh.
REDIS_TIMEOUT_SECONDS = 0.5
WARNING_INTERVAL_SECONDS = 60.0
# At most this many targets are read per refresh: the declared ones come first; the rest are
# names clients chose (passthrough) that this process has seen.
MAX_TARGETS = 500

type Recovered = Callable[[Target], None]


@dataclass(frozen=True, slots=True)
class Rest:
    """A target resting on another replica, until `until` (this process's monotonic clock)."""

    until: float
    kind: str


class SharedCooldowns:
    """The in-process version (no `REDIS_URL`): rests are this replica's alone."""

    url = ""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.refreshed_at: float | None = None

    def rest(self, target: Target, seconds: float, kind: str) -> None:
        """This replica put `target` to rest for `seconds` after failures of `kind`."""

    def withdraw(self, target: Target) -> None:
        """`target` answered again: it rests nowhere."""

    def elsewhere(self, target: Target) -> Rest | None:
        """The rest of `target` on another replica, as last read (it may have ended)."""
        return None

    def refresh_soon(self, targets: Callable[[], Collection[Target]], recovered: Recovered) -> None:
        """Start a background read of the shared rests when the last is a second old."""

    async def refresh(self, targets: Collection[Target], recovered: Recovered) -> None:
        """Bring the view up to date (a second old at most) and wait for it."""

    async def aclose(self) -> None:
        """Close this event loop's connection (tests; daphne's loop lives as long as we do)."""


class RedisCooldowns(SharedCooldowns):
    """Rests published to and read from Redis. `recovered` is called for a target this replica
    put to rest whose key another replica deleted (a success there) before it expired."""

    def __init__(self, url: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(clock=clock)
        self.url = url
        self.replica = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._elsewhere: dict[Target, Rest] = {}
        # Rests this replica wrote: when Redis acknowledged them, when they expire.
        self._published: dict[Target, tuple[float, float]] = {}
        self._withdrawn: dict[Target, float] = {}
        self._clients: weakref.WeakKeyDictionary[AbstractEventLoop, redis.Redis] = (
            weakref.WeakKeyDictionary()
        )
        self._writing: dict[Target, asyncio.Task[None]] = {}
        self._refreshing: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._warned_at = -WARNING_INTERVAL_SECONDS

    # -- writing -----------------------------------------------------------------------------

    def rest(self, target: Target, seconds: float, kind: str) -> None:
        value = orjson.dumps({"kind": kind, "replica": self.replica})
        called = self.clock()

        async def write() -> None:
            await self._client().set(_key(target), value, px=max(1, round(seconds * 1000)))
            if self._withdrawn.get(target, -math.inf) < called:
                self._published[target] = (self.clock(), called + seconds)

        self._write(target, write())

    def withdraw(self, target: Target) -> None:
        self._published.pop(target, None)
        self._elsewhere.pop(target, None)
        self._withdrawn[target] = self.clock()
        self._write(target, self._delete(target))

    async def _delete(self, target: Target) -> None:
        await self._client().delete(_key(target))

    def _write(self, target: Target, work: Coroutine[Any, Any, None]) -> None:
        """Writes of one target land in the order they were made: a rest followed at once by
        a success must not leave the key behind."""
        previous = self._writing.get(target)

        async def in_order() -> None:
            if previous is not None and not previous.done():
                await asyncio.wait([previous])
            await work

        task = self._spawn(in_order())
        if task is not None:
            self._writing[target] = task
            task.add_done_callback(lambda done: self._forget_write(target, done))

    def _forget_write(self, target: Target, task: asyncio.Task[None]) -> None:
        if self._writing.get(target) is task:
            del self._writing[target]

    # -- reading -----------------------------------------------------------------------------

    def elsewhere(self, target: Target) -> Rest | None:
        return self._elsewhere.get(target)

    def refresh_soon(self, targets: Callable[[], Collection[Target]], recovered: Recovered) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # no event loop (a sync caller): the next request refreshes
        if self._in_flight() is None and self._stale():
            self._refreshing = self._spawn(self._refresh(targets(), recovered))

    async def refresh(self, targets: Collection[Target], recovered: Recovered) -> None:
        task = self._in_flight()
        if task is None and self._stale():
            task = self._refreshing = self._spawn(self._refresh(targets, recovered))
        if task is not None:
            await asyncio.wait([task])

    def _in_flight(self) -> asyncio.Task[None] | None:
        task = self._refreshing
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            return None
        return task

    def _stale(self) -> bool:
        return self.refreshed_at is None or self.clock() - self.refreshed_at >= REFRESH_SECONDS

    async def _refresh(self, targets: Collection[Target], recovered: Recovered) -> None:
        started = self.refreshed_at = self.clock()
        chosen = list(targets)[:MAX_TARGETS]
        pipeline = self._client().pipeline(transaction=False)
        for target in chosen:
            pipeline.get(_key(target))
            pipeline.pttl(_key(target))
        answers = await pipeline.execute()
        now = self.clock()
        for index, target in enumerate(chosen):
            value, ttl_ms = answers[2 * index], answers[2 * index + 1]
            if self._withdrawn.get(target, -1.0) >= started:
                continue  # a success here after the read began: the read is out of date
            rest = _parse(value, ttl_ms, now)
            if rest is None or rest[1] == self.replica:
                self._elsewhere.pop(target, None)
            else:
                self._elsewhere[target] = Rest(until=rest[0], kind=rest[2])
            if rest is None and self._deleted_early(target, started):
                logger.info("Target %s answered on another replica: it rests no more", target.label)
                recovered(target)
        self._withdrawn = {t: at for t, at in self._withdrawn.items() if at >= started}

    def _deleted_early(self, target: Target, started: float) -> bool:
        published = self._published.get(target)
        if published is None:
            return False
        acknowledged, expires = published
        if acknowledged >= started:
            return False  # written after the read began
        del self._published[target]
        # A key that expired on time says nothing; one gone well before, a success elsewhere.
        return expires - started > REFRESH_SECONDS / 2

    # -- plumbing ----------------------------------------------------------------------------

    def _client(self) -> "redis.Redis":
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            # Imported here: only a REDIS_URL brings redis-py in (6 MiB a process without it).
            import redis.asyncio as redis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            client = self._clients[loop] = redis.Redis.from_url(
                self.url,
                socket_timeout=REDIS_TIMEOUT_SECONDS,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                # No retries: the next refresh is the retry.
                retry=Retry(NoBackoff(), 0),
            )
        return client

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            work.close()
            return None
        # A fresh context: the task outlives the request that started it, and its log lines
        # must not carry that request's id.
        task = loop.create_task(self._guarded(work), context=contextvars.Context())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _guarded(self, work: Coroutine[Any, Any, None]) -> None:
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_SECONDS * 2):
                await work
        except Exception as error:
            # The class name only: a message may hold the URL and so a password.
            now = self.clock()
            if now - self._warned_at >= WARNING_INTERVAL_SECONDS:
                self._warned_at = now
                logger.warning(
                    "Shared cooldowns: Redis failed (%s); rests hold per replica until it answers",
                    type(error).__name__,
                )
            else:
                logger.debug("Shared cooldowns: Redis failed (%s)", type(error).__name__)

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        tasks = [task for task in self._background if task.get_loop() is loop]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()


def shared_cooldowns(url: str) -> SharedCooldowns:
    """Shared through Redis when `url` is set, else this process's own."""
    return RedisCooldowns(url) if url else SharedCooldowns()


def _key(target: Target) -> str:
    return KEY_PREFIX + target.label


def _parse(value: bytes | None, ttl_ms: int, now: float) -> tuple[float, str, str] | None:
    """(until, replica, kind) of a key's value and time to live, or None (no rest, or junk)."""
    if value is None or ttl_ms <= 0:
        return None
    try:
        data = orjson.loads(value)
        return now + ttl_ms / 1000, str(data["replica"]), str(data["kind"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None

"""Component checks of the health probes: database, migrations, Redis, the upstream and the
providers' resting targets."""

import asyncio
import logging
import time
import weakref
from asyncio import AbstractEventLoop
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import httpx
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor

from mamba_site.background import run_in_background
from mamba_site.db import DatabaseUnavailable, db_call
from mamba_site.tables import tables_servable

if TYPE_CHECKING:
    import redis.asyncio as redis

logger = logging.getLogger(__name__)


class Status(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    SKIPPED = "skipped"
    PENDING = "pending"


@dataclass(frozen=True, slots=True)
class ComponentResult:
    """One component's state; `error` is a fixed, safe text (never an exception's message)."""

    status: Status
    latency_ms: float = 0.0
    error: str = ""
    # More of the component's state, safe to show (the providers' resting targets).
    details: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self, *, error: bool = True) -> dict[str, Any]:
        """With `error`, also why it failed and the details (the resting targets' names)."""
        body: dict[str, Any] = {"status": str(self.status), "latency_ms": round(self.latency_ms, 1)}
        if not error:  # the public report: no errors, no names of targets
            return body
        if self.error:
            body["error"] = self.error
        return {**body, **self.details}


class CheckFailed(Exception):
    """A failed check whose message is safe to report."""


PENDING = ComponentResult(Status.PENDING)
SKIPPED = ComponentResult(Status.SKIPPED)

# Aliases whose migrations were all applied once: that cannot be undone, so it is not re-checked.
_migrated: set[str] = set()


def migrations_forget() -> None:
    _migrated.clear()


async def _timed(
    name: str, probe: Awaitable[None], *, failure: Status, unreachable: Status | None = None
) -> ComponentResult:
    """Run `probe` within the health timeout; any failure becomes `failure` with a safe error
    (`unreachable`, when given, for a database that does not answer)."""
    timeout = settings.HEALTH_TIMEOUT_SECONDS
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            await probe
    except TimeoutError:
        error = f"{name} did not answer within {timeout:g} s"
        failure = unreachable or failure
    except DatabaseUnavailable as unavailable:
        if unavailable.timed_out:
            error = f"{name} did not answer within {timeout:g} s"
        else:
            error = f"{name} check failed ({unavailable})"
        failure = unreachable or failure
    except CheckFailed as failed:
        error = str(failed)
    except Exception as exc:  # the class name is safe; its message may hold hosts or bodies
        logger.debug("Health check of %s failed", name, exc_info=True)
        error = f"{name} check failed ({type(exc).__name__})"
    else:
        return ComponentResult(Status.HEALTHY, (time.perf_counter() - started) * 1000)
    return ComponentResult(failure, (time.perf_counter() - started) * 1000, error)


def _db_ping(alias: str) -> None:
    connection = connections[alias]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:
        # A broken connection must not be reused by the next probe in this thread.
        connection.close()
        raise


def _pending_migrations(alias: str) -> int:
    executor = MigrationExecutor(connections[alias])
    return len(executor.migration_plan(executor.loader.graph.leaf_nodes()))


def _probe_call[T](fn: Callable[[str], T], alias: str, name: str) -> Awaitable[T]:
    # On a database thread within the probe's own timeout: a hung call cannot hold the probe.
    return db_call(
        fn,
        alias,
        timeout=settings.HEALTH_TIMEOUT_SECONDS,
        operation=f"health_{name}",
        meanwhile="/health/ready reports it",
    )


def _unreachable(alias: str) -> Status:
    """While the default database fails, the process still serves from its copies of the key
    and agent tables (stale-if-error): `degraded` while they are servable, so that an outage
    does not take every pod out of the Service at once."""
    if alias == DEFAULT_DB_ALIAS and tables_servable():
        return Status.DEGRADED
    return Status.UNHEALTHY


async def check_database(alias: str = DEFAULT_DB_ALIAS) -> ComponentResult:
    status = _unreachable(alias)
    return await _timed("database", _probe_call(_db_ping, alias, "database"), failure=status)


async def _migrations_probe(alias: str) -> None:
    if alias in _migrated:
        return
    pending = await _probe_call(_pending_migrations, alias, "migrations")
    if pending:
        raise CheckFailed(f"{pending} migration(s) not applied: run `manage.py migrate`")
    _migrated.add(alias)


async def check_migrations(alias: str = DEFAULT_DB_ALIAS) -> ComponentResult:
    return await _timed(
        "migrations",
        _migrations_probe(alias),
        failure=Status.UNHEALTHY,
        unreachable=_unreachable(alias),
    )


# One Redis client (so one connection pool) per event loop, as for the upstream: a probe every
# few seconds reuses its connection instead of opening one. Keyed also by what it was made
# from, so a changed setting (tests) gets a new client.
type _RedisConfig = tuple[str, float]
_redis_clients: weakref.WeakKeyDictionary[AbstractEventLoop, tuple[_RedisConfig, "redis.Redis"]] = (
    weakref.WeakKeyDictionary()
)


def _redis_client() -> "redis.Redis":
    # Imported here: only a REDIS_URL brings redis-py in (6 MiB a process without it).
    import redis.asyncio as redis

    from mamba_site.redis_client import redis_pool

    loop = asyncio.get_running_loop()
    config = (settings.REDIS_URL, settings.HEALTH_TIMEOUT_SECONDS)
    known = _redis_clients.get(loop)
    if known is not None and known[0] == config:
        return known[1]
    url, timeout = config
    # Connections that reconnect when their peer reset them (mamba_site/redis_client.py).
    client = redis.Redis(connection_pool=redis_pool(url, timeout=timeout))
    _redis_clients[loop] = (config, client)
    if known is not None:
        run_in_background(known[1].aclose(close_connection_pool=True))
    return client


async def redis_client_close() -> None:
    """Close this event loop's client (a test's loop ends; a server keeps its one)."""
    known = _redis_clients.pop(asyncio.get_running_loop(), None)
    if known is not None:
        await known[1].aclose(close_connection_pool=True)


async def _redis_probe() -> None:
    await _redis_client().ping()


async def check_redis() -> ComponentResult:
    """Redis answers; while it does not, limits are counted per process or refused (closed):
    the pod keeps serving, so an outage is `degraded`."""
    return await _timed("redis", _redis_probe(), failure=Status.DEGRADED)


def upstream_checked() -> bool:
    """Whether the upstream is checked: not when disabled or when the offline model answers."""
    if not settings.HEALTH_OPENAI_CHECK_ENABLED:
        return False
    return bool(settings.OPENAI_API_KEY) or not settings.MOCK_MODEL_ENABLED


async def _upstream_probe(client: httpx.AsyncClient) -> None:
    if not settings.OPENAI_API_KEY:
        raise CheckFailed("no API key is configured (MAMBA_OPENAI__API_KEY)")
    response = await client.get(
        f"{settings.OPENAI_BASE_URL.rstrip('/')}/models",
        headers={"Authorization": f"Bearer {settings.OPENAI_API_KEY}"},
    )
    if response.status_code in (401, 403):
        raise CheckFailed(
            f"the provider refused the gateway's credentials (HTTP {response.status_code})"
        )
    if response.status_code != 200:
        raise CheckFailed(f"the provider answered HTTP {response.status_code}")


async def check_upstream(client: httpx.AsyncClient) -> ComponentResult:
    """The upstream's state; an outage is `degraded`: the service still serves other models."""
    if not upstream_checked():
        return SKIPPED
    return await _timed("upstream", _upstream_probe(client), failure=Status.DEGRADED)


type RestingTargets = Callable[[], Awaitable[list[dict[str, Any]]]]


async def check_providers(resting: RestingTargets) -> ComponentResult:
    """`degraded` while any provider target rests after failures (here or on another replica):
    requests go to the other targets, so the service still serves."""
    targets: list[dict[str, Any]] = []

    async def probe() -> None:
        targets.extend(await resting())

    result = await _timed("providers", probe(), failure=Status.DEGRADED)
    if result.status != Status.HEALTHY or not targets:
        return result
    return ComponentResult(
        Status.DEGRADED,
        result.latency_ms,
        f"{len(targets)} target(s) resting after failures",
        details={"resting": targets},
    )

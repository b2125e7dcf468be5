"""What each probe checks, and the overall status of a report."""

import asyncio
import functools
import logging
import tomllib
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.utils import timezone

from health.checks import (
    SKIPPED,
    ComponentResult,
    RestingTargets,
    Status,
    check_database,
    check_migrations,
    check_providers,
    check_redis,
    migrations_forget,
    upstream_checked,
)
from health.monitor import upstream_monitor

logger = logging.getLogger(__name__)

# The last status of each dependency in this process: changes are logged, not every probe.
_last_status: dict[str, Status] = {}


@dataclass(frozen=True, slots=True)
class Report:
    checks: dict[str, ComponentResult]

    @property
    def status(self) -> Status:
        statuses = {result.status for result in self.checks.values()}
        if Status.UNHEALTHY in statuses:
            return Status.UNHEALTHY
        if Status.DEGRADED in statuses:
            return Status.DEGRADED
        return Status.HEALTHY

    @property
    def http_status(self) -> int:
        # Degraded still serves traffic: an upstream outage must not drain every pod.
        return 503 if self.status == Status.UNHEALTHY else 200

    @property
    def failing(self) -> list[str]:
        return [name for name, result in self.checks.items() if result.status == Status.UNHEALTHY]

    def checks_dict(self, *, errors: bool = True) -> dict[str, dict[str, Any]]:
        return {name: result.as_dict(error=errors) for name, result in self.checks.items()}


def health_state_reset() -> None:
    """Forget what this process learnt: logged statuses and applied migrations (tests)."""
    _last_status.clear()
    migrations_forget()


@functools.cache
def service_version() -> str:
    if settings.VERSION:
        return str(settings.VERSION)
    try:
        pyproject = tomllib.loads((settings.BASE_DIR / "pyproject.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return "unknown"
    return str(pyproject.get("project", {}).get("version", "unknown"))


def _database_name(alias: str) -> str:
    return "database" if alias == DEFAULT_DB_ALIAS else f"database.{alias}"


async def _dependencies() -> dict[str, ComponentResult]:
    """Database (every alias), migrations and Redis (when `REDIS_URL` is set), concurrently."""
    probes = {_database_name(alias): check_database(alias) for alias in connections}
    probes["migrations"] = check_migrations()
    if settings.REDIS_URL:
        probes["redis"] = check_redis()
    results = dict(zip(probes, await asyncio.gather(*probes.values()), strict=True))
    _log_changes(results)
    return results


def _log_changes(results: dict[str, ComponentResult]) -> None:
    for name, result in results.items():
        previous = _last_status.get(name, Status.HEALTHY)
        if result.status != previous:
            level = logging.INFO if result.status == Status.HEALTHY else logging.WARNING
            logger.log(level, "Health of %s: %s %s", name, result.status, result.error)
        _last_status[name] = result.status


async def readiness_report() -> Report:
    """Dependencies now, and the upstream's last background result (never waited for)."""
    checks = await _dependencies()
    checks["upstream"] = upstream_monitor().result if upstream_checked() else SKIPPED
    return Report(checks)


async def full_report(*, resting: RestingTargets | None = None) -> Report:
    """Like readiness, but waits (within the timeout) for the first upstream result; with
    `resting`, also the providers' resting targets (never part of readiness)."""
    if upstream_checked():
        first = upstream_monitor().first_result(within=settings.HEALTH_TIMEOUT_SECONDS)
        checks, upstream = await asyncio.gather(_dependencies(), first)
    else:
        checks, upstream = await _dependencies(), SKIPPED
    checks["upstream"] = upstream
    if resting is not None:
        checks["providers"] = await check_providers(resting)
    return Report(checks)


def full_report_body(report: Report) -> dict[str, Any]:
    """The original service's shape: status, version, timestamp and the checks; the version
    and the checks' errors only with `HEALTH_DETAILS` (the route is public)."""
    details = settings.HEALTH_DETAILS
    body: dict[str, Any] = {"status": str(report.status)}
    if details:
        body["version"] = service_version()
    body["timestamp"] = timezone.now().isoformat()
    body["checks"] = report.checks_dict(errors=details)
    return body

"""Redis and the database as this process sees them: down since when, one warning when one
fails, one reminder a minute while it stays down, one line when it is back, and a gauge."""

import logging
import time

from mamba_site import metrics

logger = logging.getLogger("mamba.dependencies")

# While a dependency stays down, its failures are summed up in one line per period.
REMIND_SECONDS = 60.0


class Dependency:
    def __init__(self, name: str) -> None:
        self.name = name
        self.down_since: float | None = None
        self._reminded_at = 0.0
        self._failures = 0
        metrics.dependency_up.labels(name).set(1)

    @property
    def up(self) -> bool:
        return self.down_since is None

    def failed(self, operation: str, error: BaseException | str, *, meanwhile: str) -> None:
        """Count a failed call; `meanwhile` says what the service does instead (logged)."""
        metrics.dependency_errors.labels(self.name, operation).inc()
        # The class name is safe; an exception's message may hold hosts or credentials.
        reason = error if isinstance(error, str) else type(error).__name__
        now = time.monotonic()
        if self.down_since is None:
            self.down_since = self._reminded_at = now
            self._failures = 0
            metrics.dependency_up.labels(self.name).set(0)
            logger.warning(
                "%s unavailable (%s: %s); %s", self.name, operation, reason, meanwhile,
                extra={"dependency": self.name, "operation": operation},
            )  # fmt: skip
            return
        self._failures += 1
        if now - self._reminded_at >= REMIND_SECONDS:
            logger.warning(
                "%s still unavailable after %.0f s: %d more failed calls (last: %s: %s); %s",
                self.name,
                now - self.down_since,
                self._failures,
                operation,
                reason,
                meanwhile,
                extra={"dependency": self.name, "operation": operation},
            )
            self._reminded_at = now
            self._failures = 0

    def succeeded(self) -> None:
        if self.down_since is None:
            return
        logger.info(
            "%s is back after %.1f s", self.name, time.monotonic() - self.down_since,
            extra={"dependency": self.name},
        )  # fmt: skip
        self.down_since = None
        metrics.dependency_up.labels(self.name).set(1)

    def forget(self) -> None:
        """Back to up, without a line (a new configuration, or a test)."""
        self.down_since = None
        metrics.dependency_up.labels(self.name).set(1)


redis_state = Dependency("redis")
database_state = Dependency("database")

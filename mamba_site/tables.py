"""In-process copies of the small tables read on every request (the API keys, the agents):
read again by one task at a time, never by each request, and served while the database
fails (stale-if-error, up to `DATABASE_STALE_IF_ERROR_SECONDS`)."""

import asyncio
import contextlib
import contextvars
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from mamba_site import metrics
from mamba_site.db import DatabaseUnavailable, db_call

logger = logging.getLogger(__name__)

# While reads fail, one is tried at most this often (in the background; no request waits).
RETRY_SECONDS = 1.0

_tables: list["CachedTable[Any]"] = []


def tables_servable() -> bool:
    """Whether the process can answer requests without the database: some table was read,
    and every table in use is fresh or stale within the bound (a process that never read
    one, such as a pod starting during an outage, cannot)."""
    used = [table for table in _tables if table.used]
    return bool(used) and all(table.servable() for table in used)


@dataclass(frozen=True, slots=True)
class Snapshot[T]:
    value: T
    age: float  # seconds since the read that made it began
    fresh: bool  # within the age asked for; False: served because the database fails


class CachedTable[T]:
    """A table's copy. `get()` answers from it while it is young enough and reads it again,
    one read at a time, when it is not (see there); while reads fail, the copy is served as
    it is, and reads are retried in the background."""

    def __init__(self, name: str, load: Callable[[], T], empty: T) -> None:
        self.name = name
        self._load = load
        self._empty = empty
        self._value = empty
        self._loaded_at = -math.inf  # when the read that made `_value` began (monotonic)
        self._generation = 0
        self._invalidated = False
        self._failed_at: float | None = None  # the last read failed (None: it succeeded)
        self._used = False
        self._reading: asyncio.Task[None] | None = None
        metrics.cached_table_age.labels(name).set_function(lambda: self.age)
        _tables.append(self)

    @property
    def age(self) -> float:
        return time.monotonic() - self._loaded_at

    @property
    def used(self) -> bool:
        return self._used

    def servable(self) -> bool:
        """Whether requests get an answer from it: read within the stale-if-error bound."""
        return bool(self.age <= settings.DATABASE_STALE_IF_ERROR_SECONDS)

    def invalidate(self) -> None:
        """The copy is out of date (a save on this replica): the next request waits for a
        read. The database just worked, so a failure noted before is forgotten."""
        self._generation += 1
        self._invalidated = True
        self._failed_at = None

    def forget(self) -> None:
        """Drop the copy and what was learnt (tests, between databases)."""
        self.invalidate()
        self._value = self._empty
        self._loaded_at = -math.inf
        self._used = False

    async def get(
        self, *, max_age: float, refresh_after: float | None = None, patient: bool = False
    ) -> Snapshot[T]:
        """The copy, read again first when older than `max_age`: the request that starts the
        read waits for it (bounded by the database timeout); others meanwhile get the current
        copy, unless `patient` (they need the new one) or the copy was invalidated. Once
        older than `refresh_after`, a read starts in the background, so requests seldom wait.
        While reads fail, the copy is served as it is (stale-if-error) and reads are retried
        in the background; raises `DatabaseUnavailable` when it is older than that bound."""
        self._used = True
        age = self.age
        if age < max_age and not self._invalidated:
            if refresh_after is not None and age >= refresh_after and self._failed_at is None:
                self._read_task()
            return Snapshot(self._value, age, fresh=True)
        if self._failed_at is not None:
            if time.monotonic() - self._failed_at >= RETRY_SECONDS:
                self._read_task()
            return self._stale()
        if self._running() is not None and not (patient or self._invalidated):
            with contextlib.suppress(DatabaseUnavailable):
                return self._stale()
        try:
            await asyncio.shield(self._read_task())
        except DatabaseUnavailable:
            return self._stale()
        return Snapshot(self._value, self.age, fresh=True)

    def _stale(self) -> Snapshot[T]:
        age = self.age
        if age > settings.DATABASE_STALE_IF_ERROR_SECONDS:
            raise DatabaseUnavailable(f"no copy of {self.name} within the stale-if-error bound")
        return Snapshot(self._value, age, fresh=False)

    def _running(self) -> asyncio.Task[None] | None:
        """The read running on this event loop (a test's earlier loop is closed)."""
        task = self._reading
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            return None
        return task

    def _read_task(self) -> asyncio.Task[None]:
        """The read running now, or a new one: one at a time, whoever asks."""
        task = self._running()
        if task is None:
            # A fresh context: the read must not carry one request's id into its log lines.
            task = self._reading = asyncio.get_running_loop().create_task(
                self._read(), name=f"mamba-read-{self.name}", context=contextvars.Context()
            )
            task.add_done_callback(_ignore_failure)
        return task

    async def _read(self) -> None:
        generation = self._generation
        started = time.monotonic()
        try:
            value = await db_call(self._load, operation=self.name, meanwhile=self._meanwhile())
        except DatabaseUnavailable:
            self._failed_at = time.monotonic()
            raise
        self._value = value
        self._failed_at = None
        # A save during the read may be missing from it: then stay invalidated, read again.
        if generation == self._generation:
            self._loaded_at = started
            self._invalidated = False

    def _meanwhile(self) -> str:
        bound = settings.DATABASE_STALE_IF_ERROR_SECONDS
        if self.age > bound:
            return f"no copy of {self.name} to serve: requests that need it are answered 503"
        return f"serving the copy of {self.name} read {self.age:.0f} s ago (up to {bound:g} s)"


def _ignore_failure(task: asyncio.Task[None]) -> None:
    # The failure was logged (mamba_site.dependencies); retrieving it keeps asyncio quiet.
    if not task.cancelled():
        task.exception()

"""Usage records of API keys and of frontends on their way to the database: kept in memory
(up to `USAGE_BUFFER_RECORDS`), written in batches by one task (summed per owner and day),
retried with backoff while the database is down, and flushed at shutdown. Records are lost
only when the buffer is full, when their key or frontend was deleted, or when the database is
still down at exit: each is counted in `mamba_usage_records_dropped_total` and logged with
the count."""

import asyncio
import contextlib
import contextvars
import itertools
import logging
import math
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, date, datetime

from django.conf import settings

from mamba_site import metrics
from mamba_site.db import DatabaseUnavailable, db_call
from mamba_site.services import FRONTEND, KEY, UsageOwner, UsageTotal, usage_write

logger = logging.getLogger(__name__)

BATCH_RECORDS = 1000
FIRST_RETRY_SECONDS = 0.5
# At shutdown, a failed write is tried again this soon (until the drain's deadline).
FLUSH_RETRY_SECONDS = 0.2
# Lost records are logged at once, then summed up at most once per period.
DROP_LOG_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class UsageRecord:
    owner: UsageOwner  # an API key's or a frontend's
    day: date
    input_tokens: int
    output_tokens: int
    error: bool


def usage_totals(records: list[UsageRecord]) -> dict[tuple[UsageOwner, date], UsageTotal]:
    totals: dict[tuple[UsageOwner, date], UsageTotal] = {}
    for record in records:
        total = totals.setdefault((record.owner, record.day), UsageTotal())
        total.requests += 1
        total.input_tokens += record.input_tokens
        total.output_tokens += record.output_tokens
        total.errors += int(record.error)
    return totals


class UsageOutbox:
    def __init__(self) -> None:
        self._records: deque[UsageRecord] = deque()
        self._writer: asyncio.Task[None] | None = None
        self._inflight: asyncio.Task[bool] | None = None
        self._wake: asyncio.Event | None = None
        self._hurry = False
        self._gathering = False
        self._dropped_since_log = 0
        self._drop_logged_at = -math.inf
        metrics.usage_records_pending.set_function(lambda: len(self._records))

    def __len__(self) -> int:
        return len(self._records)

    def add(self, record: UsageRecord) -> None:
        """Keep `record` for the writer (started on the running loop if it is not running)."""
        if len(self._records) >= settings.USAGE_BUFFER_RECORDS:
            self._drop(1, f"the buffer of {settings.USAGE_BUFFER_RECORDS} records is full")
            return
        self._records.append(record)
        self._start_writer()
        if self._gathering and len(self._records) >= BATCH_RECORDS and self._wake is not None:
            self._wake.set()  # a whole batch is waiting: no reason to wait for more

    async def flush(self, deadline: float) -> int:
        """Write what is kept, trying again quickly until `deadline` (monotonic); returns how
        many records are left."""
        if not self._records:
            return 0
        self._hurry = True
        writer = self._start_writer()
        if self._wake is not None:
            self._wake.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(writer), max(0.0, deadline - time.monotonic()))
        return len(self._records)

    def drop_all(self, why: str) -> None:
        """Give up what is kept (the process exits), counted and logged."""
        count = len(self._records)
        self._records.clear()
        if count:
            if self._inflight is not None and not self._inflight.done():
                why += " (a write of them was still under way: the database may yet take it)"
            metrics.usage_records_dropped.inc(count)
            logger.error("%d usage records lost: %s", count, why, extra={"records": count})

    def clear(self) -> None:
        """Forget everything, silently (tests)."""
        self._records.clear()
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
        self._writer = self._inflight = None
        self._hurry = False
        self._dropped_since_log = 0
        self._drop_logged_at = -math.inf

    def _start_writer(self) -> asyncio.Task[None]:
        loop = asyncio.get_running_loop()
        writer = self._writer
        if writer is None or writer.done() or writer.get_loop() is not loop:
            # A fresh context: the writer serves many requests, it must not log one's id.
            writer = self._writer = loop.create_task(
                self._write_all(), name="mamba-usage-writer", context=contextvars.Context()
            )
        return writer

    async def _write_all(self) -> None:
        wake = self._wake = asyncio.Event()
        delay = FIRST_RETRY_SECONDS
        retrying = False
        while self._records:
            gather = settings.USAGE_WRITE_DELAY_SECONDS
            if gather > 0 and not (retrying or self._hurry) and len(self._records) < BATCH_RECORDS:
                # The records of the next moment go into the same transaction (flush(), a full
                # batch and a retry, which has waited already, do not wait).
                wake.clear()
                self._gathering = True
                try:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), gather)
                finally:
                    self._gathering = False
            retrying = not await self._write_batch()
            if not retrying:
                delay = FIRST_RETRY_SECONDS
                continue
            wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), FLUSH_RETRY_SECONDS if self._hurry else delay)
            delay = min(delay * 2, settings.USAGE_RETRY_MAX_SECONDS)

    async def _write_batch(self) -> bool:
        # The write runs as a task of its own that the writer only waits for: cancelling the
        # writer (at shutdown) must not lose track of a batch the database may have taken.
        inflight = self._inflight
        if (
            inflight is None
            or inflight.done()
            or inflight.get_loop() is not asyncio.get_running_loop()
        ):
            inflight = self._inflight = asyncio.get_running_loop().create_task(self._write_once())
        return await asyncio.shield(inflight)

    async def _write_once(self) -> bool:
        batch = list(itertools.islice(self._records, BATCH_RECORDS))
        try:
            missing = await db_call(
                _write,
                usage_totals(batch),
                operation="usage",
                meanwhile=f"{len(self._records)} usage records kept in memory and retried",
                # A write that outlives its deadline may still commit: retried meanwhile, the
                # batch would be counted twice.
                settle=True,
            )
        except DatabaseUnavailable:
            return False
        except Exception:  # not the database's state: a bug, or a key deleted meanwhile
            logger.exception("Writing %d usage records failed; kept and retried", len(batch))
            return False
        for _ in range(min(len(batch), len(self._records))):  # drop_all() may have emptied it
            self._records.popleft()
        gone = set(missing)
        lost = sum(1 for record in batch if (record.owner, record.day) in gone)
        metrics.usage_records_written.inc(len(batch) - lost)
        if lost:
            self._drop(lost, "their API key or frontend was deleted")
        return True

    def _drop(self, count: int, why: str) -> None:
        metrics.usage_records_dropped.inc(count)
        self._dropped_since_log += count
        now = time.monotonic()
        if now - self._drop_logged_at >= DROP_LOG_SECONDS:
            logger.warning(
                "%d usage records dropped: %s",
                self._dropped_since_log,
                why,
                extra={"records": self._dropped_since_log},
            )
            self._dropped_since_log = 0
            self._drop_logged_at = now


def _write(
    totals: dict[tuple[UsageOwner, date], UsageTotal],
) -> list[tuple[UsageOwner, date]]:
    return usage_write(totals=totals)


usage_outbox = UsageOutbox()


def usage_record(*, api_key_id: int, input_tokens: int, output_tokens: int, error: bool) -> None:
    """Count one request of a key (its tokens, whether it failed) for today (UTC)."""
    today = datetime.now(UTC).date()
    usage_outbox.add(UsageRecord((KEY, api_key_id), today, input_tokens, output_tokens, error))


def frontend_usage_record(
    *, frontend_id: int, input_tokens: int, output_tokens: int, error: bool
) -> None:
    """Count one request of a registered frontend (all its clients together) for today (UTC),
    kept and retried like a key's."""
    today = datetime.now(UTC).date()
    usage_outbox.add(
        UsageRecord((FRONTEND, frontend_id), today, input_tokens, output_tokens, error)
    )


async def usage_flush_at_shutdown(deadline: float, final: bool) -> None:
    """The shutdown hook: write what is kept by `deadline`; at the very end, count the rest
    as lost."""
    kept = len(usage_outbox)
    if not kept:
        return
    logger.info(
        "Shutdown: writing %d usage records kept (up to %.1f s)",
        kept,
        max(0.0, deadline - time.monotonic()),
    )
    left = await usage_outbox.flush(deadline)
    if left == 0:
        logger.info("Shutdown: usage records written")
    elif final:
        usage_outbox.drop_all("the database did not take them before the process exited")

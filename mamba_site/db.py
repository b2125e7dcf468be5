"""Every database access of the API and of background work goes through `db_call`: a sync ORM
function run on a small pool of threads of its own (a hung query holds one of them, never the
event loop nor asgiref's single thread), within a deadline the caller never waits past, its
connections closed afterwards (with PostgreSQL's pool: returned to it).

A thread blocked in a socket read cannot be cancelled, so the wait is bounded at the source:
libpq's connect timeout, TCP keepalives and `tcp_user_timeout`, the server's
`statement_timeout`, the pool's timeout (settings.py), and a watchdog thread that shuts down
the socket of a PostgreSQL query that outlives its deadline (the server stopped answering): the
query then fails at once, the pool drops that connection, and the thread is free again.
"""

import asyncio
import contextlib
import contextvars
import functools
import logging
import math
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created

from mamba_site import metrics
from mamba_site.dependencies import database_state

logger = logging.getLogger(__name__)

# A query outside `db_call` (the admin) may run this much longer than the server's own
# statement_timeout before its connection is presumed dead.
STATEMENT_GRACE_SECONDS = 2.0


class DatabaseUnavailable(Exception):
    """The database refused, broke the connection or did not answer in time. The message is
    safe to log (an exception's class name or a timeout), never the driver's text."""

    def __init__(self, reason: str, *, timed_out: bool = False) -> None:
        super().__init__(reason)
        self.timed_out = timed_out


async def db_call[T](
    fn: Callable[..., T],
    *args: Any,
    # The deadline reaches the thread and its watchdog, which a caller's asyncio.timeout could
    # not: the query itself ends by then.
    timeout: float | None = None,  # noqa: ASYNC109
    operation: str = "",
    meanwhile: str = "the request that needed it was answered 503",
    settle: bool = False,
) -> T:
    """`fn(*args)` on a database thread; raises `DatabaseUnavailable` after `timeout` seconds
    (default `DATABASE_TIMEOUT_SECONDS`) or when the database fails, which is logged with
    `meanwhile` (what the service does instead). Other errors (a bug, an integrity error)
    are raised as they are.

    A call still running at its deadline goes on in the background, bounded at the source
    (module docstring), and may yet commit. With `settle`, for a write whose outcome must be
    known (a batch of usage written again would be counted twice), such a call is waited for
    and its own outcome returned or raised; one that had not started is cancelled."""
    name = operation or getattr(fn, "__name__", "call").lstrip("_")
    limit = settings.DATABASE_TIMEOUT_SECONDS if timeout is None else timeout
    deadline = time.monotonic() + limit
    # The caller's context goes along: log lines from the thread carry its request id.
    context = contextvars.copy_context()
    future = _threads.executor().submit(context.run, _run, fn, args, deadline)
    outcome = asyncio.wrap_future(future)
    try:
        try:
            # On timeout the call is cancelled if it has not started; a running one ends by
            # its own deadline (the watchdog), in the background.
            result = await asyncio.wait_for(asyncio.shield(outcome) if settle else outcome, limit)
        except TimeoutError:
            reason = f"no answer within {limit:g} s"
            database_state.failed(name, reason, meanwhile=meanwhile)
            if not settle or future.cancel():
                metrics.database_calls.labels(name, "timeout").inc()
                raise DatabaseUnavailable(reason, timed_out=True) from None
            # Counted by how it ends: "ok" once it has, or "error".
            result = await outcome
            logger.warning(
                "A database call (%s) ended %.1f s after its deadline",
                name,
                time.monotonic() - deadline,
            )
    except (OperationalError, InterfaceError) as error:
        metrics.database_calls.labels(name, "error").inc()
        database_state.failed(name, error, meanwhile=meanwhile)
        # No connection from the pool in time: refused or silent, the pool cannot tell.
        no_connection = _pool_timed_out(error.__cause__)
        raise DatabaseUnavailable(type(error).__name__, timed_out=no_connection) from error
    metrics.database_calls.labels(name, "ok").inc()
    database_state.succeeded()
    return result


class _Threads:
    """The database threads of this process, made on first use (settings are read then)."""

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=settings.DATABASE_THREADS, thread_name_prefix="mamba-db"
                )
            return self._executor


_threads = _Threads()
_local = threading.local()


def _run[T](fn: Callable[..., T], args: tuple[Any, ...], deadline: float) -> T:
    _local.deadline = deadline
    try:
        return fn(*args)
    finally:
        _local.deadline = None
        # Nothing closes connections per request (no request signals on this path): a
        # connection left open here would be this thread's for good, outside the pool.
        for connection in connections.all(initialized_only=True):
            if connection.vendor == "sqlite":
                # A file on this host, opened once per thread: each new connection costs
                # more than most of the queries made on it.
                continue
            try:
                connection.close()
            except Exception:  # a broken connection: Django forgets it all the same
                logger.debug("Closing a database connection failed", exc_info=True)


# -- The watchdog ---------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class _Query:
    fd: int  # a duplicate of the connection's socket, so the number is never reused meanwhile
    deadline: float
    cut: bool = False


class _Watchdog:
    """One thread that shuts down the socket of each watched query past its deadline."""

    def __init__(self) -> None:
        self._queries: set[_Query] = set()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def watching(self, fd: int, deadline: float) -> Iterator[None]:
        if deadline == math.inf:
            yield
            return
        query = _Query(os.dup(fd), deadline)
        with self._wake:
            self._queries.add(query)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="mamba-db-watchdog", daemon=True
                )
                self._thread.start()
            self._wake.notify()
        try:
            yield
        finally:
            with self._wake:
                self._queries.discard(query)
            os.close(query.fd)

    def _run(self) -> None:
        with self._wake:
            while True:
                now = time.monotonic()
                for query in self._queries:
                    if not query.cut and query.deadline <= now:
                        query.cut = True
                        _shut_down(query.fd)
                waiting = [query.deadline for query in self._queries if not query.cut]
                self._wake.wait(timeout=max(0.0, min(waiting) - now) if waiting else None)


def _shut_down(fd: int) -> None:
    metrics.database_connections_cut.inc()
    logger.warning("A database query outlived its deadline: its connection is cut")
    try:
        sock = socket.socket(fileno=fd)
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.detach()  # the duplicate is closed by watching()
    except OSError:
        pass  # already closed by the peer


_watchdog = _Watchdog()


def _deadline(bound: float | None = None) -> float:
    """This thread's deadline: its `db_call`'s, else the statement timeout and a grace; at most
    `bound` seconds from now when given."""
    deadline = getattr(_local, "deadline", None)
    if deadline is None:
        statement = settings.DATABASE_STATEMENT_TIMEOUT_SECONDS
        deadline = time.monotonic() + statement + STATEMENT_GRACE_SECONDS if statement else math.inf
    if bound is not None:
        deadline = min(deadline, time.monotonic() + bound)
    return deadline


def _socket_of(connection: Any) -> int | None:
    """The socket of a psycopg connection (None for SQLite, or a closed connection)."""
    try:
        fd = connection.pgconn.socket
    except Exception:
        return None
    return fd if isinstance(fd, int) else None


def _watched_execute(
    execute: Callable[..., Any], sql: Any, params: Any, many: bool, context: dict[str, Any]
) -> Any:
    fd = _socket_of(context["connection"].connection)
    if fd is None:
        return execute(sql, params, many, context)
    with _watchdog.watching(fd, _deadline()):
        return execute(sql, params, many, context)


def _pool_timed_out(error: BaseException | None) -> bool:
    """Whether `error` is psycopg_pool's timeout (which is imported only with PostgreSQL: the
    embedded SQLite default does without its memory)."""
    pool = sys.modules.get("psycopg_pool")
    return pool is not None and isinstance(error, pool.PoolTimeout)


def pool_check(alias: str, connection: Any) -> None:
    """psycopg_pool's check of a connection before it is handed out, within a deadline: a
    connection broken by an outage is replaced instead of failing the request that gets it.

    One broken connection means the others idle in the pool are likely broken too (a server
    restart, a network cut): they are all replaced at once (`drain()`), else the pool would
    try them one by one, sleeping 1, 2, 4 s... between them."""
    from psycopg_pool import ConnectionPool

    fd = _socket_of(connection)
    try:
        if fd is None:
            ConnectionPool.check_connection(connection)
            return
        with _watchdog.watching(fd, _deadline(settings.DATABASE_TIMEOUT_SECONDS)):
            ConnectionPool.check_connection(connection)
    except Exception:
        pool = connections[alias].pool  # type: ignore[attr-defined]
        if pool is not None:
            pool.drain()
        raise


def _watch_connection(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    if _watched_execute not in connection.execute_wrappers:
        connection.execute_wrappers.append(_watched_execute)


def db_install() -> None:
    """Watch every query of this process, and check pooled connections (AppConfig.ready)."""
    connection_created.connect(_watch_connection, dispatch_uid="mamba_db_watch")
    for alias in connections:
        pool = connections.settings[alias].get("OPTIONS", {}).get("pool")
        if isinstance(pool, dict):
            pool.setdefault("check", functools.partial(pool_check, alias))

import asyncio
import threading
import time

import pytest
from django.db import OperationalError, connection, connections
from prometheus_client import REGISTRY

from mamba_site.db import DatabaseUnavailable, db_call
from mamba_site.dependencies import database_state


@pytest.fixture(autouse=True)
def _database_up():
    database_state.forget()
    yield
    database_state.forget()


def cuts():
    return REGISTRY.get_sample_value("mamba_database_connections_cut_total") or 0


def select_one():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        return cursor.fetchone()[0], connections["default"]


@pytest.mark.django_db(transaction=True)
async def test_db_call_closes_its_connection_afterwards():
    if connection.vendor == "sqlite":
        pytest.skip("a database thread keeps its SQLite connection (a file on this host)")
    value, wrapper = await db_call(select_one)
    # Closed (with PostgreSQL: back in the pool), not left to the thread.
    assert value == 1
    assert wrapper.connection is None


async def test_db_call_gives_up_at_its_timeout_while_other_calls_go_on():
    release = threading.Event()
    started = time.monotonic()
    hung = asyncio.ensure_future(db_call(release.wait, 5, timeout=0.2, operation="hung"))
    assert await db_call(lambda: "other") == "other"  # another thread serves it
    with pytest.raises(DatabaseUnavailable) as caught:
        await hung
    release.set()
    assert caught.value.timed_out
    assert str(caught.value) == "no answer within 0.2 s"
    assert time.monotonic() - started < 1
    assert not database_state.up


async def test_db_call_settles_a_call_that_outlives_its_deadline():
    def late(value):
        time.sleep(0.4)
        if value is None:
            raise OperationalError("the server closed the connection")
        return value

    started = time.monotonic()
    # The call may still commit: the caller learns how it really ended, not "timed out".
    assert await db_call(late, "taken", timeout=0.2, operation="late", settle=True) == "taken"
    assert time.monotonic() - started >= 0.4
    assert database_state.up  # its success counts once it is known
    with pytest.raises(DatabaseUnavailable) as caught:
        await db_call(late, None, timeout=0.2, operation="late", settle=True)
    assert not caught.value.timed_out
    assert str(caught.value) == "OperationalError"
    assert not database_state.up


async def test_db_call_raises_other_errors_as_they_are():
    def broken():
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError, match="a bug"):
        await db_call(broken)
    assert database_state.up


@pytest.mark.django_db(transaction=True)
async def test_db_watchdog_cuts_a_query_past_its_deadline():
    if connection.vendor != "postgresql":
        pytest.skip("the watchdog watches PostgreSQL's sockets")

    def sleep_in_the_server():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(1)")  # the server notices the cut when it ends

    before = cuts()
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable):
        await db_call(sleep_in_the_server, timeout=0.3)
    # The thread is free again: its query failed when its connection was cut.
    for _ in range(50):
        if cuts() > before:
            break
        await asyncio.sleep(0.02)
    assert cuts() == before + 1
    value, _ = await db_call(select_one)
    assert value == 1
    assert time.monotonic() - started < 2

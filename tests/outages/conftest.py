"""Outage fixtures: real PostgreSQL and Redis behind forwarders the tests control
(tests/forwarder.py), each test with a database (a copy of a migrated template) and a Redis
database number of its own, and timeouts short enough for a test."""

import contextlib
import copy
import functools
import itertools
import os
import time
from pathlib import Path

import pytest
import redis
from asgiref.sync import SyncToAsync
from django.db import connections

from agents.selectors import agent_table
from health.reports import health_state_reset
from mamba_site import quotas
from mamba_site.auth import key_table
from mamba_site.db import db_call, pool_check
from mamba_site.dependencies import database_state, redis_state
from mamba_site.services import api_key_create
from mamba_site.usage import usage_outbox
from tests.chat.conftest import UPSTREAM_URL, streaming, text_reply, user
from tests.databases import cloned_database, migrated_database
from tests.forwarder import Forwarder
from tests.services import database_choice, missing, redis_url

POSTGRES = ("127.0.0.1", 5432)
REDIS = ("127.0.0.1", 6379)
REDIS_DB = 9  # this suite's own Redis database number
_labels = itertools.count()

# The bounds the tests set (seconds), and what they allow on a loaded machine on top.
DATABASE_TIMEOUT = 0.6
HEALTH_TIMEOUT = 1.0
REDIS_TIMEOUT = 0.3
SLACK = 0.5

OUTAGES = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def _short_bounds(settings):
    settings.AUTH_MODE = "api_key"
    settings.DATABASE_TIMEOUT_SECONDS = DATABASE_TIMEOUT
    settings.DATABASE_STATEMENT_TIMEOUT_SECONDS = 2.0
    settings.DATABASE_STALE_IF_ERROR_SECONDS = 60.0
    settings.HEALTH_TIMEOUT_SECONDS = HEALTH_TIMEOUT
    settings.HEALTH_OPENAI_CHECK_ENABLED = False
    settings.AUTH_KEY_CACHE_SECONDS = 0.5
    settings.AGENTS_CACHE_SECONDS = 0.5
    settings.REDIS_URL = ""
    settings.REDIS_TIMEOUT_SECONDS = REDIS_TIMEOUT
    settings.REDIS_RETRY_SECONDS = 0.5
    settings.LIMITS_STREAM_LEASE_SECONDS = 1.2
    settings.USAGE_RETRY_MAX_SECONDS = 0.4


def _forget_everything():
    key_table.forget()
    agent_table.forget()
    usage_outbox.clear()
    quotas.quotas_reset()
    database_state.forget()
    redis_state.forget()
    health_state_reset()


@pytest.fixture(autouse=True)
def _fresh_process_state():
    # The copies of tables, the usage buffer and the dependencies' states are per process.
    _forget_everything()
    yield
    _forget_everything()


def pytest_collection_modifyitems(config, items):
    # A run on SQLite by choice (make test-sqlite) has no PostgreSQL to put behind a forwarder;
    # a run that should have PostgreSQL and lacks it fails in `template_database_url`.
    if database_choice().is_postgres or not database_choice().given:
        return
    skip = pytest.mark.skip(reason="the outage tests put PostgreSQL behind a forwarder")
    for item in items:
        if item.path.is_relative_to(OUTAGES):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def template_database_url(tmp_path_factory):
    if not database_choice().is_postgres:
        missing("the outage tests need PostgreSQL (they put it behind a forwarder)")
    with migrated_database("outages", tmp_path_factory.mktemp("outages-db")) as url:
        yield url


def _close_default_connections():
    connections.close_all()
    SyncToAsync.single_thread_executor.submit(connections.close_all).result()
    pool = connections["default"]._connection_pools.pop("default", None)
    if pool is not None:
        pool.close()


@contextlib.contextmanager
def _default_database(name, port):
    """Point the default alias at database `name` through the forwarder's `port`, with a pool
    of its own and the service's bounds (short ones)."""
    conf = connections.settings["default"]
    saved = {key: copy.deepcopy(conf[key]) for key in ("NAME", "HOST", "PORT", "OPTIONS")}
    _close_default_connections()
    options = {
        key: value
        for key, value in conf["OPTIONS"].items()
        if key not in ("pool", "options", "connect_timeout")
    }
    conf.update(
        NAME=name,
        HOST="127.0.0.1",
        PORT=port,
        OPTIONS={
            **options,
            "connect_timeout": 2,  # libpq's least
            "options": "-c statement_timeout=2000",
            "pool": {
                "min_size": 1,
                "max_size": 4,
                "timeout": DATABASE_TIMEOUT,
                "reconnect_timeout": 1.0,
                "check": functools.partial(pool_check, "default"),
            },
        },
    )
    try:
        yield
    finally:
        _close_default_connections()
        conf.update(saved)


@pytest.fixture
def postgres(template_database_url, django_db_setup, django_db_blocker):
    """The forwarder in front of this test's own database, which the default alias uses."""
    label = f"t{next(_labels)}_{os.getpid()}"
    with (
        cloned_database(template_database_url, label) as url,
        Forwarder(POSTGRES) as forwarder,
        _default_database(url.rsplit("/", 1)[1], forwarder.port),
        django_db_blocker.unblock(),
    ):
        yield forwarder
        # Connections a blackhole holds fail at once, so that closing the pool does not wait.
        forwarder.refuse()


@pytest.fixture
def redis_forwarder(settings):
    """The forwarder in front of this suite's Redis database (emptied), which REDIS_URL names."""
    direct = redis.Redis.from_url(redis_url(REDIS_DB))
    direct.flushdb()
    with Forwarder(REDIS) as forwarder:
        settings.REDIS_URL = f"redis://{forwarder.url_netloc}/{REDIS_DB}"
        forwarder.direct = direct
        yield forwarder
    quotas.quotas_reset()
    direct.flushdb()
    direct.close()


@pytest.fixture
def issue():
    """Issue a key in this test's database: `api_key, secret = await issue(**fields)`."""

    async def issue(**fields):
        return await db_call(functools.partial(api_key_create, name="outage", **fields))

    return issue


@pytest.fixture
def upstream(respx_mock):
    return respx_mock.post(UPSTREAM_URL).mock(
        side_effect=lambda request: streaming(text_reply("ok"))
    )


async def get_models(async_client, secret):
    return await async_client.get("/models", headers={"X-API-Key": secret})


async def post_chat(async_client, secret):
    return await async_client.post(
        "/chat",
        {"messages": [user("hi")]},
        content_type="application/json",
        headers={"X-API-Key": secret},
    )


async def timed(awaitable):
    """(result, seconds)."""
    started = time.monotonic()
    result = await awaitable
    return result, time.monotonic() - started

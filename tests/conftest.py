"""Shared fixtures."""

import inspect

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from agents.selectors import agents_invalidate
from chat import upstream


@pytest.fixture(autouse=True)
def _fresh_upstream_clients():
    # Clients are cached per event loop and built from settings; tests change both.
    upstream.reset_clients()
    yield
    upstream.reset_clients()


@pytest.fixture(autouse=True)
def _fresh_agent_cache():
    # The cache is per process; a flushed test database must not be hidden behind it.
    agents_invalidate()
    yield
    agents_invalidate()


def pytest_collection_modifyitems(items):
    for item in items:
        if inspect.iscoroutinefunction(getattr(item, "function", None)):
            item.add_marker(pytest.mark.usefixtures("_close_async_db_connections"))


@pytest.fixture
async def _close_async_db_connections():
    # Async ORM calls use a connection of asgiref's worker thread, which no request closes;
    # left open, it keeps the test database from being dropped at the end.
    yield
    await sync_to_async(connections.close_all)()

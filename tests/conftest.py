"""Shared fixtures."""

import inspect
from pathlib import Path

import pytest
from asgiref.sync import SyncToAsync
from django.apps import apps as django_apps
from django.conf import settings
from django.db import connections

from agents.models import Agent
from agents.selectors import agents_invalidate
from chat.routing import routers
from mamba_site.background import background_wait
from mamba_site.frontends import frontends
from mamba_site.usage import usage_outbox
from tests import services


def pytest_configure(config):
    # Before anything is collected: a test database that cannot be used stops the run with one
    # line (not one error per test).
    problem = services.database_problem(services.database_choice())
    if problem:
        pytest.exit(problem, returncode=pytest.ExitCode.USAGE_ERROR)


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session):
    # One line, also with -q: the database and Redis this run uses, and what it skips.
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(services.services_line(services.database_choice()))
    # A write-ahead log left by an earlier run of the same process id would be replayed into
    # the new test database.
    _remove_sqlite_logs()


def pytest_sessionfinish(session, exitstatus):
    # Django removes the SQLite test database, not its log and shared-memory files (the
    # database threads' connections are still open then).
    _remove_sqlite_logs()


def _remove_sqlite_logs():
    test_name = settings.DATABASES["default"].get("TEST", {}).get("NAME")
    if connections["default"].vendor == "sqlite" and test_name:
        for suffix in ("-wal", "-shm"):
            Path(f"{test_name}{suffix}").unlink(missing_ok=True)


@pytest.fixture
async def _background_work_done():
    yield
    # A usage write still running when the test's database is emptied would deadlock with it.
    await background_wait(10)
    # Connection pools made on the test's loop close with it (aiohttp logs an ERROR for a
    # session collected unclosed, whichever later test is running then).
    await routers.aclose()


def pytest_collection_modifyitems(config, items):
    # Only async tests start background work; a sync test (Playwright's) must not get a loop.
    for item in items:
        if inspect.iscoroutinefunction(getattr(item, "obj", None)):
            item.fixturenames.append("_background_work_done")


@pytest.fixture(autouse=True)
def _fresh_router():
    # The router keeps clients per event loop and each target's health; tests start afresh.
    routers.clear()
    yield
    routers.clear()


@pytest.fixture(autouse=True)
def _fresh_agent_cache():
    # The cache is per process; a flushed test database must not be hidden behind it.
    agents_invalidate()
    yield
    agents_invalidate()


@pytest.fixture(autouse=True)
def _fresh_frontend_registry():
    # A flushed test database sends no signal; the registry's snapshot must not outlive it.
    frontends.invalidate()
    yield
    frontends.invalidate()


@pytest.fixture(autouse=True)
def _fresh_usage_outbox():
    # Usage records wait in a process-wide buffer: none may reach the next test's database.
    usage_outbox.clear()
    yield
    usage_outbox.clear()


@pytest.fixture(autouse=True)
def _close_worker_thread_connections():
    yield
    # Async ORM calls outside a request run on asgiref's single worker thread, whose database
    # connection nothing closes; left open, it keeps the test database from being dropped.
    SyncToAsync.single_thread_executor.submit(connections.close_all).result()


@pytest.fixture
def seeded_agents(transactional_db):
    """The three agents of the seed migration, whatever earlier tests left."""
    from tests.agents.conftest import seed_migration

    Agent.objects.all().delete()
    seed_migration.seed(django_apps, None)
    return {agent.slug: agent for agent in Agent.objects.all()}

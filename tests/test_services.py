import os
import socket
import subprocess
import sys
import time

import pytest

from tests import services


@pytest.fixture
def closed_address():
    """A local TCP address nothing listens on (bound once by the OS, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()


@pytest.fixture
def no_services(monkeypatch, closed_address):
    """A machine where neither PostgreSQL nor Redis answers, and nothing is required."""
    monkeypatch.setattr(services, "POSTGRES_ADDRESS", closed_address)
    monkeypatch.setattr(services, "REDIS_ADDRESS", closed_address)
    for name in ("MAMBA_DATABASE_URL", "MAMBA_TEST_DATABASE_URL", "MAMBA_TEST_REQUIRE_ALL"):
        monkeypatch.delenv(name, raising=False)


def choose():
    return services.database_choice.__wrapped__()


def test_database_choice_falls_back_to_sqlite_without_postgres(no_services):
    choice = choose()

    assert (choice.url, choice.fell_back) == (services.SQLITE_DATABASE_URL, True)


def test_database_choice_uses_postgres_when_its_port_answers(no_services, monkeypatch):
    with socket.create_server(("127.0.0.1", 0)) as server:
        monkeypatch.setattr(services, "POSTGRES_ADDRESS", server.getsockname())
        choice = choose()

    assert (choice.url, choice.given) == (services.DEFAULT_DATABASE_URL, False)


def test_database_choice_takes_the_given_url_as_is(no_services, monkeypatch):
    monkeypatch.setenv("MAMBA_DATABASE_URL", "postgres://postgres@127.0.0.1:1/mamba_given")

    choice = choose()

    assert (choice.url, choice.given) == ("postgres://postgres@127.0.0.1:1/mamba_given", True)


def test_database_choice_never_falls_back_when_all_is_required(no_services, monkeypatch):
    monkeypatch.setenv("MAMBA_TEST_REQUIRE_ALL", "1")

    assert choose().url == services.DEFAULT_DATABASE_URL


def test_services_line_says_what_is_missing_and_skipped(no_services):
    line = services.services_line(choose())

    assert line == (
        "mamba: tests on SQLite (no PostgreSQL at 127.0.0.1:5432) with in-process limits "
        "(no Redis at 127.0.0.1:6379); the tests that need what is missing are skipped"
    )


def test_redis_url_skips_without_redis(no_services):
    with pytest.raises(pytest.skip.Exception, match="no Redis answers"):
        services.redis_url(15)


def test_redis_url_fails_without_redis_when_all_is_required(no_services, monkeypatch):
    monkeypatch.setenv("MAMBA_TEST_REQUIRE_ALL", "1")

    with pytest.raises(pytest.fail.Exception, match="MAMBA_TEST_REQUIRE_ALL is set, but no Redis"):
        services.redis_url(15)


def test_pytest_stops_at_once_with_one_line_when_the_given_database_does_not_answer(
    closed_address,
):
    host, port = closed_address
    env = {**os.environ, "MAMBA_DATABASE_URL": f"postgres://postgres:secret@{host}:{port}/mamba"}
    started = time.monotonic()

    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--co", "-q", __file__],
        cwd=services.REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    lines = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    assert lines == [
        f"Exit: The test database given (MAMBA_DATABASE_URL), PostgreSQL at {host}:{port}, "
        "cannot be used: Connection refused. Start it, fix the URL, or leave it unset to run "
        "on SQLite."
    ]
    assert time.monotonic() - started < 15

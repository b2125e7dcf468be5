"""What the test run uses from this machine: PostgreSQL and Redis on their local ports, or
SQLite and in-process limits when neither answers (the tests that need them are skipped).

- MAMBA_DATABASE_URL (or MAMBA_TEST_DATABASE_URL) given: that database, which must answer.
- Not given: PostgreSQL at 127.0.0.1:5432 when its port answers, else SQLite.
- MAMBA_TEST_REQUIRE_ALL=1 (CI sets it): PostgreSQL, Redis and Chromium are required; what
  needs them fails instead of being skipped, and nothing falls back to SQLite.
"""

import functools
import os
import socket
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
POSTGRES_ADDRESS = ("127.0.0.1", 5432)
REDIS_ADDRESS = ("127.0.0.1", 6379)
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/mamba"
SQLITE_DATABASE_URL = f"sqlite:///{REPO_ROOT / '.test.sqlite3'}"
PROBE_TIMEOUT_SECONDS = 0.5
CONNECT_TIMEOUT_SECONDS = 3


def require_all() -> bool:
    """Whether the run must have every service (CI): no skipping, no falling back."""
    return os.environ.get("MAMBA_TEST_REQUIRE_ALL", "").lower() in ("1", "true", "yes")


def port_answers(address: tuple[str, int], timeout: float = PROBE_TIMEOUT_SECONDS) -> bool:
    try:
        with socket.create_connection(address, timeout=timeout):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class DatabaseChoice:
    url: str
    given: bool  # named by the environment, not found by probing

    @property
    def is_postgres(self) -> bool:
        return urllib.parse.urlsplit(self.url).scheme.startswith("postgres")

    @property
    def fell_back(self) -> bool:
        return not self.given and not self.is_postgres


@functools.cache
def database_choice() -> DatabaseChoice:
    """The test database, decided once per process (tests/settings.py asks first)."""
    given = os.environ.get("MAMBA_DATABASE_URL") or os.environ.get("MAMBA_TEST_DATABASE_URL")
    if given:
        return DatabaseChoice(given, given=True)
    if require_all() or port_answers(POSTGRES_ADDRESS):
        return DatabaseChoice(DEFAULT_DATABASE_URL, given=False)
    return DatabaseChoice(SQLITE_DATABASE_URL, given=False)


def server_label(url: str) -> str:
    """host:port of a database URL, without its user or password."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}"


def postgres_error(url: str, timeout: int = CONNECT_TIMEOUT_SECONDS) -> str | None:
    """Why PostgreSQL at `url` cannot be used (its server's first error line), or None."""
    import psycopg

    maintenance = urllib.parse.urlsplit(url)._replace(scheme="postgresql", path="/postgres")
    try:
        with psycopg.connect(maintenance.geturl(), connect_timeout=timeout):
            return None
    except psycopg.Error as error:
        # psycopg: 'connection failed: connection to server at "h", port p failed: <why>'.
        first = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
        return first.rsplit("failed: ", 1)[-1] or type(error).__name__


def database_problem(choice: DatabaseChoice) -> str | None:
    """One line saying why the tests cannot use the chosen database, or None."""
    if not choice.is_postgres:
        return None
    error = postgres_error(choice.url)
    if error is None:
        return None
    where = f"PostgreSQL at {server_label(choice.url)}"
    if choice.given:
        return (
            f"The test database given (MAMBA_DATABASE_URL), {where}, cannot be used: {error}. "
            "Start it, fix the URL, or leave it unset to run on SQLite."
        )
    if require_all():
        return f"MAMBA_TEST_REQUIRE_ALL is set, but {where} cannot be used: {error}."
    return (
        f"{where} answers, but refuses user postgres: {error}. Give TEST_DATABASE_URL="
        "postgres://USER:PASSWORD@127.0.0.1:5432/mamba, or run make test-sqlite."
    )


def redis_answers() -> bool:
    return port_answers(REDIS_ADDRESS)


def services_line(choice: DatabaseChoice) -> str:
    """The line a run starts with: the database and Redis it uses, and what it skips."""
    if choice.is_postgres:
        database = f"PostgreSQL at {server_label(choice.url)}"
    elif choice.fell_back:
        database = "SQLite (no PostgreSQL at 127.0.0.1:5432)"
    else:
        database = "SQLite"
    has_redis = redis_answers()
    redis = (
        "Redis at 127.0.0.1:6379" if has_redis else "in-process limits (no Redis at 127.0.0.1:6379)"
    )
    line = f"mamba: tests on {database} with {redis}"
    if choice.fell_back or not has_redis:
        line += "; the tests that need what is missing are skipped"
    return line


def missing(what: str) -> None:
    """Skip the calling test because `what` is missing here, or fail it when all is required."""
    import pytest

    if require_all():
        pytest.fail(f"MAMBA_TEST_REQUIRE_ALL is set, but {what}.", pytrace=False)
    pytest.skip(what)


def redis_url(db: int) -> str:
    """The URL of database `db` of the local Redis; skips (or fails) the test without one."""
    import redis

    url = f"redis://{REDIS_ADDRESS[0]}:{REDIS_ADDRESS[1]}/{db}"
    client = redis.Redis.from_url(url, socket_connect_timeout=PROBE_TIMEOUT_SECONDS)
    try:
        client.ping()
    except redis.RedisError:
        missing("no Redis answers on 127.0.0.1:6379")
    finally:
        client.close()
    return url

"""A migrated database of its own for a server the tests start as a process: a fresh
PostgreSQL database beside the test database (dropped afterwards), or an SQLite file."""

import contextlib
import os
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

from tests.services import database_choice

REPO_ROOT = Path(__file__).resolve().parent.parent


def base_database_url() -> str:
    """The database the test run uses (tests/services.py chooses it, tests/settings.py sets it)."""
    return os.environ.get("MAMBA_DATABASE_URL") or database_choice().url


def _postgres_admin(url: urllib.parse.SplitResult, sql: str) -> None:
    import psycopg

    admin = url._replace(scheme="postgresql", path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as connection:
        connection.execute(sql)  # type: ignore[arg-type]


def migrate(url: str) -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "MAMBA_DATABASE_URL": url}
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"migrate failed:\n{result.stdout}\n{result.stderr}")


@contextlib.contextmanager
def migrated_database(label: str, directory: Path) -> Iterator[str]:
    """The URL of a new, migrated database named after `label` (and the process id)."""
    base = urllib.parse.urlsplit(base_database_url())
    if base.scheme.startswith("sqlite"):
        url = f"sqlite:///{directory / f'{label}.sqlite3'}"
        migrate(url)
        yield url
        return
    name = f"{base.path.lstrip('/') or 'mamba'}_{label}_{os.getpid()}"
    _postgres_admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _postgres_admin(base, f'CREATE DATABASE "{name}"')
    try:
        url = base._replace(path=f"/{name}").geturl()
        migrate(url)
        yield url
    finally:
        _postgres_admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def cloned_database(template_url: str, label: str) -> Iterator[str]:
    """The URL of a new PostgreSQL database copied from `template_url`'s (a migrated one that
    nothing is connected to): a fraction of a second, where migrating takes seconds."""
    template = urllib.parse.urlsplit(template_url)
    name = f"{template.path.lstrip('/')}_{label}"
    _postgres_admin(template, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _postgres_admin(template, f'CREATE DATABASE "{name}" TEMPLATE "{template.path.lstrip("/")}"')
    try:
        yield template._replace(path=f"/{name}").geturl()
    finally:
        _postgres_admin(template, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

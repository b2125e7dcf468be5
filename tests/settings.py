"""Test settings: the real settings module, with a test upstream and a test database."""

import os
from pathlib import Path

from tests.services import database_choice

os.environ.setdefault("MAMBA_SECRET_KEY", "test-secret-key-not-for-production")
os.environ.setdefault("MAMBA_OPENAI__API_KEY", "sk-test-key")
os.environ.setdefault("MAMBA_OPENAI__BASE_URL", "http://upstream.test/v1")
os.environ.setdefault("MAMBA_OPENAI__MAX_RETRIES", "0")
# respx mocks httpx's own transport; the tests over real HTTP use aiohttp (the default).
os.environ.setdefault("MAMBA_OPENAI__HTTP_CLIENT", "httpx")
os.environ.setdefault("MAMBA_MOCK_MODEL__ENABLED", "false")
# Most tests are about other things; the auth tests switch the mode per test.
os.environ.setdefault("MAMBA_AUTH__MODE", "none")
os.environ.setdefault("MAMBA_AUTH__ALLOW_NONE_IN_PRODUCTION", "true")
# Tests and the e2e server speak plain HTTP on localhost.
os.environ.setdefault("MAMBA_SECURE__SSL_REDIRECT", "false")
os.environ.setdefault("MAMBA_SECURE__COOKIES", "false")
# The database tests/services.py chooses (given, PostgreSQL on 127.0.0.1:5432, or SQLite);
# processes the tests start inherit it.
os.environ["MAMBA_DATABASE_URL"] = database_choice().url
# Hermetic: a developer's .env is not read (nor by the processes the tests start).
os.environ["MAMBA_DOTENV"] = ""

from mamba_site.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

_database = DATABASES["default"]  # noqa: F405
if _database["ENGINE"] == "django.db.backends.sqlite3" and _database["NAME"] != ":memory:":
    # A file, as the embedded default is (WAL: a read goes on while the usage outbox writes),
    # not Django's in-memory test database, whose shared cache locks a table being written and
    # fails a read of it at once ("database table is locked"). One per test run (runs in one
    # checkout at once do not share it); tests/conftest.py removes what SQLite leaves beside it.
    _name = Path(_database["NAME"])
    _database["TEST"] = {"NAME": str(_name.with_name(f"test_{os.getpid()}_{_name.name}"))}

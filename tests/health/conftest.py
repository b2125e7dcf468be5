"""Fixtures of the health probe tests: fresh probe state, closed ports, a database that is down."""

import asyncio
import socket

import pytest
from django.core.handlers.asgi import ASGIHandler
from django.db import connections

from health.checks import redis_client_close
from health.monitor import upstream_monitor_stop
from health.reports import health_state_reset
from tests.services import redis_url


@pytest.fixture(autouse=True)
async def _fresh_health_state():
    health_state_reset()
    yield
    await upstream_monitor_stop()
    await redis_client_close()
    health_state_reset()


@pytest.fixture(autouse=True)
def _local_dependencies(settings, closed_port):
    # The background check runs whenever a probe starts it: without a respx route it must fail
    # on this machine (connection refused), not look up a name or leave it. Redis is checked
    # only by the tests that set REDIS_URL, whatever the environment says.
    settings.OPENAI_BASE_URL = f"http://127.0.0.1:{closed_port}/v1"
    settings.REDIS_URL = ""


@pytest.fixture
def local_redis_url():
    """Database 0 of the local Redis (only pinged); the test is skipped without one."""
    return redis_url(0)


@pytest.fixture
def upstream_models_url(settings):
    return f"{settings.OPENAI_BASE_URL}/models"


@pytest.fixture
def closed_port():
    """A local TCP port nothing listens on (bound once by the OS, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def unreachable_database(django_db_setup, django_db_blocker, closed_port):
    """A database alias for PostgreSQL at a closed port: every probe's connect really fails.

    Tests using it have no `django_db` mark: Django's test case refuses connections to aliases
    it was not told about, so database access is unblocked here instead (after the test
    database is set up, which "default" then points to); the probes only read.
    """
    alias = "unreachable"
    connections.settings[alias] = {
        **connections.settings["default"],
        "ENGINE": "django.db.backends.postgresql",
        "HOST": "127.0.0.1",
        "PORT": closed_port,
        "NAME": "mamba_unreachable",
        "USER": "postgres",
        "PASSWORD": "",
        "OPTIONS": {"connect_timeout": 2},  # and no pool, which would wait instead of failing
    }
    try:
        with django_db_blocker.unblock():
            yield alias
    finally:
        del connections.settings[alias]


async def wait_for_upstream(async_client, path="/health/ready"):
    """Poll `path` until the background upstream check has a result; the last response."""
    try:
        async with asyncio.timeout(5):
            while True:
                response = await async_client.get(path)
                if response.json()["checks"]["upstream"]["status"] != "pending":
                    return response
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError("the upstream check gave no result in 5 s") from None


async def asgi_get(path, host):
    """GET `path` through the project's ASGI handler (all middleware) with exactly this Host,
    as daphne passes it; the test clients add their own Host. Returns the status code."""
    messages = []
    body_sent = False

    async def receive():
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # the client stays connected
        return {"type": "http.disconnect"}

    async def send(message):
        messages.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", host.encode())],
        "client": ("10.0.0.9", 40000),
        "server": ("10.0.0.5", 8000),
    }
    await ASGIHandler()(scope, receive, send)
    return next(m["status"] for m in messages if m["type"] == "http.response.start")


class RedisProxy:
    """A TCP proxy in front of the local Redis that counts the connections made through it."""

    def __init__(self, port):
        self.url = f"redis://127.0.0.1:{port}/0"
        self.connections = 0
        self.closed_by_client = asyncio.Event()
        self.writers = []

    async def handle(self, reader, writer):
        self.connections += 1
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", 6379)
        self.writers += [writer, upstream_writer]
        await asyncio.gather(
            self._from_client(reader, upstream_writer),
            self._pipe(upstream_reader, writer),
            return_exceptions=True,
        )

    async def _from_client(self, reader, upstream_writer):
        await self._pipe(reader, upstream_writer)
        self.closed_by_client.set()

    @staticmethod
    async def _pipe(source, target):
        try:
            while data := await source.read(65536):
                target.write(data)
                await target.drain()
        finally:
            target.close()


@pytest.fixture
async def redis_proxy():
    redis_url(0)  # skipped without Redis (failed on CI)
    listener = await asyncio.start_server(lambda r, w: proxy.handle(r, w), "127.0.0.1", 0)
    proxy = RedisProxy(listener.sockets[0].getsockname()[1])
    try:
        yield proxy
    finally:
        await redis_client_close()
        for writer in proxy.writers:
            writer.close()
        listener.close()
        await listener.wait_closed()

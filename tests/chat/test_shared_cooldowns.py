"""Cooldowns shared through Redis: two routers over one configuration are two replicas; a rest
on one is seen by the other within about a second, and a success anywhere ends it."""

import asyncio
import logging
import socket
import time

import pytest
import redis

from chat.cooldowns import KEY_PREFIX, RedisCooldowns
from chat.routing import Router
from mamba_site.providers import Target, from_file
from tests.chat.conftest import API_APPS, parse_sse, read_stream, user
from tests.fake_upstream import FakeUpstream
from tests.services import redis_url

REDIS_URL = "redis://127.0.0.1:6379/14"
PRIMARY = Target("primary", "gpt-4o-mini")
BACKUP = Target("backup", "gpt-4o-mini")
PARAMS = {"messages": [{"role": "user", "content": "hello"}]}
PROVIDERS = """
[providers.primary]
base_url = "{primary}"
api_key_env = "TEST_PRIMARY_KEY"
first_byte_timeout_seconds = 1
max_retries = 0
cooldown_failures = 2
cooldown_seconds = 30

[providers.backup]
base_url = "{backup}"
api_key_env = "TEST_BACKUP_KEY"
first_byte_timeout_seconds = 1
max_retries = 0

[models."gpt-4o-mini"]
targets = ["primary/gpt-4o-mini", "backup/gpt-4o-mini"]
"""
ENVIRON = {"TEST_PRIMARY_KEY": "sk-primary", "TEST_BACKUP_KEY": "sk-backup"}


class Upstreams:
    def __init__(self, primary: FakeUpstream, backup: FakeUpstream) -> None:
        self.primary, self.backup = primary, backup


@pytest.fixture
def shared_redis():
    client = redis.Redis.from_url(redis_url(14))  # skipped without Redis (failed on CI)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
async def upstreams():
    primary, backup = FakeUpstream(), FakeUpstream()
    await primary.start()
    await backup.start()
    yield Upstreams(primary, backup)
    await primary.stop()
    await backup.stop()


@pytest.fixture
def providers_file(tmp_path, upstreams):
    path = tmp_path / "providers.toml"
    path.write_text(
        PROVIDERS.format(primary=upstreams.primary.base_url, backup=upstreams.backup.base_url)
    )
    return path


@pytest.fixture
async def replica(providers_file, shared_redis):
    """`replica()`: a router as another process would have it, over the same Redis."""
    config = from_file(providers_file, environ=ENVIRON, mock_enabled=False)
    made = []

    def new(url=REDIS_URL):
        router = Router(config, cooldowns=RedisCooldowns(url))
        made.append(router)
        return router

    yield new
    for router in made:
        await router.cooldowns.aclose()


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def serve(router):
    """One model call as a chat makes it: the first target that accepts, its success reported."""
    route = router.config.models["gpt-4o-mini"]
    deadline = time.monotonic() + 4
    opened = await router.open_stream(router.attempts(route), PARAMS, deadline=deadline)
    await opened.stream.aclose()
    router.succeeded(opened.target)
    return opened.target


async def first_choice_becomes(router, target, *, within):
    """Seconds until the router's first candidate is `target` (it plans a request every 50 ms)."""
    route = router.config.models["gpt-4o-mini"]
    started = time.monotonic()
    while time.monotonic() - started < within:
        if router.attempts(route).candidates[0][1] == target:
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise AssertionError(f"the first candidate did not become {target.label} in {within} s")


async def rest_primary(router, upstreams):
    upstreams.primary.set_fault("status:500")
    for _ in range(2):
        assert await serve(router) == BACKUP
    upstreams.primary.set_fault(None)


async def test_shared_cooldowns_rest_a_target_on_another_replica_within_a_second(
    replica, upstreams, shared_redis
):
    a, b = replica(), replica()
    assert await serve(b) == PRIMARY  # b has read the shared rests: none
    await rest_primary(a, upstreams)

    waited = await first_choice_becomes(b, BACKUP, within=3)

    assert waited < 1.5  # one refresh a second, and a busy machine
    assert await serve(b) == BACKUP
    assert len(upstreams.primary.requests) == 3  # b's first request and a's two failures
    assert shared_redis.pttl(KEY_PREFIX + "primary/gpt-4o-mini") > 25_000
    [row] = [r for r in b.report() if r["target"] == "primary/gpt-4o-mini"]
    assert row["state"] == "resting elsewhere"
    assert row["elsewhere_error"] == "status_500"


async def test_shared_cooldowns_a_success_on_another_replica_ends_the_rest(
    replica, upstreams, shared_redis
):
    a, b = replica(), replica()
    await rest_primary(a, upstreams)
    await first_choice_becomes(b, BACKUP, within=3)
    upstreams.backup.set_fault("status:500")

    # Every other target failing, b tries the resting one, and it answers.
    assert await serve(b) == PRIMARY

    waited = await first_choice_becomes(a, PRIMARY, within=3)
    assert waited < 1.5  # one refresh a second, and a busy machine
    [row] = [r for r in a.report() if r["target"] == "primary/gpt-4o-mini"]
    assert row["state"] == "healthy"
    assert shared_redis.exists(KEY_PREFIX + "primary/gpt-4o-mini") == 0


async def test_shared_cooldowns_own_rest_is_not_shown_as_elsewhere(replica, upstreams):
    a = replica()
    await rest_primary(a, upstreams)
    await a.current_report()
    await asyncio.sleep(1.05)

    [row] = [r for r in await a.current_report() if r["target"] == "primary/gpt-4o-mini"]

    assert row["state"] == "cooling down"
    assert row["elsewhere_seconds"] == 0.0


async def test_shared_cooldowns_redis_refusing_connections_changes_nothing_for_routing(
    replica, upstreams, caplog
):
    a = replica(url=f"redis://127.0.0.1:{closed_port()}/0")
    await rest_primary(a, upstreams)
    started = time.monotonic()
    while time.monotonic() - started < 1.5:  # refreshes fail, once a second
        assert await serve(a) == BACKUP  # the rest holds on this replica
        await asyncio.sleep(0.05)
    await a.current_report()

    warnings = [r for r in caplog.records if r.name == "chat.cooldowns"]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert "ConnectionError" in warnings[0].getMessage()


# -- through /chat -----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True, available_apps=API_APPS)
@pytest.mark.usefixtures("main_agent")
async def test_shared_cooldowns_chats_are_served_while_redis_refuses_connections(
    async_client, upstreams, providers_file, settings, monkeypatch, caplog
):
    for name, value in ENVIRON.items():
        monkeypatch.setenv(name, value)
    settings.PROVIDERS_FILE = str(providers_file)
    settings.REDIS_URL = f"redis://:redis-password@127.0.0.1:{closed_port()}/0"
    upstreams.primary.set_fault("status:500")
    caplog.set_level(logging.DEBUG)

    started = time.monotonic()
    served = 0
    while time.monotonic() - started < 1.5:
        body = {"messages": [user("hello")], "model": "gpt-4o-mini"}
        response = await async_client.post("/chat", body, content_type="application/json")
        events = parse_sse(await read_stream(response))
        assert response.status_code == 200
        assert events[-2]["finishReason"] == "stop"
        assert events[-2]["messageMetadata"]["provider"] == "backup"
        served += 1

    assert served >= 5
    assert len(upstreams.primary.requests) == 2  # rested after two failures, on this replica
    warnings = [r for r in caplog.records if r.name == "chat.cooldowns" and r.levelno >= 30]
    assert len(warnings) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "redis-password" not in caplog.text


async def test_shared_cooldowns_a_silent_redis_does_not_slow_routing(replica, upstreams):
    async def silent(reader, writer):
        await reader.read()  # accept, then never answer

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        a = replica(url=f"redis://127.0.0.1:{port}/0")
        await rest_primary(a, upstreams)  # the rest is published to the silent server
        durations = []
        for _ in range(10):
            started = time.monotonic()
            assert await serve(a) == BACKUP
            durations.append(time.monotonic() - started)
            await asyncio.sleep(0.1)  # a refresh is started, and waits, every second
    finally:
        server.close()

    # Redis's timeout is 0.5 s: a request that waited on it would take that long.
    assert max(durations) < 0.45

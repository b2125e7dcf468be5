"""/health's providers component: targets resting after failures (here or on another replica)
make it degraded, never unhealthy, and readiness never looks at them."""

import asyncio
import time

import pytest
import redis

from chat.cooldowns import RedisCooldowns
from chat.routing import Router, routers
from mamba_site.errors import ApiError
from mamba_site.providers import from_file
from tests.services import redis_url

pytestmark = pytest.mark.django_db(transaction=True)

REDIS_URL = "redis://127.0.0.1:6379/14"
PARAMS = {"messages": [{"role": "user", "content": "hello"}]}
PROVIDERS = """
[providers.primary]
base_url = "http://127.0.0.1:{port}/v1"
first_byte_timeout_seconds = 1
max_retries = 0
cooldown_failures = 1
cooldown_seconds = 30

[models."solo"]
targets = ["primary/solo-model"]
"""


@pytest.fixture
def providers_file(tmp_path, settings, closed_port):
    path = tmp_path / "providers.toml"
    path.write_text(PROVIDERS.format(port=closed_port))
    settings.PROVIDERS_FILE = str(path)
    settings.HEALTH_OPENAI_CHECK_ENABLED = False  # only the providers component may degrade
    return path


@pytest.fixture
def shared_redis(settings):
    client = redis.Redis.from_url(redis_url(14))  # skipped without Redis (failed on CI)
    client.flushdb()
    settings.REDIS_URL = REDIS_URL
    yield client
    client.flushdb()
    client.close()


async def fail_once(router):
    """One request to the unreachable provider: its only target rests (cooldown_failures = 1)."""
    attempts = router.attempts(router.config.models["solo"])
    with pytest.raises(ApiError):
        await router.open_stream(attempts, PARAMS, deadline=time.monotonic() + 2)


async def test_health_providers_component_is_healthy_when_no_target_rests(
    async_client, providers_file
):
    response = await async_client.get("/health")

    body = response.json()
    assert body["checks"]["providers"]["status"] == "healthy"
    assert body["status"] == "healthy"


async def test_health_shows_a_resting_target_as_degraded(async_client, providers_file, settings):
    settings.HEALTH_DETAILS = True
    await fail_once(routers.get())

    response = await async_client.get("/health")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    providers = body["checks"]["providers"]
    assert providers["status"] == "degraded"
    assert providers["error"] == "1 target(s) resting after failures"
    [resting] = providers["resting"]
    assert resting["target"] == "primary/solo-model"
    assert resting["where"] == "this replica"
    assert 29 < resting["seconds_left"] <= 30
    assert resting["last_error"] == "connect"
    assert resting["failures_in_row"] == 1
    assert "127.0.0.1" not in response.content.decode()


async def test_health_without_details_names_no_target(async_client, providers_file):
    await fail_once(routers.get())

    response = await async_client.get("/health")

    providers = response.json()["checks"]["providers"]
    assert providers["status"] == "degraded"
    assert set(providers) == {"status", "latency_ms"}
    assert "solo-model" not in response.content.decode()


async def test_ready_ignores_resting_targets(async_client, providers_file):
    await fail_once(routers.get())

    response = await async_client.get("/health/ready")

    assert response.status_code == 200
    assert response.json()["status"] == "healthy"
    assert "providers" not in response.json()["checks"]


async def test_health_shows_a_target_resting_on_another_replica(
    async_client, providers_file, shared_redis, settings
):
    settings.HEALTH_DETAILS = True
    other = Router(
        from_file(providers_file, environ={}, mock_enabled=False),
        cooldowns=RedisCooldowns(REDIS_URL),
    )
    await fail_once(other)
    for _ in range(50):  # the rest is written in the background
        if shared_redis.exists("mamba:cooldown:primary/solo-model"):
            break
        await asyncio.sleep(0.02)
    await other.cooldowns.aclose()

    response = await async_client.get("/health")

    providers = response.json()["checks"]["providers"]
    assert providers["status"] == "degraded"
    [resting] = providers["resting"]
    assert resting["where"] == "another replica"
    assert resting["last_error"] == "connect"
    assert 28 < resting["seconds_left"] <= 30
    await routers.get().cooldowns.aclose()

import asyncio
import time

import jwt
import pytest
import redis

from mamba_site import quotas
from mamba_site.auth import Principal
from mamba_site.errors import RateLimited
from tests.services import redis_url

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def shared_redis(settings):
    # Its own database number; skipped without Redis (failed with MAMBA_TEST_REQUIRE_ALL).
    url = redis_url(8)
    client = redis.Redis.from_url(url)
    client.flushdb()
    settings.REDIS_URL = url
    quotas.quotas_reset()
    yield client
    client.flushdb()
    quotas.quotas_reset()


def new_replica():
    """A second process: fresh storage objects, the same Redis."""
    quotas.quotas_reset()


async def test_redis_requests_per_minute_hold_across_replicas(shared_redis):
    principal = Principal(kind="api_key", id="key:1", name="k", requests_per_minute=2)
    await quotas.request_hit(principal)
    new_replica()
    await quotas.request_hit(principal)
    new_replica()
    with pytest.raises(RateLimited) as caught:
        await quotas.request_hit(principal)
    assert caught.value.headers["RateLimit-Limit"] == "2"
    assert shared_redis.keys("*")


async def test_redis_stream_slots_hold_across_replicas(shared_redis):
    principal = Principal(kind="api_key", id="key:2", name="k", concurrent_streams=1)
    release = await quotas.stream_acquire(principal)
    new_replica()
    with pytest.raises(RateLimited):
        await quotas.stream_acquire(principal)
    await release()
    new_replica()
    await (await quotas.stream_acquire(principal))()


async def test_redis_tokens_per_day_hold_across_replicas(shared_redis):
    principal = Principal(kind="jwt", id="jwt:sub", name="sub", tokens_per_day=100)
    await quotas.tokens_add(principal, 60)
    new_replica()
    await quotas.tokens_check(principal)
    await quotas.tokens_add(principal, 60)
    new_replica()
    with pytest.raises(RateLimited):
        await quotas.tokens_check(principal)


async def test_jwt_subjects_get_the_limits_from_settings(async_client, settings):
    secret = "s" * 40
    settings.AUTH_MODE = "jwt"
    settings.AUTH_JWT_ALGORITHMS = ["HS256"]
    settings.AUTH_JWT_SECRET = secret
    settings.AUTH_JWT_REQUESTS_PER_MINUTE = 1
    quotas.quotas_reset()

    def token(subject):
        claims = {"sub": subject, "exp": int(time.time()) + 60}
        return {"Authorization": f"Bearer {jwt.encode(claims, secret, 'HS256')}"}

    assert (await async_client.get("/models", headers=token("alice"))).status_code == 200
    assert (await async_client.get("/models", headers=token("alice"))).status_code == 429
    assert (await async_client.get("/models", headers=token("bob"))).status_code == 200


async def test_redis_stream_slot_of_a_replica_that_died_frees_within_one_lease(
    shared_redis, settings
):
    settings.LIMITS_STREAM_LEASE_SECONDS = 0.6
    principal = Principal(kind="api_key", id="key:3", name="k", concurrent_streams=1)
    await quotas.stream_acquire(principal)  # never released
    new_replica()  # the first one died: nothing renews its lease any more
    with pytest.raises(RateLimited):
        await quotas.stream_acquire(principal)
    await asyncio.sleep(0.7)
    await (await quotas.stream_acquire(principal))()


async def test_redis_stream_slot_is_renewed_while_its_stream_lives(shared_redis, settings):
    settings.LIMITS_STREAM_LEASE_SECONDS = 0.4
    principal = Principal(kind="api_key", id="key:4", name="k", concurrent_streams=1)
    release = await quotas.stream_acquire(principal)
    await asyncio.sleep(1.0)  # two and a half leases
    with pytest.raises(RateLimited):
        await quotas.stream_acquire(principal)
    await release()
    await (await quotas.stream_acquire(principal))()
    assert not shared_redis.keys("mamba:leases:*")  # a released slot leaves nothing behind

import pytest
import redis

from chat import accounting
from mamba_site import quotas
from mamba_site.errors import RateLimited
from mamba_site.frontends import FrontendRecord, frontend_principal
from tests.services import redis_url

# Limits of frontends' clients over one Redis, as replicas share them. No database: the
# principals come straight from a registry record.

SITE = FrontendRecord(
    id=7,
    name="site",
    allowed_agents=frozenset(),
    allowed_models=frozenset(),
    requests_per_minute=2,
    concurrent_streams=1,
    tokens_per_day=100,
    total_tokens_per_day=150,
)
ALICE = frontend_principal(SITE, client="203.0.113.7")
BOB = frontend_principal(SITE, client="198.51.100.8")


@pytest.fixture
def shared_redis(settings):
    # Its own database number; skipped without Redis (failed with MAMBA_TEST_REQUIRE_ALL).
    url = redis_url(4)
    client = redis.Redis.from_url(url)
    client.flushdb()
    settings.REDIS_URL = url
    quotas.quotas_reset()
    yield client
    client.flushdb()
    quotas.quotas_reset()


def new_replica():
    """Another process: fresh limiter storage, the same Redis."""
    quotas.quotas_reset()


async def test_redis_frontend_requests_per_minute_hold_per_client_across_replicas(shared_redis):
    await quotas.request_hit(ALICE)
    new_replica()
    await quotas.request_hit(ALICE)
    new_replica()
    with pytest.raises(RateLimited):
        await quotas.request_hit(ALICE)
    await quotas.request_hit(BOB)


async def test_redis_frontend_stream_slots_hold_per_client_across_replicas(shared_redis):
    release = await quotas.stream_acquire(ALICE)
    new_replica()
    with pytest.raises(RateLimited):
        await quotas.stream_acquire(ALICE)
    await (await quotas.stream_acquire(BOB))()
    await release()
    new_replica()
    await (await quotas.stream_acquire(ALICE))()


async def test_redis_frontend_tokens_per_day_hold_per_client_across_replicas(shared_redis):
    await accounting.tokens_add(ALICE, 100)
    new_replica()
    with pytest.raises(RateLimited, match="Daily limit of 100 tokens"):
        await accounting.tokens_check(ALICE)
    await accounting.tokens_check(BOB)


async def test_redis_frontend_total_tokens_hold_for_all_clients_across_replicas(shared_redis):
    await accounting.tokens_add(ALICE, 80)
    new_replica()
    await accounting.tokens_check(BOB)
    await accounting.tokens_add(BOB, 80)
    new_replica()
    carol = frontend_principal(SITE, client="192.0.2.1")
    with pytest.raises(RateLimited, match="This site's tokens for the day are used up"):
        await accounting.tokens_check(carol)


async def test_redis_frontend_counters_are_keyed_by_frontend_and_client(shared_redis):
    await quotas.request_hit(ALICE)
    await accounting.tokens_add(ALICE, 1)
    keys = {key.decode() for key in shared_redis.keys("*")}
    # Per client: frontend id and address; the frontend's budget: its id alone.
    for part in (
        "/rpm/frontend:7:203.0.113.7/",
        "/tokens/frontend:7:203.0.113.7/",
        "/tokens/frontend:7/",
    ):
        assert any(part in key for key in keys), (part, keys)

import asyncio
import logging

import httpx
from prometheus_client import REGISTRY

from mamba_site.db import db_call
from mamba_site.models import ApiKeyUsage
from tests.chat.conftest import UPSTREAM_URL, chunk, parse_sse, read_stream, sse, usage_chunk
from tests.outages.conftest import REDIS_TIMEOUT, SLACK, get_models, post_chat, timed


def metric(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0


def fallbacks(limit, mode="local"):
    return metric("mamba_rate_limit_fallbacks_total", limit=limit, mode=mode)


def redis_errors():
    return sum(
        sample.value
        for family in REGISTRY.collect()
        if family.name == "mamba_dependency_errors"
        for sample in family.samples
        if sample.labels.get("dependency") == "redis" and sample.name.endswith("_total")
    )


async def test_redis_refusing_limits_are_counted_in_this_process(
    async_client, postgres, redis_forwarder, issue, caplog
):
    _, secret = await issue(requests_per_minute=3)
    assert (await get_models(async_client, secret)).status_code == 200  # counted in Redis
    redis_forwarder.refuse()
    caplog.set_level(logging.WARNING, logger="mamba.dependencies")
    before = fallbacks("requests_per_minute")

    statuses = [(await get_models(async_client, secret)).status_code for _ in range(4)]

    # The same limit, counted here from the outage on: three more pass, the fourth is refused.
    assert statuses == [200, 200, 200, 429]
    assert fallbacks("requests_per_minute") - before == 4
    warnings = [r.getMessage() for r in caplog.records if r.name == "mamba.dependencies"]
    assert len(warnings) == 1
    assert warnings[0].startswith("redis unavailable (requests_per_minute: ConnectionError)")
    assert "counted in this process" in warnings[0]
    ready = await async_client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"]["redis"]["status"] == "degraded"


async def test_redis_refusing_in_closed_mode_is_a_503_for_limited_keys(
    async_client, postgres, redis_forwarder, issue, settings
):
    settings.LIMITS_ON_REDIS_ERROR = "closed"
    _, limited = await issue(requests_per_minute=100)
    _, unlimited = await issue()
    redis_forwarder.refuse()

    refused = await get_models(async_client, limited)

    assert refused.status_code == 503
    assert refused.json()["code"] == "RATE_LIMIT_UNAVAILABLE"
    assert int(refused["Retry-After"]) >= 1
    assert (await get_models(async_client, unlimited)).status_code == 200


async def test_redis_blackholed_requests_answer_within_the_bound(
    async_client, postgres, redis_forwarder, issue, upstream, record_property
):
    _, secret = await issue(requests_per_minute=100, concurrent_streams=2)
    assert (await get_models(async_client, secret)).status_code == 200
    redis_forwarder.blackhole()

    first, first_seconds = await timed(get_models(async_client, secret))
    later = [await timed(get_models(async_client, secret)) for _ in range(5)]
    chat, chat_seconds = await timed(post_chat(async_client, secret))
    events = parse_sse(await read_stream(chat))
    later_max = max(seconds for _, seconds in later)
    record_property("seconds", [first_seconds, later_max, chat_seconds])

    assert first.status_code == 200
    # One Redis call's bound (its timeouts), then Redis is left alone for a while.
    assert first_seconds < 2 * REDIS_TIMEOUT + SLACK
    assert all(response.status_code == 200 for response, _ in later)
    assert max(seconds for _, seconds in later) < SLACK
    assert chat.status_code == 200
    assert chat_seconds < 2 * REDIS_TIMEOUT + SLACK
    assert events[-1] == "[DONE]"


async def test_redis_back_after_its_connections_were_reset_fails_no_request(
    async_client, postgres, redis_forwarder, issue, settings
):
    # About healing, not speed: 50 reconnections at once on a busy test machine may take
    # longer than the short bound of the other tests.
    settings.REDIS_TIMEOUT_SECONDS = 2.0
    _, secret = await issue(requests_per_minute=1000)
    # Several pooled connections, then all reset at once (a restart, a proxy, a NAT).
    warm = await asyncio.gather(*(get_models(async_client, secret) for _ in range(20)))
    assert {response.status_code for response in warm} == {200}
    redis_forwarder.drop()
    await asyncio.sleep(0.05)
    errors_before = redis_errors()

    after = await asyncio.gather(*(get_models(async_client, secret) for _ in range(50)))

    assert [response.status_code for response in after] == [200] * 50
    assert redis_errors() == errors_before  # every request counted in Redis, none fell back
    # All 70 counted in Redis: the answer read last says so. Which one that is depends on the
    # order the concurrent requests reached Redis, not on the order they were sent.
    assert min(int(response["RateLimit-Remaining"]) for response in after) == 1000 - 70


def held_reply(release):
    """An upstream reply that stops after its first chunk until `release` is set."""

    async def body():
        yield sse(chunk({"role": "assistant", "content": "Hel"})).removesuffix(b"data: [DONE]\n\n")
        await release.wait()
        yield sse(chunk({"content": "lo"}), chunk({}, "stop"), usage_chunk())

    return httpx.Response(200, content=body(), headers={"content-type": "text/event-stream"})


def usage_requests(api_key_id):
    return sum(ApiKeyUsage.objects.filter(api_key_id=api_key_id).values_list("requests", flat=True))


async def test_redis_failing_while_a_stream_ends_frees_its_slot_after_recovery(
    async_client, postgres, redis_forwarder, issue, respx_mock, settings, record_property
):
    api_key, secret = await issue(concurrent_streams=1, tokens_per_day=10_000)
    release = asyncio.Event()
    respx_mock.post(UPSTREAM_URL).mock(side_effect=lambda request: held_reply(release))
    stream = await post_chat(async_client, secret)  # its slot is a lease in Redis
    assert stream.status_code == 200
    redis_forwarder.refuse()
    tokens_before = fallbacks("tokens_per_day")

    release.set()
    events = parse_sse(await read_stream(stream))  # the release fails: Redis is down
    redis_forwarder.heal()
    await asyncio.sleep(settings.REDIS_RETRY_SECONDS)  # Redis is asked again from now on
    waited = 0.0
    while True:
        response, seconds = await timed(post_chat(async_client, secret))
        if response.status_code == 200 or waited > 3:
            break
        waited += seconds + 0.1
        await asyncio.sleep(0.1)
    await read_stream(response)
    record_property("seconds", waited)

    assert events[-1] == "[DONE]"
    # The lease was no longer renewed: free within one lease (1.2 s here), not an hour.
    assert response.status_code == 200
    assert waited < settings.LIMITS_STREAM_LEASE_SECONDS + SLACK
    # The other steps of the stream's end ran: its tokens were counted here, its usage kept.
    assert fallbacks("tokens_per_day") - tokens_before == 1
    for _ in range(40):
        if await db_call(usage_requests, api_key.pk) == 2:
            break
        await asyncio.sleep(0.05)
    assert await db_call(usage_requests, api_key.pk) == 2

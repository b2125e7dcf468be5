import asyncio

import httpx
import pytest

from mamba_site import quotas
from mamba_site.background import background_wait
from mamba_site.frontends import frontend_principal, frontends
from mamba_site.models import FrontendUsage
from tests.chat.conftest import UPSTREAM_URL, read_stream, streaming, text_reply, user
from tests.mamba_site.conftest import AsyncClientAt
from tests.mamba_site.test_observability import sample, scrape

pytestmark = pytest.mark.django_db(transaction=True)

SITE = "https://chat.example.com"
ALICE = "203.0.113.7"
BOB = "198.51.100.8"


@pytest.fixture
def agents(seeded_agents):
    return seeded_agents


async def models(address=ALICE, **headers):
    return await AsyncClientAt(address).get("/models", headers={"Origin": SITE, **headers})


async def chat(address=ALICE):
    return await AsyncClientAt(address).post(
        "/chat",
        {"messages": [user("hi")]},
        content_type="application/json",
        headers={"Origin": SITE},
    )


async def test_frontend_requests_per_minute_count_per_client(origin_mode, register_frontend):
    await register_frontend(requests_per_minute=1)
    assert (await models()).status_code == 200
    refused = await models()
    assert refused.status_code == 429
    assert refused["Access-Control-Allow-Origin"] == SITE
    assert (await models(BOB)).status_code == 200


async def test_frontend_forged_forwarded_for_does_not_reset_a_limit(origin_mode, register_frontend):
    await register_frontend(requests_per_minute=1)
    assert (await models(**{"X-Forwarded-For": "1.1.1.1"})).status_code == 200
    assert (await models(**{"X-Forwarded-For": "2.2.2.2"})).status_code == 429


async def test_frontend_clients_behind_a_trusted_proxy_are_told_apart(
    origin_mode, register_frontend, settings
):
    settings.TRUSTED_PROXIES = "10.0.0.0/8"
    await register_frontend(requests_per_minute=1)
    ingress = "10.2.3.4"
    alice = {"X-Forwarded-For": "203.0.113.7"}
    assert (await models(ingress, **alice)).status_code == 200
    assert (await models(ingress, **alice)).status_code == 429
    bob = {"X-Forwarded-For": "198.51.100.8"}
    assert (await models(ingress, **bob)).status_code == 200


async def test_frontend_ipv6_clients_share_their_64(origin_mode, register_frontend):
    await register_frontend(requests_per_minute=1)
    assert (await models("2001:db8:1:2::a")).status_code == 200
    assert (await models("2001:db8:1:2::b")).status_code == 429
    assert (await models("2001:db8:1:3::a")).status_code == 200


async def test_frontend_concurrent_streams_count_per_client(
    origin_mode, register_frontend, respx_mock, agents
):
    await register_frontend(concurrent_streams=1)
    record = await frontends.match(SITE)
    release = await quotas.stream_acquire(frontend_principal(record, client=ALICE))
    refused = await chat()
    assert refused.status_code == 429
    assert "concurrent streams" in refused.json()["detail"]
    respx_mock.post(UPSTREAM_URL).mock(return_value=streaming(text_reply("ok")))
    response = await chat(BOB)
    assert response.status_code == 200
    await read_stream(response)
    await release()


async def test_frontend_tokens_per_day_count_per_client(
    origin_mode, register_frontend, respx_mock, agents
):
    await register_frontend(tokens_per_day=20)
    respx_mock.post(UPSTREAM_URL).mock(return_value=streaming(text_reply("ok")))  # 15 tokens
    await read_stream(await chat())
    await read_stream(await chat())
    refused = await chat()
    assert refused.status_code == 429
    assert refused.json()["detail"] == "Daily limit of 20 tokens reached."
    assert (await chat(BOB)).status_code == 200


async def test_frontend_total_tokens_per_day_hold_for_all_clients(
    origin_mode, register_frontend, respx_mock, agents
):
    await register_frontend(total_tokens_per_day=20)
    respx_mock.post(UPSTREAM_URL).mock(return_value=streaming(text_reply("ok")))  # 15 tokens
    await read_stream(await chat(ALICE))
    await read_stream(await chat(BOB))
    refused = await chat("192.0.2.99")
    assert refused.status_code == 429
    assert refused.json()["detail"].startswith("This site's tokens for the day are used up")
    assert int(refused["Retry-After"]) >= 1


async def test_frontend_titles_count_towards_the_total(
    async_client, origin_mode, register_frontend, respx_mock, agents
):
    await register_frontend(total_tokens_per_day=10)
    completion = {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Bread"}}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3},
    }
    respx_mock.post(UPSTREAM_URL).mock(return_value=httpx.Response(200, json=completion))
    body = {"userMessage": "How do I bake bread?"}
    title = await async_client.post(
        "/generate-title", body, content_type="application/json", headers={"Origin": SITE}
    )
    assert title.json() == {"title": "Bread", "useFallback": False}
    assert (await chat(BOB)).status_code == 429


async def wait_for_usage(frontend):
    # The write runs in the background: read once it is done (SQLite locks a table it writes).
    await background_wait(10)
    for _ in range(100):
        usage = await FrontendUsage.objects.filter(frontend=frontend).afirst()
        if usage is not None:
            return usage
        await asyncio.sleep(0.02)
    raise AssertionError("no usage recorded")


async def test_frontend_usage_is_recorded_after_the_stream(
    origin_mode, register_frontend, respx_mock, agents
):
    frontend = await register_frontend()
    respx_mock.post(UPSTREAM_URL).mock(return_value=streaming(text_reply("ok")))
    await read_stream(await chat())
    usage = await wait_for_usage(frontend)
    assert (usage.requests, usage.input_tokens, usage.output_tokens, usage.errors) == (1, 10, 5, 0)


async def test_frontend_access_log_names_the_frontend_and_client(
    origin_mode, register_frontend, caplog
):
    await register_frontend(name="public-chat")
    caplog.set_level("INFO", logger="mamba.access")
    await models()
    record = next(r for r in caplog.records if r.name == "mamba.access")
    assert (record.key, record.client) == ("frontend:public-chat", ALICE)


async def test_frontend_access_log_names_the_frontend_of_a_refusal(
    origin_mode, register_frontend, caplog
):
    await register_frontend(name="public-chat", requests_per_minute=1)
    caplog.set_level("INFO", logger="mamba.access")
    await models()
    assert (await models()).status_code == 429
    record = [r for r in caplog.records if r.name == "mamba.access"][-1]
    assert (record.status, record.key) == (429, "frontend:public-chat")


async def test_frontend_metrics_count_requests_and_tokens_by_name(
    async_client, origin_mode, register_frontend, respx_mock, agents
):
    await register_frontend(name="metered")
    respx_mock.post(UPSTREAM_URL).mock(return_value=streaming(text_reply("ok")))
    before = await scrape(async_client)
    await read_stream(await chat())
    after = await scrape(async_client)

    def grew(name, **labels):
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert grew("mamba_frontend_requests_total", frontend="metered", status="200") == 1
    assert grew("mamba_frontend_tokens_total", frontend="metered", kind="output") == 5
    assert ALICE not in after  # label values are names, never addresses

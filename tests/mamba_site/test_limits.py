import asyncio
import re

import pytest

from mamba_site import quotas
from mamba_site.auth import Principal
from mamba_site.errors import RateLimited
from mamba_site.models import ApiKeyUsage
from tests.chat.conftest import UPSTREAM_URL, parse_sse, read_stream, streaming, text_reply, user

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def agents(seeded_agents):
    return seeded_agents


async def chat(async_client, secret, **body):
    payload = {"messages": [user("hi")], **body}
    return await async_client.post(
        "/chat", payload, content_type="application/json", headers={"X-API-Key": secret}
    )


async def models(async_client, secret):
    return await async_client.get("/models", headers={"X-API-Key": secret})


async def test_limits_requests_per_minute_then_reset_after_the_window(
    async_client, api_key_mode, issue_key, settings
):
    settings.RATE_LIMIT_WINDOW_SECONDS = 1
    _, secret = await issue_key(requests_per_minute=2)
    first = await models(async_client, secret)
    assert first["RateLimit-Limit"] == "2"
    assert first["RateLimit-Remaining"] == "1"
    assert (await models(async_client, secret)).status_code == 200
    refused = await models(async_client, secret)
    assert refused.status_code == 429
    assert refused.json()["code"] == "RATE_LIMITED"
    assert int(refused["Retry-After"]) >= 1
    assert refused["RateLimit-Remaining"] == "0"
    await asyncio.sleep(1.1)
    assert (await models(async_client, secret)).status_code == 200


async def test_limits_are_per_key(async_client, api_key_mode, issue_key):
    _, first = await issue_key(requests_per_minute=1)
    _, second = await issue_key(requests_per_minute=1)
    assert (await models(async_client, first)).status_code == 200
    assert (await models(async_client, first)).status_code == 429
    assert (await models(async_client, second)).status_code == 200


async def test_limits_concurrent_streams(async_client, api_key_mode, issue_key, respx_mock, agents):
    api_key, secret = await issue_key(concurrent_streams=1)
    principal = Principal(kind="api_key", id=f"key:{api_key.pk}", name="x", concurrent_streams=1)
    release = await quotas.stream_acquire(principal)  # a stream of this key is running
    refused = await chat(async_client, secret)
    assert refused.status_code == 429
    assert "concurrent streams" in refused.json()["detail"]
    await release()
    respx_mock.post(UPSTREAM_URL).mock(return_value=streaming(text_reply("ok")))
    response = await chat(async_client, secret)
    await read_stream(response)
    # The finished stream gave its slot back.
    response = await chat(async_client, secret)
    assert response.status_code == 200
    await read_stream(response)


async def test_limits_failed_start_gives_the_stream_slot_back(
    async_client, api_key_mode, issue_key, respx_mock, agents
):
    _, secret = await issue_key(concurrent_streams=1)
    respx_mock.post(UPSTREAM_URL).mock(return_value=streaming(b"", status=500))
    assert (await chat(async_client, secret)).status_code == 502
    respx_mock.post(UPSTREAM_URL).mock(return_value=streaming(text_reply("ok")))
    assert (await chat(async_client, secret)).status_code == 200


async def test_limits_tokens_per_day(async_client, api_key_mode, issue_key, respx_mock, agents):
    _, secret = await issue_key(tokens_per_day=20)
    respx_mock.post(UPSTREAM_URL).mock(return_value=streaming(text_reply("ok")))  # 15 tokens
    await read_stream(await chat(async_client, secret))
    await read_stream(await chat(async_client, secret))
    refused = await chat(async_client, secret)
    assert refused.status_code == 429
    assert refused.json()["detail"] == "Daily limit of 20 tokens reached."


async def wait_for_usage(api_key):
    for _ in range(100):
        usage = await ApiKeyUsage.objects.filter(api_key=api_key).afirst()
        if usage is not None:
            return usage
        await asyncio.sleep(0.02)
    raise AssertionError("no usage recorded")


async def test_limits_usage_is_recorded_after_the_stream(
    async_client, api_key_mode, issue_key, respx_mock, agents
):
    api_key, secret = await issue_key()
    respx_mock.post(UPSTREAM_URL).mock(return_value=streaming(text_reply("ok")))
    events = parse_sse(await read_stream(await chat(async_client, secret)))
    assert events[-1] == "[DONE]"
    usage = await wait_for_usage(api_key)
    assert (usage.requests, usage.input_tokens, usage.output_tokens, usage.errors) == (1, 10, 5, 0)


async def test_limits_usage_counts_errors(
    async_client, api_key_mode, issue_key, respx_mock, agents
):
    api_key, secret = await issue_key()
    respx_mock.post(UPSTREAM_URL).mock(return_value=streaming(b"", status=500))
    assert (await chat(async_client, secret)).status_code == 502
    usage = await wait_for_usage(api_key)
    assert (usage.requests, usage.errors) == (1, 1)


async def test_scopes_forbid_other_agents_and_models(async_client, api_key_mode, issue_key, agents):
    _, secret = await issue_key(allowed_agents=["research"], allowed_models=["gpt-4o-mini"])
    response = await chat(async_client, secret, agent="main")
    assert response.status_code == 403
    assert response.json()["code"] == "FORBIDDEN"
    assert "agent 'main'" in response.json()["detail"]
    response = await chat(async_client, secret, agent="research", model="openai/gpt-4o")
    assert response.status_code == 403
    assert "model 'gpt-4o'" in response.json()["detail"]
    listing = (await models(async_client, secret)).json()
    assert [m["id"] for m in listing["models"]] == ["gpt-4o-mini"]
    assert [a["slug"] for a in listing["agents"]] == ["research"]


async def test_scopes_allow_their_agent_and_model(
    async_client, api_key_mode, issue_key, respx_mock, agents
):
    _, secret = await issue_key(allowed_agents=["research"], allowed_models=["gpt-4o-mini"])
    respx_mock.post(UPSTREAM_URL).mock(return_value=streaming(text_reply("ok")))
    response = await chat(async_client, secret, agent="research", model="gpt-4o-mini")
    assert response.status_code == 200
    await read_stream(response)


def title_completion(content="A title", prompt=12, completion=3):
    return {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion},
    }


async def title(async_client, secret, **body):
    payload = {"userMessage": "How do I bake bread?", **body}
    return await async_client.post(
        "/title/generate", payload, content_type="application/json", headers={"X-API-Key": secret}
    )


async def test_limits_titles_count_towards_usage_and_the_daily_tokens(
    async_client, api_key_mode, issue_key, respx_mock, agents
):
    import httpx

    api_key, secret = await issue_key(tokens_per_day=20)
    respx_mock.post(UPSTREAM_URL).mock(return_value=httpx.Response(200, json=title_completion()))
    assert (await title(async_client, secret)).json() == {"title": "A title", "useFallback": False}
    usage = await wait_for_usage(api_key)
    assert (usage.requests, usage.input_tokens, usage.output_tokens) == (1, 12, 3)
    await title(async_client, secret)  # 30 tokens of 20: the day is used up
    refused = await chat(async_client, secret)
    assert refused.status_code == 429
    # A title over the budget is the client's own fallback, never an error.
    assert (await title(async_client, secret)).json() == {"title": "", "useFallback": True}
    assert respx_mock.calls.call_count == 2


async def test_limits_title_model_outside_the_key_scope_is_a_fallback(
    async_client, api_key_mode, issue_key, respx_mock, settings, agents
):
    settings.TITLE_MODEL = "gpt-4o-mini"
    _, secret = await issue_key(allowed_models=["gpt-4o"])
    route = respx_mock.post(UPSTREAM_URL)
    assert (await title(async_client, secret)).json() == {"title": "", "useFallback": True}
    assert route.call_count == 0
    refused = await title(async_client, secret, model="gpt-4o-mini")  # named by the client
    assert refused.status_code == 403


def words(text):
    return set(re.findall(r"[\w.-]+", text))


async def test_scopes_403_for_an_agent_names_no_other_agent(
    async_client, api_key_mode, issue_key, agents
):
    _, secret = await issue_key(allowed_agents=["research"])

    response = await chat(async_client, secret, agent="main")

    assert response.status_code == 403
    body = response.json()
    assert body["detail"] == (
        "These credentials may not use agent 'main'. GET /models lists the agents they may use."
    )
    assert set(body) == {"detail", "code", "request_id"}


async def test_scopes_403_for_a_model_names_no_other_model(
    async_client, api_key_mode, issue_key, agents
):
    _, secret = await issue_key(allowed_models=["gpt-4o-mini"])

    response = await chat(async_client, secret, model="gpt-4o")

    assert response.status_code == 403
    assert "gpt-4o-mini" not in words(response.json()["detail"])
    assert set(response.json()) == {"detail", "code", "request_id"}


async def test_scopes_404_for_an_unknown_agent_names_no_agent(
    async_client, api_key_mode, issue_key, agents
):
    _, secret = await issue_key(allowed_agents=["research"])

    response = await chat(async_client, secret, agent="nope")

    assert response.status_code == 404
    assert response.json()["code"] == "AGENT_NOT_FOUND"
    assert not set(agents) & words(response.content.decode())


async def test_limits_stream_slot_in_process_is_renewed_while_its_stream_lives(settings):
    settings.LIMITS_STREAM_LEASE_SECONDS = 0.4
    principal = Principal(kind="api_key", id="key:local", name="k", concurrent_streams=1)
    release = await quotas.stream_acquire(principal)
    await asyncio.sleep(1.0)  # two and a half leases
    with pytest.raises(RateLimited):
        await quotas.stream_acquire(principal)
    await release()
    await (await quotas.stream_acquire(principal))()

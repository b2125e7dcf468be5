"""Routing over real HTTP: two fake providers from a providers file, one misbehaving in each
way a provider can; every request is served by the healthy one or ends truthfully."""

import asyncio
import socket
import time

import pytest

from chat.routing import routers
from mamba_site import metrics
from tests.chat.conftest import API_APPS, parse_sse, read_stream, user
from tests.fake_upstream import MARKER, FakeUpstream

pytestmark = [
    pytest.mark.django_db(transaction=True, available_apps=API_APPS),
    pytest.mark.usefixtures("main_agent"),
]

PROVIDERS = """
[providers.primary]
base_url = "{primary}"
api_key_env = "TEST_PRIMARY_KEY"
first_byte_timeout_seconds = 1
max_retries = 0
cooldown_failures = 2
cooldown_seconds = 0.5

[providers.backup]
base_url = "{backup}"
api_key_env = "TEST_BACKUP_KEY"
first_byte_timeout_seconds = 1
max_retries = 0

[models."gpt-4o-mini"]
targets = ["primary/gpt-4o-mini", "backup/gpt-4o-mini"]

[models."solo"]
targets = ["primary/solo-model"]
fallbacks = ["gpt-4o"]

[models."gpt-4o"]
targets = ["backup/gpt-4o"]
"""


class Pair:
    def __init__(self, primary: FakeUpstream, backup: FakeUpstream) -> None:
        self.primary, self.backup = primary, backup


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_providers(tmp_path, settings, primary_url, backup_url):
    path = tmp_path / "providers.toml"
    path.write_text(PROVIDERS.format(primary=primary_url, backup=backup_url))
    settings.PROVIDERS_FILE = str(path)


@pytest.fixture
async def pair(tmp_path, settings, monkeypatch):
    primary, backup = FakeUpstream(), FakeUpstream()
    await primary.start()
    await backup.start()
    monkeypatch.setenv("TEST_PRIMARY_KEY", "sk-primary")
    monkeypatch.setenv("TEST_BACKUP_KEY", "sk-backup")
    write_providers(tmp_path, settings, primary.base_url, backup.base_url)
    settings.CHAT_FIRST_BYTE_TIMEOUT_SECONDS = 4
    settings.CHAT_IDLE_TIMEOUT_SECONDS = 1
    yield Pair(primary, backup)
    await routers.get().clients.aclose()
    await primary.stop()
    await backup.stop()


async def post(async_client, text="hello", model="gpt-4o-mini"):
    body = {"messages": [user(text)], "model": model}
    return await async_client.post("/chat", body, content_type="application/json")


async def chat(async_client, text="hello", model="gpt-4o-mini"):
    response = await post(async_client, text, model)
    assert response.status_code == 200, response.content
    return parse_sse(await read_stream(response))


def text_of(events):
    return "".join(e["delta"] for e in events if e != "[DONE]" and e["type"] == "text-delta")


def assert_served_by(events, provider, model="gpt-4o-mini"):
    assert events[-1] == "[DONE]"
    finish = events[-2]
    assert finish["type"] == "finish"
    assert finish["finishReason"] == "stop", events
    assert finish["messageMetadata"]["provider"] == provider
    assert finish["messageMetadata"]["model"] == model
    assert text_of(events) == "Echo: hello"
    assert not [e for e in events[:-1] if e["type"] in ("error", "reset-step")]


def assert_truthful_error(events, text):
    assert events[-1] == "[DONE]"
    assert events[-2] == {"type": "finish", "finishReason": "error"}
    assert events[-3] == {"type": "error", "errorText": text}
    opened = {e["id"] for e in events[:-1] if e["type"] in ("text-start", "reasoning-start")}
    closed = {e["id"] for e in events[:-1] if e["type"] in ("text-end", "reasoning-end")}
    assert opened == closed
    assert MARKER not in str(events)


BEFORE_CONTENT = [
    "status:500",
    "status:502",
    "status:503",
    "status:429",
    "status:429:1",
    "status:401",
    "status:403",
    "reset",
    "hang",
    "json200",
    "text200",
    "empty:0",
    "cut:0",
    "drop:0",
    "stall:0",
    "malformed:0",
    "notobject:0",
]


@pytest.mark.parametrize("fault", BEFORE_CONTENT)
async def test_routing_fails_over_before_content(async_client, pair, fault):
    pair.primary.set_fault(fault)
    events = await chat(async_client)
    assert_served_by(events, "backup")
    assert len(pair.primary.requests) == 1
    assert pair.backup.completed == 1


async def test_routing_fails_over_when_a_provider_refuses_connections(
    async_client, pair, tmp_path, settings
):
    write_providers(
        tmp_path, settings, f"http://127.0.0.1:{closed_port()}/v1", pair.backup.base_url
    )
    events = await chat(async_client)
    assert_served_by(events, "backup")


AFTER_CONTENT = [
    ("cut:2", "The model provider's reply was cut off."),
    ("drop:2", "The connection to the model provider broke during the reply."),
    ("stall:2", "The model took too long to answer."),
    ("malformed:2", "The model provider sent a malformed reply."),
    ("notobject:2", "The model provider sent a malformed reply."),
]


@pytest.mark.parametrize(("fault", "text"), AFTER_CONTENT)
async def test_routing_after_content_ends_truthfully_by_default(async_client, pair, fault, text):
    pair.primary.set_fault(fault)
    before = metrics.upstream_errors.labels("PROVIDER_ERROR")._value.get()
    events = await chat(async_client)
    assert_truthful_error(events, text)
    assert text_of(events) == "fault fault "
    assert pair.backup.requests == []  # nothing is replayed without the setting
    if not fault.startswith("stall"):
        assert metrics.upstream_errors.labels("PROVIDER_ERROR")._value.get() == before + 1


async def test_a_providers_silence_limit_ends_a_stalled_reply(
    async_client, pair, tmp_path, settings
):
    """A provider's `timeout_seconds` is the longest pause within its reply, watched by the
    stream's reader (not a read timer re-armed on every chunk): shorter than the chat's idle
    limit, it is the one that ends a stalled reply."""
    settings.CHAT_IDLE_TIMEOUT_SECONDS = 60
    providers = PROVIDERS.replace(
        "cooldown_seconds = 0.5\n", "cooldown_seconds = 0.5\ntimeout_seconds = 0.3\n"
    )
    path = tmp_path / "providers.toml"
    path.write_text(providers.format(primary=pair.primary.base_url, backup=pair.backup.base_url))
    settings.PROVIDERS_FILE = str(path)
    pair.primary.set_fault("stall:2")
    started = time.monotonic()
    events = await chat(async_client)
    assert_truthful_error(events, "The model took too long to answer.")
    assert text_of(events) == "fault fault "
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("fault", ["cut:2", "drop:2", "stall:2", "malformed:2"])
async def test_routing_replays_the_step_with_reset_step_when_enabled(
    async_client, pair, settings, fault
):
    settings.CHAT_REPLAY_STEP = True
    pair.primary.set_fault(fault)
    events = await chat(async_client)
    kinds = [e if e == "[DONE]" else e["type"] for e in events]
    assert kinds.count("reset-step") == 1
    assert kinds.count("start-step") == 1
    after_reset = events[kinds.index("reset-step") :]
    assert text_of(after_reset) == "Echo: hello"
    assert events[-2]["finishReason"] == "stop"
    assert events[-2]["messageMetadata"]["provider"] == "backup"
    # The ids of the replayed blocks are new: the client forgot the old ones.
    before = {e["id"] for e in events[: kinds.index("reset-step")] if e["type"] == "text-start"}
    after = {e["id"] for e in after_reset if e != "[DONE]" and e["type"] == "text-start"}
    assert before
    assert after
    assert not before & after


async def test_routing_never_sends_reset_step_to_ai_6_clients(async_client, pair, settings):
    settings.CHAT_REPLAY_STEP = True
    pair.primary.set_fault("cut:2")
    body = {"messages": [user("hello")], "model": "gpt-4o-mini"}
    response = await async_client.post(
        "/chat",
        body,
        content_type="application/json",
        headers={"User-Agent": "node ai-sdk/6.0.12 runtime/node.js/20"},
    )
    events = parse_sse(await read_stream(response))
    assert_truthful_error(events, "The model provider's reply was cut off.")
    assert pair.backup.requests == []


async def test_routing_client_errors_are_answered_at_once(async_client, pair):
    pair.primary.set_fault("status:400")
    response = await post(async_client)
    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_REQUEST"
    assert pair.backup.requests == []


async def test_routing_skips_a_provider_whose_credentials_fail_without_retrying(
    async_client, pair, tmp_path, settings
):
    path = tmp_path / "providers.toml"
    path.write_text(path.read_text().replace("max_retries = 0", "max_retries = 3", 1))
    settings.PROVIDERS_FILE = str(path)  # read the file again
    pair.primary.set_fault("status:401")
    events = await chat(async_client)
    assert_served_by(events, "backup")
    assert len(pair.primary.requests) == 1


async def test_routing_falls_back_to_another_model(async_client, pair):
    pair.primary.set_fault("status:500")
    events = await chat(async_client, model="solo")
    assert events[-2]["messageMetadata"]["model"] == "gpt-4o"
    assert events[-2]["messageMetadata"]["provider"] == "backup"
    assert pair.backup.requests[0]["model"] == "gpt-4o"


async def test_routing_all_failing_is_the_last_error_as_json(async_client, pair):
    pair.primary.set_fault("status:503")
    pair.backup.set_fault("status:503")
    response = await post(async_client)
    assert response.status_code == 503
    assert response.json()["code"] == "SERVICE_UNAVAILABLE"
    assert MARKER not in response.content.decode()


async def test_routing_hanging_providers_end_within_the_deadline(async_client, pair, settings):
    settings.CHAT_FIRST_BYTE_TIMEOUT_SECONDS = 1.5
    pair.primary.set_fault("hang")
    pair.backup.set_fault("hang")
    started = time.monotonic()
    response = await post(async_client)
    assert response.status_code == 504
    assert response.json()["code"] == "TIMEOUT"
    assert time.monotonic() - started < 1.5 + 1
    assert await pair.primary.wait_for_disconnect()
    assert await pair.backup.wait_for_disconnect()


async def test_routing_retry_after_within_the_deadline_is_honoured(
    async_client, pair, tmp_path, settings
):
    path = tmp_path / "providers.toml"
    path.write_text(path.read_text().replace("max_retries = 0", "max_retries = 1"))
    settings.PROVIDERS_FILE = str(path)  # read the file again
    pair.primary.set_fault("status:429:1", times=1)
    pair.backup.set_fault("status:429:1", times=1)
    started = time.monotonic()
    events = await chat(async_client)
    assert events[-2]["finishReason"] == "stop"
    assert time.monotonic() - started >= 1  # it waited as asked, then tried again
    assert len(pair.primary.requests) + len(pair.backup.requests) == 3


async def test_routing_retry_after_beyond_the_deadline_is_passed_on(async_client, pair):
    pair.primary.set_fault("status:429:30")
    pair.backup.set_fault("status:429:30")
    response = await post(async_client)
    assert response.status_code == 429
    assert response["Retry-After"] == "30"


async def test_routing_cooldown_takes_a_failing_target_out_and_brings_it_back(async_client, pair):
    pair.primary.set_fault("status:500")
    for _ in range(2):
        assert_served_by(await chat(async_client), "backup")
    assert len(pair.primary.requests) == 2
    assert_served_by(await chat(async_client), "backup")
    assert len(pair.primary.requests) == 2  # resting: not tried
    router = routers.get()
    [row] = [r for r in router.report() if r["target"] == "primary/gpt-4o-mini"]
    assert row["state"] == "cooling down"
    await asyncio.sleep(0.6)
    pair.primary.set_fault(None)
    assert_served_by(await chat(async_client), "primary")  # the probe succeeds
    [row] = [r for r in router.report() if r["target"] == "primary/gpt-4o-mini"]
    assert row["state"] == "healthy"


async def test_routing_failed_probe_rests_the_target_again(async_client, pair):
    pair.primary.set_fault("status:500")
    for _ in range(2):
        await chat(async_client)
    await asyncio.sleep(0.6)
    assert_served_by(await chat(async_client), "backup")  # the probe failed
    assert len(pair.primary.requests) == 3
    assert_served_by(await chat(async_client), "backup")
    assert len(pair.primary.requests) == 3


async def test_routing_models_lists_the_configured_names(async_client, pair):
    response = await async_client.get("/models")
    names = [m["id"] for m in response.json()["models"]]
    assert names == ["gpt-4o-mini", "solo", "gpt-4o"]


async def test_routing_unknown_model_is_404(async_client, pair):
    response = await post(async_client, model="gpt-5")
    assert response.status_code == 404
    assert response.json()["code"] == "MODEL_NOT_FOUND"


async def test_routing_titles_fail_over(async_client, pair):
    pair.primary.set_fault("text200")
    body = {"userMessage": "Plan a trip to the mountains", "model": "gpt-4o-mini"}
    response = await async_client.post("/title/generate", body, content_type="application/json")
    assert response.json() == {"title": "Title: Plan a trip to the", "useFallback": False}
    assert len(pair.backup.requests) == 1


async def test_routing_sends_each_provider_its_own_options(async_client, pair, tmp_path, settings):
    path = tmp_path / "providers.toml"
    text = path.read_text().replace(
        "[providers.backup]",
        '[providers.backup]\nstream_usage = false\nmax_tokens_param = "max_completion_tokens"',
    )
    path.write_text(text)
    settings.PROVIDERS_FILE = str(path)  # read the file again
    pair.primary.set_fault("status:500")
    await chat(async_client)
    assert pair.primary.requests[0]["stream_options"] == {"include_usage": True}
    assert "stream_options" not in pair.backup.requests[0]

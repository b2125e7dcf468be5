import json
import logging

import pytest
from django.conf import settings as django_settings
from pythonjsonlogger.json import JsonFormatter

from mamba_site.logs import RequestIdLogFilter
from tests.chat.conftest import (
    API_APPS,
    UPSTREAM_URL,
    read_stream,
    streaming,
    text_reply,
    user,
)

pytestmark = [
    pytest.mark.django_db(transaction=True, available_apps=API_APPS),
    pytest.mark.usefixtures("seeded_agents"),
]


def sample(text, name, **labels):
    """The value of one sample in Prometheus text format (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            head, _, value = line.rpartition(" ")
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                return float(value)
    return 0.0


async def scrape(async_client, **headers):
    response = await async_client.get("/metrics", headers=headers)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    return response.content.decode()


async def test_metrics_change_after_a_chat(async_client, respx_mock):
    before = await scrape(async_client)
    respx_mock.post(UPSTREAM_URL).mock(return_value=streaming(text_reply("Hi")))
    body = {"messages": [user("SECRET-USER-TEXT")], "model": "gpt-4o"}
    response = await async_client.post("/chat", body, content_type="application/json")
    await read_stream(response)
    after = await scrape(async_client)
    labels = {"route": "/chat", "method": "POST", "status": "200"}
    assert (
        sample(after, "mamba_http_requests_total", **labels)
        == sample(before, "mamba_http_requests_total", **labels) + 1
    )
    tokens = {"model": "gpt-4o", "agent": "main", "kind": "input"}
    assert (
        sample(after, "mamba_tokens_total", **tokens)
        == sample(before, "mamba_tokens_total", **tokens) + 10
    )
    ttft = {"model": "gpt-4o", "agent": "main"}
    assert (
        sample(after, "mamba_time_to_first_token_seconds_count", **ttft)
        == sample(before, "mamba_time_to_first_token_seconds_count", **ttft) + 1
    )
    assert sample(after, "mamba_active_streams") == 0
    assert "SECRET-USER-TEXT" not in after


async def test_metrics_bound_model_labels_to_the_catalog(async_client, respx_mock):
    respx_mock.post(UPSTREAM_URL).mock(return_value=streaming(text_reply("Hi")))
    body = {"messages": [user("x")], "model": "attacker-chosen-model-name"}
    await read_stream(await async_client.post("/chat", body, content_type="application/json"))
    text = await scrape(async_client)
    assert "attacker-chosen-model-name" not in text
    assert sample(text, "mamba_stream_duration_seconds_count", model="other") >= 1


async def test_metrics_bound_method_labels_to_http_methods(async_client):
    """A client may send any token as its method: it is counted as "other", never a label."""
    before = await scrape(async_client)
    response = await async_client.generic("ATTACKER-METHOD", "/chat")
    assert response.status_code == 405
    text = await scrape(async_client)
    assert "ATTACKER-METHOD" not in text
    labels = {"route": "/chat", "method": "other", "status": "405"}
    assert (
        sample(text, "mamba_http_requests_total", **labels)
        == sample(before, "mamba_http_requests_total", **labels) + 1
    )


async def test_metrics_count_upstream_errors_and_auth_failures(async_client, respx_mock, settings):
    before = await scrape(async_client)
    respx_mock.post(UPSTREAM_URL).mock(return_value=streaming(b"", status=503))
    await async_client.post("/chat", {"messages": [user("x")]}, content_type="application/json")
    settings.AUTH_MODE = "api_key"
    await async_client.get("/models")
    after = await scrape(async_client)
    for name, labels in [
        ("mamba_upstream_errors_total", {"code": "SERVICE_UNAVAILABLE"}),
        ("mamba_auth_failures_total", {"reason": "AUTH_REQUIRED"}),
    ]:
        assert sample(after, name, **labels) == sample(before, name, **labels) + 1


async def test_metrics_token_protects_the_endpoint(async_client, settings):
    settings.METRICS_TOKEN = "scrape-token-123"
    response = await async_client.get("/metrics")
    assert response.status_code == 401
    assert response.json()["code"] == "AUTH_INVALID"
    wrong = await async_client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    await scrape(async_client, Authorization="Bearer scrape-token-123")


async def test_logs_are_json_lines_with_the_request_id(async_client, respx_mock, caplog):
    caplog.set_level(logging.INFO)
    respx_mock.post(UPSTREAM_URL).mock(return_value=streaming(text_reply("Hi")))
    body = {"messages": [user("SECRET-USER-TEXT")], "model": "gpt-4o"}
    response = await async_client.post("/chat", body, content_type="application/json")
    await read_stream(response)
    config = dict(django_settings.LOGGING["formatters"]["json"])
    config.pop("()")
    formatter = JsonFormatter(**config)
    id_filter = RequestIdLogFilter()
    lines = []
    for record in caplog.records:
        id_filter.filter(record)
        lines.append(json.loads(formatter.format(record)))
    ours = [line for line in lines if line.get("request_id") == response["X-Request-ID"]]
    access = next(line for line in ours if line["logger"] == "mamba.access")
    assert access["route"] == "/chat"
    assert access["status"] == 200
    assert access["method"] == "POST"
    assert {"time", "level", "message", "duration_ms"} <= set(access)
    finished = next(line for line in ours if line["logger"] == "chat.streams")
    assert finished["model"] == "gpt-4o"
    assert finished["agent"] == "main"
    assert finished["input_tokens"] == 10
    assert "SECRET-USER-TEXT" not in json.dumps(lines)

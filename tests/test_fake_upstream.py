"""Tests for the fake OpenAI upstream in tests/fake_upstream.py, over real HTTP."""

import json
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.fake_upstream import CHART_ARGS, LONG_TITLE, MARKER, FakeUpstream, match_keyword

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
async def server() -> AsyncIterator[FakeUpstream]:
    upstream = FakeUpstream()
    await upstream.start()
    yield upstream
    await upstream.stop()


@pytest.fixture
async def client(server: FakeUpstream) -> AsyncIterator[openai.AsyncOpenAI]:
    async with httpx.AsyncClient() as http_client:
        yield openai.AsyncOpenAI(
            base_url=server.base_url, api_key="sk-fake", http_client=http_client, max_retries=0
        )


@pytest.fixture
async def http(server: FakeUpstream) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url) as http_client:
        yield http_client


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def chat(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": user(text), "stream": True, **extra}


async def sse_events(response: httpx.Response) -> list[Any]:
    """The `data:` payloads of an SSE body, decoded (the final one is the string "[DONE]")."""
    lines = [line async for line in response.aiter_lines() if line.startswith("data: ")]
    return [json.loads(x) if x != "[DONE]" else x for x in (s[6:] for s in lines)]


async def stream_events(http: httpx.AsyncClient, text: str, **extra: Any) -> list[Any]:
    async with http.stream("POST", "/chat/completions", json=chat(text, **extra)) as response:
        return await sse_events(response)


async def read_content(stream: openai.AsyncStream[Any], into: list[str]) -> None:
    async for chunk in stream:
        into.append(chunk.choices[0].delta.content or "")


async def test_default_stream_text_and_usage(
    server: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    messages = user("hello there general kenobi you are a bold one")
    stream = await client.chat.completions.create(
        model="gpt-4o", messages=messages, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: hello there general kenobi you are a bold one"
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) == 4
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    prompt = len(messages[0]["content"]) // 4 + 1
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == prompt
    assert chunks[-1].usage.completion_tokens == 4
    assert chunks[-1].usage.total_tokens == prompt + 4
    assert server.requests[0]["messages"] == messages
    assert (server.completed, server.disconnects) == (1, 0)


async def test_raw_wire_format(http: httpx.AsyncClient) -> None:
    body = chat("hi", model="gpt-4o-mini")
    async with http.stream("POST", "/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert response.headers["transfer-encoding"] == "chunked"
        raw = (await response.aread()).decode()
    assert raw.startswith('data: {"id":"chatcmpl-fake1","object":"chat.completion.chunk",')
    assert raw.endswith("\n\ndata: [DONE]\n\n")
    events = [json.loads(e[6:]) for e in raw.split("\n\n")[:-2]]
    first, last = events[0], events[-1]
    assert first["model"] == "gpt-4o-mini"
    assert first["created"] == 1700000000
    assert first["system_fingerprint"] == "fp_fake"
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert last["choices"] == [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]
    assert all("usage" not in e for e in events)
    with_usage = await stream_events(http, "hi", stream_options={"include_usage": True})
    assert all(e["usage"] is None for e in with_usage[:-2])


async def test_chart_tool_call_reassembles(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="gpt-4o", messages=user("Draw a chart please"), stream=True
    )
    calls: dict[int, dict[str, str]] = {}
    content, fragments, finish = "", 0, None
    async for chunk in stream:
        delta = chunk.choices[0].delta
        content += delta.content or ""
        finish = chunk.choices[0].finish_reason or finish
        for call in delta.tool_calls or []:
            entry = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
            entry["id"] += call.id or ""
            entry["name"] += (call.function and call.function.name) or ""
            if call.function and call.function.arguments:
                fragments += 1
                entry["arguments"] += call.function.arguments
    assert content == "Here is the chart."
    assert calls == {0: {"id": "call_chart_1", "name": "generateChart", "arguments": CHART_ARGS}}
    assert json.loads(CHART_ARGS)["data"][0] == {"label": "apples", "value": 10}
    assert fragments >= 3
    assert finish == "tool_calls"


async def test_two_tools_and_reasoning(http: httpx.AsyncClient) -> None:
    args: dict[int, str] = {}
    for event in (await stream_events(http, "two-tools"))[:-1]:
        for call in event["choices"][0]["delta"].get("tool_calls", []):
            args[call["index"]] = args.get(call["index"], "") + call["function"]["arguments"]
    assert json.loads(args[0]) == {"language": "python", "code": "print(1)"}
    assert json.loads(args[1]) == {"title": "Card", "description": "A card"}

    for text, field in (("reason", "reasoning_content"), ("reasoning-field", "reasoning")):
        deltas = [e["choices"][0]["delta"] for e in (await stream_events(http, text))[:-1]]
        assert (
            "".join(d.get(field, "") for d in deltas) == "Let me think. The user wants an answer."
        )
        assert "".join(d.get("content", "") for d in deltas) == "The answer is 42."


async def test_tool_result_and_error_event(client: openai.AsyncOpenAI) -> None:
    messages = [*user("chart"), {"role": "tool", "tool_call_id": "call_chart_1", "content": "ok"}]
    stream = await client.chat.completions.create(model="gpt-4o", messages=messages, stream=True)
    received: list[str] = []
    await read_content(stream, received)
    assert "".join(received) == "Done: the tool returned a result."

    stream = await client.chat.completions.create(
        model="gpt-4o", messages=user("stream-error-event"), stream=True
    )
    with pytest.raises(openai.APIError, match=MARKER):
        await read_content(stream, [])


async def test_midstream_error_breaks_the_body(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="gpt-4o", messages=user("midstream-error"), stream=True
    )
    received: list[str] = []
    with pytest.raises((openai.APIError, httpx.HTTPError)):
        await read_content(stream, received)
    assert "".join(received) == "Partial answer"


async def test_non_streaming_title(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model="gpt-4o-mini", messages=user("Plan a trip to the mountains next week")
    )
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "Title: Plan a trip to the"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 6

    quoted = await client.chat.completions.create(model="gpt-4o", messages=user("quoted-title"))
    assert quoted.choices[0].message.content == '"Quoted Title"'
    long = await client.chat.completions.create(model="gpt-4o", messages=user("long-title"))
    assert long.choices[0].message.content == LONG_TITLE
    assert len(LONG_TITLE) == 120


async def test_missing_model_raises_not_found(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await client.chat.completions.create(model="missing-model", messages=user("hi"))
    assert caught.value.code == "model_not_found"


async def test_rate_limit_has_retry_after(
    http: httpx.AsyncClient, client: openai.AsyncOpenAI
) -> None:
    response = await http.post("/chat/completions", json={"model": "error-429", "messages": []})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.json()["error"]["type"] == "rate_limit_exceeded"
    assert MARKER in response.json()["error"]["message"]

    with pytest.raises(openai.RateLimitError):
        await client.chat.completions.create(model="error-429", messages=user("hi"))
    with pytest.raises(openai.AuthenticationError, match=MARKER):
        await client.chat.completions.create(model="error-401", messages=user("hi"))


async def test_hang_then_client_close_counts_disconnect(
    server: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    stream = await client.chat.completions.create(
        model="gpt-4o", messages=user("hang"), stream=True
    )
    started = time.monotonic()
    await stream.close()
    assert await server.wait_for_disconnect(1.0)
    assert time.monotonic() - started < 1.0
    assert (server.disconnects, server.completed) == (1, 0)


async def test_active_counts_chat_requests_until_their_answer_ends(
    server: FakeUpstream, http: httpx.AsyncClient
) -> None:
    async with http.stream("POST", "/chat/completions", json=chat("hang")) as response:
        assert response.status_code == 200
        assert server.active == 1
    assert await server.wait_for_disconnect(1.0)
    assert server.active == 0


async def test_drip_disconnect_mid_stream(server: FakeUpstream, http: httpx.AsyncClient) -> None:
    async with http.stream("POST", "/chat/completions", json=chat("drip:50")) as response:
        async for line in response.aiter_lines():
            if "tick" in line:
                break
    assert await server.wait_for_disconnect(1.0)


async def test_keep_alive_reuses_one_connection(
    server: FakeUpstream, http: httpx.AsyncClient
) -> None:
    client_ports = []
    for _ in range(2):
        async with http.stream("POST", "/chat/completions", json=chat("hi")) as response:
            assert (await sse_events(response))[-1] == "[DONE]"
            stream = response.extensions["network_stream"]
            client_ports.append(stream.get_extra_info("client_addr"))
    models = await http.get("/models")
    assert client_ports[0] == client_ports[1]
    assert [m["id"] for m in models.json()["data"]] == ["gpt-4o", "gpt-4o-mini"]
    assert (server.connections, server.completed) == (1, 2)


async def test_state_reset_and_unknown_route(server: FakeUpstream) -> None:
    async with httpx.AsyncClient(base_url=server.origin) as http:
        await http.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": user("x")})
        state = (await http.get("/_fake/state")).json()
        assert [r["messages"] for r in state["requests"]] == [user("x")]
        assert (await http.post("/_fake/reset")).json() == {}
        state = (await http.get("/_fake/state")).json()
        assert state == {"requests": [], "disconnects": 0, "completed": 0, "active": 0}
        missing = await http.get("/v1/nothing")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "invalid_request_error"


async def test_bench_is_fast(http: httpx.AsyncClient) -> None:
    started = time.monotonic()
    events = await stream_events(http, "bench:2000")
    assert sum(1 for e in events[:-1] if e["choices"][0]["delta"].get("content")) == 2000
    assert time.monotonic() - started < 5


def test_keyword_matching() -> None:
    assert match_keyword("please Reasoning-Field now") == ("reasoning-field", "")
    assert match_keyword("reason about it") == ("reason", "")
    assert match_keyword("an invalid-chart") == ("invalid-chart", "")
    assert match_keyword("go slow:2.5 then") == ("slow", "2.5")
    assert match_keyword("change the subject") == (None, "")
    assert match_keyword("hang") == ("hang", "")


def test_running_in_thread_serves_sync_clients() -> None:
    with FakeUpstream.running_in_thread() as server:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", server.base_url)
        body = chat("usage-none", stream_options={"include_usage": True})
        with httpx.stream("POST", f"{server.base_url}/chat/completions", json=body) as response:
            text = response.read().decode()
        assert '"usage"' not in text
        assert text.endswith("data: [DONE]\n\n")
        assert server.completed == 1


def test_subprocess_prints_ready_and_serves() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_upstream", "--host", "127.0.0.1", "--port", "0"],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert re.fullmatch(r"READY \d+\n", line)
        response = httpx.get(f"http://127.0.0.1:{line.split()[1]}/v1/models")
        assert response.json()["object"] == "list"
    finally:
        process.terminate()
        assert process.wait(timeout=5) == 0

"""Tests for the fake OpenAI upstream server in tests/fake_upstream.py."""

import asyncio
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
import pytest_asyncio

try:
    from tests.fake_upstream import CHART_ARGS, LONG_TITLE, MARKER, FakeUpstream, match_keyword
except ImportError:  # Run from a directory where `tests` is not importable as a package.
    sys.path.insert(0, str(Path(__file__).parent))
    from fake_upstream import CHART_ARGS, LONG_TITLE, MARKER, FakeUpstream, match_keyword

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@pytest_asyncio.fixture
async def server() -> AsyncIterator[FakeUpstream]:
    upstream = FakeUpstream()
    await upstream.start()
    yield upstream
    await upstream.stop()


@pytest_asyncio.fixture
async def client(server: FakeUpstream) -> AsyncIterator[openai.AsyncOpenAI]:
    async with httpx.AsyncClient() as http_client:
        yield openai.AsyncOpenAI(
            base_url=server.base_url, api_key="sk-fake", http_client=http_client, max_retries=0
        )


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


async def sse_chunks(response: httpx.Response) -> list[dict[str, Any] | str]:
    """Parse an SSE body into JSON objects (and the literal "[DONE]")."""
    events: list[dict[str, Any] | str] = []
    async for line in response.aiter_lines():
        if line.startswith("data: "):
            data = line.removeprefix("data: ")
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


@pytest.mark.asyncio
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
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) == 4
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    prompt = len(messages[0]["content"]) // 4 + 1
    assert chunks[-1].usage.model_dump(include={"prompt_tokens", "completion_tokens"}) == {
        "prompt_tokens": prompt,
        "completion_tokens": 4,
    }
    assert chunks[-1].usage.total_tokens == prompt + 4
    assert server.requests[0]["messages"] == messages
    assert server.completed == 1 and server.disconnects == 0


@pytest.mark.asyncio
async def test_raw_wire_format(server: FakeUpstream) -> None:
    body = {"model": "gpt-4o-mini", "messages": user("hi"), "stream": True}
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        async with http.stream("POST", "/chat/completions", json=body) as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
            assert response.headers["transfer-encoding"] == "chunked"
            events = await sse_chunks(response)
    assert events[-1] == "[DONE]"
    first, last = events[0], events[-2]
    assert isinstance(first, dict) and isinstance(last, dict)
    assert first["object"] == "chat.completion.chunk" and first["model"] == "gpt-4o-mini"
    assert first["id"] == "chatcmpl-fake1" and first["system_fingerprint"] == "fp_fake"
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert last["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert all("usage" not in e for e in events if isinstance(e, dict))


@pytest.mark.asyncio
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


@pytest.mark.asyncio
async def test_two_tools_and_reasoning_raw(server: FakeUpstream) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as http:

        async def run(text: str) -> list[dict[str, Any]]:
            body = {"model": "gpt-4o", "messages": user(text), "stream": True}
            async with http.stream("POST", "/chat/completions", json=body) as response:
                return [e for e in await sse_chunks(response) if isinstance(e, dict)]

        args: dict[int, str] = {}
        for event in await run("two-tools"):
            for call in event["choices"][0]["delta"].get("tool_calls", []):
                args[call["index"]] = args.get(call["index"], "") + call["function"]["arguments"]
        assert json.loads(args[0]) == {"language": "python", "code": "print(1)"}
        assert json.loads(args[1]) == {"title": "Card", "description": "A card"}

        for text, field in (("reason", "reasoning_content"), ("reasoning-field", "reasoning")):
            deltas = [e["choices"][0]["delta"] for e in await run(text)]
            thought = "".join(d.get(field, "") for d in deltas)
            assert thought == "Let me think. The user wants an answer."
            assert "".join(d.get("content", "") for d in deltas) == "The answer is 42."


@pytest.mark.asyncio
async def test_tool_result_and_error_event(client: openai.AsyncOpenAI) -> None:
    messages = [
        *user("chart"),
        {"role": "tool", "tool_call_id": "call_chart_1", "content": "ok"},
    ]
    stream = await client.chat.completions.create(model="gpt-4o", messages=messages, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream])
    assert text == "Done: the tool returned a result."

    stream = await client.chat.completions.create(
        model="gpt-4o", messages=user("stream-error-event"), stream=True
    )
    with pytest.raises(openai.APIError, match=MARKER):
        async for _ in stream:
            pass


@pytest.mark.asyncio
async def test_midstream_error_breaks_the_body(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="gpt-4o", messages=user("midstream-error"), stream=True
    )
    received = ""
    with pytest.raises((openai.APIError, httpx.HTTPError)):
        async for chunk in stream:
            received += chunk.choices[0].delta.content or ""
    assert received == "Partial answer"


@pytest.mark.asyncio
async def test_non_streaming_title(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model="gpt-4o-mini", messages=user("Plan a trip to the mountains next week")
    )
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "Title: Plan a trip to the"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens == 6

    quoted = await client.chat.completions.create(model="gpt-4o", messages=user("quoted-title"))
    assert quoted.choices[0].message.content == '"Quoted Title"'
    long = await client.chat.completions.create(model="gpt-4o", messages=user("long-title"))
    assert long.choices[0].message.content == LONG_TITLE and len(LONG_TITLE) == 120


@pytest.mark.asyncio
async def test_missing_model_raises_not_found(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await client.chat.completions.create(model="missing-model", messages=user("hi"))
    assert caught.value.code == "model_not_found"


@pytest.mark.asyncio
async def test_rate_limit_has_retry_after(server: FakeUpstream, client: openai.AsyncOpenAI) -> None:
    body = {"model": "error-429", "messages": user("hi")}
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        response = await http.post("/chat/completions", json=body)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.json()["error"]["type"] == "rate_limit_exceeded"
    assert MARKER in response.json()["error"]["message"]

    with pytest.raises(openai.RateLimitError):
        await client.chat.completions.create(model="error-429", messages=user("hi"))
    with pytest.raises(openai.AuthenticationError, match=MARKER):
        await client.chat.completions.create(model="error-401", messages=user("hi"))


@pytest.mark.asyncio
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
    assert server.disconnects == 1 and server.completed == 0


@pytest.mark.asyncio
async def test_drip_disconnect_mid_stream(server: FakeUpstream) -> None:
    body = {"model": "gpt-4o", "messages": user("drip:50"), "stream": True}
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        async with http.stream("POST", "/chat/completions", json=body) as response:
            async for line in response.aiter_lines():
                if "tick" in line:
                    break
    assert await server.wait_for_disconnect(1.0)


@pytest.mark.asyncio
async def test_keep_alive_reuses_one_connection(server: FakeUpstream) -> None:
    body = {"model": "gpt-4o", "messages": user("hi"), "stream": True}
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        ports = []
        for _ in range(2):
            async with http.stream("POST", "/chat/completions", json=body) as response:
                events = await sse_chunks(response)
                ports.append(response.extensions["network_stream"].get_extra_info("client_addr"))
            assert events[-1] == "[DONE]"
        models = await http.get("/models")
    assert ports[0] == ports[1]
    assert [m["id"] for m in models.json()["data"]] == ["gpt-4o", "gpt-4o-mini"]
    assert server.connections == 1 and server.completed == 2


@pytest.mark.asyncio
async def test_state_reset_and_unknown_route(server: FakeUpstream) -> None:
    async with httpx.AsyncClient(base_url=server.origin) as http:
        await http.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": user("x")})
        state = (await http.get("/_fake/state")).json()
        assert [r["messages"] for r in state["requests"]] == [user("x")]
        assert (await http.post("/_fake/reset")).json() == {}
        state = (await http.get("/_fake/state")).json()
        assert state == {"requests": [], "disconnects": 0, "completed": 0}
        missing = await http.get("/v1/nothing")
        assert missing.status_code == 404 and "error" in missing.json()


def test_keyword_matching() -> None:
    assert match_keyword("please Reasoning-Field now") == ("reasoning-field", "")
    assert match_keyword("reason about it") == ("reason", "")
    assert match_keyword("invalid-chart") == ("invalid-chart", "")
    assert match_keyword("go slow:2.5 then") == ("slow", "2.5")
    assert match_keyword("change the subject") == (None, "")
    assert match_keyword("hang") == ("hang", "")


def test_running_in_thread_serves_sync_clients() -> None:
    with FakeUpstream.running_in_thread() as server:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", server.base_url)
        body = {"model": "gpt-4o", "messages": user("usage-none"), "stream": True}
        body["stream_options"] = {"include_usage": True}
        with httpx.stream("POST", f"{server.base_url}/chat/completions", json=body) as response:
            text = response.read().decode()
        assert '"usage"' not in text and text.endswith("data: [DONE]\n\n")
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
        port = int(line.split()[1])
        response = httpx.get(f"http://127.0.0.1:{port}/v1/models")
        assert response.json()["object"] == "list"
    finally:
        process.terminate()
        assert process.wait(timeout=5) == 0


@pytest.mark.asyncio
async def test_bench_throughput(server: FakeUpstream) -> None:
    body = {"model": "gpt-4o", "messages": user("bench:2000"), "stream": True}
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        async with http.stream("POST", "/chat/completions", json=body) as response:
            events = await sse_chunks(response)
    assert sum(1 for e in events if isinstance(e, dict)) == 2002
    assert time.monotonic() - started < 5
    await asyncio.sleep(0)

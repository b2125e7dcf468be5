"""The offline model `mock/echo`: an HTTP transport that answers like an OpenAI server.

It sits under the same `openai` client as the real provider, so its replies take the same path
through the gateway. Replies are deterministic; asking for a chart calls `generateChart`.
"""

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson

from mamba_site.providers import MOCK_MODEL

MODEL = MOCK_MODEL
BASE_URL = "http://mock.invalid/v1"
LABEL = "[offline mock model: set MAMBA_OPENAI__API_KEY for a real one]"
CHUNK_DELAY_SECONDS = 0.02

SAMPLE_CHART = {
    "chartType": "bar",
    "title": "Sample data",
    "description": "Deterministic sample values from the offline model.",
    "data": [
        {"label": "North", "value": 12},
        {"label": "South", "value": 7},
        {"label": "East", "value": 9},
        {"label": "West", "value": 4},
    ],
}


class MockTransport(httpx.AsyncBaseTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = orjson.loads(await request.aread() or b"{}")
        if not body.get("stream"):
            completion = _completion(body, _last_text(body.get("messages", [])))
            return httpx.Response(200, json=completion)
        chunks = list(_reply(body))
        return httpx.Response(
            200,
            headers={"content-type": "text/event-stream"},
            stream=_EventStream(chunks),
        )


class _EventStream(httpx.AsyncByteStream):
    def __init__(self, chunks: list[dict[str, Any]]) -> None:
        self._chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            await asyncio.sleep(CHUNK_DELAY_SECONDS)
            yield b"data: " + orjson.dumps(chunk) + b"\n\n"
        yield b"data: [DONE]\n\n"


def _last_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            return " ".join(p.get("text", "") for p in content or [] if p.get("type") == "text")
    return ""


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-mock",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _words(text: str) -> Iterator[str]:
    words = text.split(" ")
    for index, word in enumerate(words):
        yield word if index == 0 else " " + word


def _reply(body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    messages = body.get("messages", [])
    tool_names = {t["function"]["name"] for t in body.get("tools") or []}
    last = messages[-1] if messages else {}
    text = _last_text(messages)
    produced = 0
    if last.get("role") == "tool":
        answer = f"{LABEL} The chart above shows the sample data."
    elif "chart" in text.lower() and "generateChart" in tool_names:
        arguments = json.dumps(SAMPLE_CHART)
        yield _chunk({"role": "assistant", "content": f"{LABEL} Here is a sample chart."})
        yield _chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_mock_chart",
                        "type": "function",
                        "function": {"name": "generateChart", "arguments": ""},
                    }
                ]
            }
        )
        for start in range(0, len(arguments), 40):
            piece = arguments[start : start + 40]
            yield _chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
        yield _chunk({}, "tool_calls")
        yield _usage(messages, 3 + len(arguments) // 40)
        return
    else:
        answer = f"{LABEL} You said: {text}" if text else f"{LABEL} Hello!"
    yield _chunk({"role": "assistant", "content": ""})
    for piece in _words(answer):
        produced += 1
        yield _chunk({"content": piece})
    yield _chunk({}, "stop")
    yield _usage(messages, produced)


def _usage(messages: list[dict[str, Any]], completion_tokens: int) -> dict[str, Any]:
    prompt_tokens = max(1, len(orjson.dumps(messages)) // 4)
    return {
        **_chunk({}),
        "choices": [],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def _completion(body: dict[str, Any], text: str) -> dict[str, Any]:
    title = " ".join(text.split()[:5]) or "New conversation"
    return {
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": 0,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": title},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }

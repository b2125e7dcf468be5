"""Helpers for chat tests: upstream SSE bodies and parsing of our stream."""

from typing import Any

import httpx
import orjson
import pytest

from agents.models import Agent
from agents.tools import DISPLAY_TOOLS

UPSTREAM_URL = "http://upstream.test/v1/chat/completions"
# Transactional tests flush only these apps' tables: flushing every table costs ~0.4 s a test.
API_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "agents"]


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> dict:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o",
        "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}],
        **extra,
    }


def usage_chunk(prompt: int = 10, completion: int = 5) -> dict:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o",
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


def sse(*chunks: dict) -> bytes:
    """An upstream (OpenAI) event stream body."""
    return b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


def text_reply(*pieces: str, finish: str = "stop") -> bytes:
    deltas = [chunk({"role": "assistant", "content": ""})]
    deltas += [chunk({"content": piece}) for piece in pieces]
    return sse(*deltas, chunk({}, finish), usage_chunk())


def tool_reply(name: str, arguments: str, call_id: str = "call_1", text: str = "") -> bytes:
    deltas = [chunk({"role": "assistant", "content": text})]
    deltas.append(
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": call_id,
                        "type": "function",
                        "function": {"name": name, "arguments": ""},
                    }
                ]
            }
        )
    )
    half = len(arguments) // 2
    for piece in (arguments[:half], arguments[half:]):
        deltas.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
    return sse(*deltas, chunk({}, "tool_calls"), usage_chunk())


def streaming(body: bytes, status: int = 200) -> httpx.Response:
    return httpx.Response(status, content=body, headers={"content-type": "text/event-stream"})


def parse_sse(raw: bytes) -> list[Any]:
    """Our stream's events: each `data:` payload parsed; `[DONE]` kept as the string."""
    events: list[Any] = []
    for block in raw.decode().split("\n\n"):
        data = [line[5:].lstrip() for line in block.split("\n") if line.startswith("data:")]
        if data:
            payload = "\n".join(data)
            events.append(payload if payload == "[DONE]" else orjson.loads(payload))
    return events


async def read_stream(response) -> bytes:
    return b"".join([part async for part in response.streaming_content])


def user(text: str, id: str = "u1") -> dict:
    return {"id": id, "role": "user", "parts": [{"type": "text", "text": text}]}


@pytest.fixture
def upstream_mock(respx_mock):
    return respx_mock


@pytest.fixture
def main_agent(transactional_db):
    """The only agent: the default, with the display tools (seeded rows may or may not exist)."""
    Agent.objects.exclude(slug="main").delete()
    agent, _ = Agent.objects.update_or_create(
        slug="main",
        defaults={
            "name": "Mamba",
            "description": "The default agent.",
            "system_prompt": "You are a test assistant.",
            "tools": [tool.name for tool in DISPLAY_TOOLS],
            "is_default": True,
            "enabled": True,
        },
    )
    return agent

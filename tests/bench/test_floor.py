"""The floor proxies (bench/floor.py) in their own processes, in front of the fake upstream."""

import orjson
import pytest

from bench import procs
from bench.load import Target, one_request_raw


@pytest.fixture(params=["floor", "push-floor"])
def any_floor(request, upstream, tmp_path):
    with procs.floor(tmp_path, upstream.origin, request.param) as server:
        yield server


@pytest.fixture
def push_translator(upstream, tmp_path):
    with procs.floor(tmp_path, upstream.origin, "push-translator") as server:
        yield server


@pytest.fixture
def floor(upstream, tmp_path):
    with procs.floor(tmp_path, upstream.origin) as server:
        yield server


def through(floor):
    """The floor's address for what the load generator sends the fake directly."""
    return Target("direct", f"{floor.origin}/v1/chat/completions")


async def test_floors_pass_the_upstream_reply_through(any_floor, upstream, conn):
    direct = await one_request_raw(
        conn, Target("direct", f"{upstream.origin}/v1/chat/completions"), "bench:3"
    )
    first = await one_request_raw(conn, through(any_floor), "bench:3")
    second = await one_request_raw(conn, through(any_floor), "bench:2")  # one connection

    assert (first.ok, first.status, first.tokens, first.done) == (True, 200, 3, True)
    assert (first.events, first.bytes) == (direct.events, direct.bytes)
    assert (second.ok, second.tokens) == (True, 2)


async def test_floor_answers_502_when_the_upstream_fails(floor, upstream, conn):
    upstream.set_fault("status:500")

    outcome = await one_request_raw(conn, through(floor), "bench:3")

    assert (outcome.ok, outcome.status) == (False, 502)


async def test_push_translator_answers_as_mamba_does(push_translator, conn):
    """Mamba's work on each chunk, done in the connection's callback: the UI message chunks of
    a text reply, in Mamba's order, with `[DONE]`; one connection serves request after
    request."""
    target = Target("translator", f"{push_translator.origin}/v1/chat/completions")
    response = await conn.post(target.url, orjson.dumps(target.body("bench:3")), {})
    body = b"".join([chunk async for chunk in response.body])
    events = [line[6:] for line in body.split(b"\n") if line.startswith(b"data: ")]
    second = await one_request_raw(conn, target, "bench:2")

    assert response.status == 200
    assert events[-1] == b"[DONE]"
    chunks = [orjson.loads(event) for event in events[:-1]]
    assert [chunk["type"] for chunk in chunks] == [
        "start",
        "start-step",
        "text-start",
        *["text-delta"] * 3,
        "text-end",
        "finish-step",
        "finish",
    ]
    assert chunks[-1]["finishReason"] == "stop"
    assert (second.ok, second.tokens, second.done) == (True, 2, True)

"""The floor proxies (bench/floor.py) in their own processes, in front of the fake upstream."""

import pytest

from bench import procs
from bench.load import Target, one_request_raw


@pytest.fixture(params=[False, True], ids=["floor", "push-floor"])
def any_floor(request, upstream, tmp_path):
    with procs.floor(tmp_path, upstream.origin, push=request.param) as server:
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

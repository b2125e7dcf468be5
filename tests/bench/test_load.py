"""The load generator's raw client (bench/rawhttp.py) against the fake upstream, over real HTTP."""

import asyncio

from bench.load import Target, hold_streams, one_request_raw
from bench.rawhttp import RawConnection


def direct(server):
    return Target("direct", f"{server.origin}/v1/chat/completions")


async def test_one_request_raw_reads_a_whole_stream(upstream, conn):
    outcome = await one_request_raw(conn, direct(upstream), "bench:3")

    assert (outcome.ok, outcome.status, outcome.tokens) == (True, 200, 3)


async def test_one_request_raw_counts_each_http_chunk_as_a_read(upstream, conn):
    outcome = await one_request_raw(conn, direct(upstream), "bench:3")

    assert outcome.reads == outcome.events


async def test_raw_connection_is_kept_alive_between_requests(upstream, conn):
    for _ in range(3):
        await one_request_raw(conn, direct(upstream), "bench:2")

    assert upstream.connections == 1


async def test_one_request_raw_reports_an_error_status(upstream, conn):
    outcome = await one_request_raw(conn, Target("direct", f"{upstream.origin}/nowhere"), "x")

    assert (outcome.ok, outcome.error) == (
        False,
        "HTTP 404; no [DONE] at the end; no finish event; no content",
    )


async def test_hold_streams_keeps_streams_open_until_closed(upstream):
    connections = [RawConnection() for _ in range(3)]
    held = await hold_streams(connections, direct(upstream), "hang", 3, 2)
    await asyncio.wait_for(held.settled.wait(), 5)
    active = upstream.active

    await held.close()

    assert (held.open_now, active) == (3, 3)
    assert await upstream.wait_for_disconnect(count=3)

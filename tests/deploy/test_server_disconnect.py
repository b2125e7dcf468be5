"""A client that leaves, as `python -m mamba_site.serve` sees it: no task listens for the
disconnect there (the server cancels the handler), and the stream still closes its upstream
at once and releases its slot."""

import json
import re
import socket
import time

import pytest

from tests.deploy.conftest import wait_until
from tests.fake_upstream import FakeUpstream


def post_chat(server, text):
    """Send a /chat request on a raw socket and read until the first `data:` line."""
    body = json.dumps({"messages": [{"role": "user", "content": text}]}).encode()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(
        b"POST /chat HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    received = b""
    while b"data: " not in received:
        part = sock.recv(65536)
        assert part, received
        received += part
    assert received.startswith(b"HTTP/1.1 200"), received
    return sock, received


def active_streams(server):
    status, body = server.get("/metrics")
    assert status == 200
    [value] = re.findall(rb"^mamba_active_streams ([0-9.]+)$", body, re.MULTILINE)
    return float(value)


@pytest.mark.parametrize(
    ("text", "wait"),
    [("hang", "a keep-alive"), ("drip:50", "content")],
    ids=["before-first-token", "mid-stream"],
)
def test_a_client_that_leaves_closes_the_upstream_at_once(
    serve, fake_upstream: FakeUpstream, text, wait
):
    server = serve(10)
    fake_upstream.reset()
    sock, received = post_chat(server, text)
    if wait == "content":
        while b"text-delta" not in received:
            received += sock.recv(65536)
    assert active_streams(server) == 1
    sock.close()
    left_at = time.monotonic()

    assert wait_until(lambda: fake_upstream.disconnects == 1, timeout=2.0), fake_upstream.state()
    assert time.monotonic() - left_at < 1.0
    assert fake_upstream.completed == 0
    assert wait_until(lambda: active_streams(server) == 0, timeout=2.0)
    assert wait_until(lambda: "chat disconnected" in server.log(), timeout=2.0), server.log()
    assert "Traceback" not in server.log()
    assert "took too long to shut down" not in server.log()


def test_a_response_sent_whole_is_not_cut_by_the_close_that_follows(serve, fake_upstream):
    """The client closes as soon as it has the last byte: the request is complete by then, so
    nothing is cancelled and the stream ends as finished."""
    server = serve(10)
    fake_upstream.reset()
    sock, received = post_chat(server, "bench:5")
    while b"data: [DONE]" not in received:
        received += sock.recv(65536)
    sock.close()

    assert wait_until(lambda: "chat finished" in server.log(), timeout=2.0), server.log()
    assert wait_until(lambda: active_streams(server) == 0, timeout=2.0)
    assert "chat disconnected" not in server.log()
    assert fake_upstream.completed == 1

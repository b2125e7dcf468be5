import json
import signal
import socket
import time
from pathlib import Path

import httpx

from tests.deploy.conftest import wait_until

CHAT_BODY = {"messages": [{"role": "user", "content": "drip:{n}"}]}  # n chunks 0.2 s apart


def open_stream(client, server, chunks):
    body = json.loads(json.dumps(CHAT_BODY).replace("{n}", str(chunks)))
    request = client.build_request("POST", server.url + "/chat", json=body)
    response = client.send(request, stream=True)
    assert response.status_code == 200, response.read()
    return response


def read_until_first_delta(lines):
    for line in lines:
        if '"text-delta"' in line:
            return line
    raise AssertionError("the stream ended before its first text delta")


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_sigterm_lets_the_active_stream_finish_and_refuses_new_connections(serve):
    server = serve(grace_seconds=10)
    idle = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    idle.sendall(b"GET /health/live HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert b" 200 " in idle.recv(4096)  # a kept-alive connection, now idle

    with httpx.Client(timeout=10) as client:
        response = open_stream(client, server, chunks=10)
        lines = response.iter_lines()
        read_until_first_delta(lines)
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)

        assert wait_until(lambda: refused(server.port), timeout=3), "still accepting after SIGTERM"
        assert idle.recv(4096) == b"", "an idle kept-alive connection was left open"
        rest = [line for line in lines if line.startswith("data: ")]

    assert rest[-1] == "data: [DONE]"
    assert json.loads(rest[-2].removeprefix("data: "))["type"] == "finish"
    assert server.process.wait(timeout=10) == 0
    assert time.monotonic() - signalled < 10
    assert "Drained in" in server.log()


def test_sigterm_ends_a_stream_longer_than_the_grace_cleanly_within_it(serve):
    grace = 1.0
    server = serve(grace_seconds=grace)

    with httpx.Client(timeout=10) as client:
        response = open_stream(client, server, chunks=100)  # 20 s
        lines = response.iter_lines()
        read_until_first_delta(lines)
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        received = [line for line in lines if line]  # the body ends: no cut connection
        exit_code = server.process.wait(timeout=10)
        exited_after = time.monotonic() - signalled

    events = [json.loads(line.removeprefix("data: ")) for line in received[:-1]]
    # Before the server would cancel it, the stream ends itself, as the protocol wants.
    assert events[-2:] == [
        {"type": "error", "errorText": "The server is restarting; send your message again."},
        {"type": "finish", "finishReason": "error"},
    ]
    assert received[-1] == "data: [DONE]"
    assert exit_code == 0
    assert exited_after < grace + 1.0
    assert "Drained in" in server.log()
    assert "Grace of 1 s is over" not in server.log()


def test_a_second_sigterm_stops_at_once(serve):
    server = serve(grace_seconds=30)

    with httpx.Client(timeout=10) as client:
        response = open_stream(client, server, chunks=100)
        # Keep the line iterator: once it is collected, httpcore closes the connection, the
        # server sees the client leave and drains at once, before the second signal.
        lines = response.iter_lines()
        read_until_first_delta(lines)
        server.process.send_signal(signal.SIGTERM)
        assert wait_until(lambda: refused(server.port), timeout=3)
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)

        assert server.process.wait(timeout=10) == 0
        assert time.monotonic() - signalled < 2.0
        lines.close()


def children(pid):
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_workers_share_the_socket_and_drain_together(serve):
    server = serve(10, "--workers", "2")
    assert wait_until(lambda: server.log().count("Listening on 127.0.0.1:") == 2, timeout=20)
    workers = children(server.process.pid)
    assert len(workers) == 2

    with httpx.Client(timeout=10) as client:
        assert all(client.get(server.url + "/health/live").status_code == 200 for _ in range(20))
        response = open_stream(client, server, chunks=30)
        lines = response.iter_lines()
        read_until_first_delta(lines)
        server.process.send_signal(signal.SIGTERM)
        rest = list(lines)  # the stream in flight is finished, not cut

    assert "data: [DONE]" in rest
    assert server.process.wait(timeout=15) == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)

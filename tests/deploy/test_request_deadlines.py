"""The server's deadlines to receive a request (`python -m mamba_site.serve`, a real process):
a client that trickles its request line, headers or body is answered 408 and let go."""

import json
import socket
import time

import pytest

from tests.deploy.test_body_limit import REQUEST_ID, head, read_response, serving

HEAD_SECONDS = 1.0
BODY_SECONDS = 1.5


@pytest.fixture(scope="module")
def server(deploy_database_url, fake_upstream, tmp_path_factory):
    deadlines = {
        "MAMBA_SERVER__REQUEST_HEAD_TIMEOUT_SECONDS": str(HEAD_SECONDS),
        "MAMBA_SERVER__REQUEST_BODY_TIMEOUT_SECONDS": str(BODY_SECONDS),
    }
    with serving(
        deploy_database_url, fake_upstream, tmp_path_factory, "deadlines", **deadlines
    ) as s:
        yield s


def trickle(sock, data, every=0.2, within=5.0):
    """Send `data` a byte at a time until the server answers; the answer and when it came."""
    sock.settimeout(every)
    deadline = time.monotonic() + within
    for byte in data:
        sock.sendall(bytes([byte]))
        try:
            first = sock.recv(65536)
        except TimeoutError:
            assert time.monotonic() < deadline, "no answer while the request trickled in"
            continue
        answered = time.monotonic()
        sock.settimeout(5)
        rest = b""
        while chunk := sock.recv(65536):
            rest += chunk
        return first + rest, answered
    raise AssertionError("the whole request was sent without an answer")


def parse(data):
    head_text, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head_text.decode().split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (x.partition(":") for x in lines)}
    return status_line, headers, json.loads(body)


def assert_request_timeout(status_line, headers, payload, request_id=REQUEST_ID):
    assert status_line == "HTTP/1.1 408 Request Timeout", status_line
    assert headers["connection"] == "close"
    assert headers["content-type"] == "application/json"
    assert payload == {
        "detail": "The request was not received in time.",
        "code": "REQUEST_TIMEOUT",
        "request_id": request_id,
    }
    assert headers["x-request-id"] == request_id


def test_serve_answers_408_to_a_request_line_that_never_ends(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        started = time.monotonic()
        data, answered = trickle(sock, b"POST /chat?" + b"a" * 100)
    status_line, headers, payload = parse(data)
    # No header was read: the answer's request id is a new one.
    assert_request_timeout(status_line, headers, payload, request_id=payload["request_id"])
    assert HEAD_SECONDS <= answered - started < HEAD_SECONDS + 1


def test_serve_answers_408_to_headers_that_trickle_in(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        # Twisted takes a header in once the next line is in: the request id is read.
        request = head("X-Other: 1", "X-Padding: " + "a" * 100).removesuffix(b"\r\n\r\n")
        sent, trickled = request.split(b"X-Padding")
        sock.sendall(sent)
        started = time.monotonic()
        data, answered = trickle(sock, b"X-Padding" + trickled)
    assert_request_timeout(*parse(data))
    assert HEAD_SECONDS <= answered - started < HEAD_SECONDS + 1


def refused_chat_posts(server, status):
    _, text = server.get("/metrics")
    line = f'mamba_http_requests_total{{method="POST",route="/chat",status="{status}"}} '
    found = [row for row in text.decode().splitlines() if row.startswith(line)]
    return float(found[0].removeprefix(line)) if found else 0.0


def test_serve_answers_408_to_a_body_that_trickles_in(server):
    before = refused_chat_posts(server, 408)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(head("Content-Length: 100"))
        started = time.monotonic()
        data, answered = trickle(sock, b"{" * 100)
    assert_request_timeout(*parse(data))
    assert BODY_SECONDS <= answered - started < BODY_SECONDS + 1
    assert refused_chat_posts(server, 408) == before + 1


def test_serve_lets_a_kept_alive_connection_idle_between_requests(server):
    """The deadlines run from a request's first byte: not between requests (the idle timeout
    governs those), nor while a response is written."""
    request = b"GET /health/live HTTP/1.1\r\nHost: localhost\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        for _ in range(2):
            sock.sendall(request)
            data = b""
            while not data.endswith(b"\r\n0\r\n\r\n"):  # a chunked body's end
                data += sock.recv(65536)
            assert data.startswith(b"HTTP/1.1 200 "), data
            time.sleep(HEAD_SECONDS + 0.5)


def test_serve_takes_a_slow_request_within_its_deadlines(server):
    body = b'{"messages": []}'
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        request = head(f"Content-Length: {len(body)}", "Connection: close")
        sock.sendall(request[:20])
        time.sleep(HEAD_SECONDS / 2)
        sock.sendall(request[20:] + body[:5])
        time.sleep(BODY_SECONDS / 2)
        sock.sendall(body[5:])
        status_line, _, _ = read_response(sock)
    assert status_line.startswith("HTTP/1.1 401 "), status_line  # it reached Django

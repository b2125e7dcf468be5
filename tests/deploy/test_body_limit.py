import contextlib
import json
import os
import socket
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.deploy.conftest import start_server

LIMIT = 1024 * 1024
CHUNK = 64 * 1024
REQUEST_ID = str(uuid.uuid4())


def serve(database_url, upstream, log_dir, **settings):
    """`python -m mamba_site.serve` with a 1 MiB body limit, in api_key mode, and `settings`."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "MAMBA_DATABASE_URL": database_url,
        "MAMBA_OPENAI__BASE_URL": upstream.base_url,
        "MAMBA_AUTH__MODE": "api_key",
        "MAMBA_CHAT__MAX_BODY_BYTES": str(LIMIT),
        "PYTHONUNBUFFERED": "1",
        **settings,
    }
    command = [sys.executable, "-m", "mamba_site.serve", "--bind", "127.0.0.1", "--port", "0"]
    return start_server(command, env, log_dir / "serve.log")


@contextlib.contextmanager
def serving(database_url, upstream, tmp_path_factory, name, **settings):
    """`serve()` in a directory of its own under `name`, killed on the way out."""
    server = serve(database_url, upstream, tmp_path_factory.mktemp(name), **settings)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def server(deploy_database_url, fake_upstream, tmp_path_factory):
    with serving(deploy_database_url, fake_upstream, tmp_path_factory, "body-limit") as server:
        yield server


def head(*lines):
    request = [
        "POST /chat HTTP/1.1",
        "Host: localhost",
        "Content-Type: application/json",
        f"X-Request-ID: {REQUEST_ID}",
        *lines,
    ]
    return ("\r\n".join(request) + "\r\n\r\n").encode()


def read_response(sock):
    """Everything the server sends until it closes its side: status, headers, body."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head_text, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head_text.decode().split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        body = dechunk(body)
    return status_line, headers, body


def dechunk(data):
    body = b""
    while True:
        size, _, data = data.partition(b"\r\n")
        if int(size, 16) == 0:
            return body
        body, data = body + data[: int(size, 16)], data[int(size, 16) + 2 :]


def assert_payload_too_large(status_line, headers, body):
    assert status_line.startswith("HTTP/1.1 413 "), status_line
    assert headers["content-type"] == "application/json"
    assert headers["x-request-id"] == REQUEST_ID
    payload = json.loads(body)
    assert payload == {
        "detail": f"The request body is larger than {LIMIT} bytes.",
        "code": "PAYLOAD_TOO_LARGE",
        "request_id": REQUEST_ID,
    }


def temp_files(pid):
    """The deleted files the process holds open (Python's TemporaryFile unlinks at once)."""
    found = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except FileNotFoundError:
            continue
        if target.endswith("(deleted)") and not target.startswith(("/memfd:", "/dev/")):
            found.append(target)
    return found


def memory_kib(pid, key):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {key} for {pid}")


def test_serve_answers_a_declared_large_body_before_it_is_sent(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        # Only the headers: a client that waits for `100 Continue` sends nothing more.
        sock.sendall(head(f"Content-Length: {100 * LIMIT}", "Expect: 100-continue"))
        started = time.monotonic()
        response = read_response(sock)
    assert time.monotonic() - started < 2
    assert_payload_too_large(*response)


def refused_chat_posts(server):
    status, text = server.get("/metrics")
    assert status == 200
    line = 'mamba_http_requests_total{method="POST",route="/chat",status="413"} '
    found = [row for row in text.decode().splitlines() if row.startswith(line)]
    return float(found[0].removeprefix(line)) if found else 0.0


def test_serve_counts_the_bodies_it_refuses_as_requests_of_their_route(server):
    before = refused_chat_posts(server)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(head(f"Content-Length: {2 * LIMIT}"))
        assert_payload_too_large(*read_response(sock))
    assert refused_chat_posts(server) == before + 1


def test_serve_cuts_a_chunked_body_without_buffering_it(server):
    pid = server.process.pid
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
    rss_before = memory_kib(pid, "VmRSS")
    chunk = b"%x\r\n%s\r\n" % (CHUNK, b"x" * CHUNK)
    total = 32 * LIMIT
    held = []
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head("Transfer-Encoding: chunked"))
        for sent in range(0, total, CHUNK):
            sock.sendall(chunk)
            if sent % (4 * LIMIT) == 0:
                held += temp_files(pid)
        sock.sendall(b"0\r\n\r\n")
        response = read_response(sock)
    assert_payload_too_large(*response)
    assert held == []
    # The server read 32 MiB; at most the 1 MiB limit (and the interpreter's noise) stayed.
    assert memory_kib(pid, "VmHWM") - rss_before < 8 * 1024
    assert server.get("/health/live")[0] == 200


@pytest.mark.parametrize("chunked", [False, True])
def test_serve_passes_a_body_within_the_limit_to_the_application(server, chunked):
    body = json.dumps({"messages": [{"role": "user", "content": "x" * (LIMIT // 2)}]}).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        if chunked:
            sock.sendall(head("Transfer-Encoding: chunked", "Connection: close"))
            sock.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
        else:
            sock.sendall(head(f"Content-Length: {len(body)}", "Connection: close") + body)
        status_line, headers, payload = read_response(sock)
    # Django's authentication answered: the body reached the application whole.
    assert status_line.startswith("HTTP/1.1 401 "), status_line
    assert json.loads(payload)["code"] == "AUTH_REQUIRED"
    assert json.loads(payload)["request_id"] == headers["x-request-id"] == REQUEST_ID


BUDGET = LIMIT + LIMIT // 2  # one largest body and a half


@pytest.fixture(scope="module")
def busy_server(deploy_database_url, fake_upstream, tmp_path_factory):
    """The server holding at most 1.5 MiB of request bodies at once."""
    held = {"MAMBA_SERVER__MAX_BODY_BYTES_HELD": str(BUDGET)}
    with serving(deploy_database_url, fake_upstream, tmp_path_factory, "body-budget", **held) as s:
        yield s


def bytes_held(server):
    status, text = server.get("/metrics")
    assert status == 200
    name = "mamba_request_body_bytes_held "
    return float(next(r for r in text.decode().splitlines() if r.startswith(name))[len(name) :])


def wait_for_held(server, value, within=5.0):
    deadline = time.monotonic() + within
    while (held := bytes_held(server)) != value and time.monotonic() < deadline:
        time.sleep(0.02)
    assert held == value


def assert_busy(status_line, headers, body):
    assert status_line == "HTTP/1.1 503 Service Unavailable", status_line
    assert headers["retry-after"] == "1"
    assert headers["x-request-id"] == REQUEST_ID
    assert json.loads(body) == {
        "detail": "The server is receiving too many request bodies at once. Retry shortly.",
        "code": "SERVER_BUSY",
        "request_id": REQUEST_ID,
    }


@pytest.mark.parametrize("chunked", [False, True])
def test_serve_answers_503_to_a_body_past_what_it_holds_at_once(busy_server, chunked):
    """A large body on its way holds what has arrived of it (1 MiB of the 1.5): another large
    one is refused as it passes what is left, and once the first has its answer the next is
    served."""
    with socket.create_connection(("127.0.0.1", busy_server.port), timeout=10) as first:
        first.sendall(head(f"Content-Length: {LIMIT}", "Connection: close") + b"x" * (LIMIT - 1))
        wait_for_held(busy_server, LIMIT - 1)
        with socket.create_connection(("127.0.0.1", busy_server.port), timeout=10) as second:
            part = b"x" * CHUNK
            with contextlib.suppress(OSError):  # the server may close while we send
                if chunked:
                    second.sendall(head("Transfer-Encoding: chunked"))
                    for _ in range(LIMIT // CHUNK):
                        second.sendall(b"%x\r\n%s\r\n" % (len(part), part))
                    second.sendall(b"0\r\n\r\n")
                else:
                    second.sendall(head(f"Content-Length: {LIMIT}"))
                    for _ in range(LIMIT // CHUNK):
                        second.sendall(part)
            assert_busy(*read_response(second))
        first.sendall(b"x")
        status_line, _, _ = read_response(first)
    assert status_line.startswith("HTTP/1.1 401 "), status_line  # the body reached Django
    wait_for_held(busy_server, 0)
    with socket.create_connection(("127.0.0.1", busy_server.port), timeout=10) as third:
        third.sendall(head(f"Content-Length: {LIMIT}", "Connection: close") + b"x" * LIMIT)
        assert read_response(third)[0].startswith("HTTP/1.1 401 ")


def test_serve_holds_nothing_for_a_body_announced_and_not_sent(busy_server):
    """Clients that announce large bodies and send nothing cannot hold the budget."""
    idle = [socket.create_connection(("127.0.0.1", busy_server.port), timeout=10) for _ in range(3)]
    try:
        for sock in idle:
            sock.sendall(head(f"Content-Length: {LIMIT}"))
        with socket.create_connection(("127.0.0.1", busy_server.port), timeout=10) as sending:
            sending.sendall(head(f"Content-Length: {LIMIT}", "Connection: close") + b"x" * LIMIT)
            assert read_response(sending)[0].startswith("HTTP/1.1 401 ")
    finally:
        for sock in idle:
            sock.close()


def test_serve_lets_go_of_a_body_whose_client_left(busy_server):
    with socket.create_connection(("127.0.0.1", busy_server.port), timeout=10) as gone:
        gone.sendall(head(f"Content-Length: {LIMIT}") + b"x" * 1000)
        wait_for_held(busy_server, 1000)
    wait_for_held(busy_server, 0)

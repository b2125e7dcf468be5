"""Requests the server cannot parse as HTTP/1.1 (`python -m mamba_site.serve`, a real
process) are answered as JSON like every other error: 400, or 431 for headers too large."""

import json
import socket

import pytest

from tests.deploy.test_body_limit import REQUEST_ID, head, read_response, serving


@pytest.fixture(scope="module")
def server(deploy_database_url, fake_upstream, tmp_path_factory):
    with serving(deploy_database_url, fake_upstream, tmp_path_factory, "bad-http") as server:
        yield server


def send(server, data):
    """`data` sent whole; the answer, read until the server closes."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(data)
        status_line, headers, body = read_response(sock)
    return status_line, headers, json.loads(body)


def refused(server, route, status):
    _, text = server.get("/metrics")
    line = f'mamba_http_requests_total{{method="POST",route="{route}",status="{status}"}} '
    found = [row for row in text.decode().splitlines() if row.startswith(line)]
    return float(found[0].removeprefix(line)) if found else 0.0


def assert_error(answer, status_line, code, detail, request_id=REQUEST_ID):
    got_status, headers, payload = answer
    assert got_status == status_line
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert payload == {"detail": detail, "code": code, "request_id": request_id}
    assert headers["x-request-id"] == request_id


def test_serve_answers_a_request_line_that_is_not_http_with_json(server):
    answer = send(server, b"NOT AN HTTP REQUEST LINE AT ALL\r\n\r\n")
    assert_error(
        answer,
        "HTTP/1.1 400 Bad Request",
        "INVALID_REQUEST",
        "The request is not valid HTTP/1.1.",
        request_id=answer[2]["request_id"],  # no header was read: a new id
    )


def test_serve_answers_a_malformed_header_with_json_and_the_request_id(server):
    before = refused(server, "/chat", 400)
    answer = send(server, head("Content-Length: 2", "this line has no colon") + b"{}")
    assert_error(
        answer, "HTTP/1.1 400 Bad Request", "INVALID_REQUEST", "The request is not valid HTTP/1.1."
    )
    assert refused(server, "/chat", 400) == before + 1


def test_serve_answers_a_malformed_chunked_body_with_json(server):
    answer = send(server, head("Transfer-Encoding: chunked") + b"zz\r\nnot a chunk\r\n")
    assert_error(
        answer, "HTTP/1.1 400 Bad Request", "INVALID_REQUEST", "The request is not valid HTTP/1.1."
    )


@pytest.mark.parametrize(
    ("headers", "detail", "id_read"),
    [
        (
            [f"X-Many-{n}: {n}" for n in range(600)],
            "The request has more than 500 headers.",
            True,
        ),
        (
            [f"X-Long-{n}: {'a' * 4000}" for n in range(5)],
            "The request's line and headers are longer than 16384 bytes.",
            True,
        ),
        (
            # Twisted takes a header in once the next line is in: the id's never is.
            [f"X-Line: {'a' * 20000}"],
            "A line of the request's head is longer than 16384 bytes.",
            False,
        ),
    ],
    ids=["count", "total", "line"],
)
def test_serve_answers_431_to_headers_over_its_limits(server, headers, detail, id_read):
    answer = send(server, head(*headers))
    assert_error(
        answer,
        "HTTP/1.1 431 Request Header Fields Too Large",
        "HEADERS_TOO_LARGE",
        detail,
        request_id=REQUEST_ID if id_read else answer[2]["request_id"],
    )
    assert id_read or answer[2]["request_id"] != REQUEST_ID


def test_serve_still_answers_a_valid_request_after_refusing_others(server):
    send(server, b"NOT HTTP\r\n\r\n")
    status, _ = server.get("/health/live")
    assert status == 200

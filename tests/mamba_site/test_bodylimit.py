import json
import uuid

import pytest
from asgiref.testing import ApplicationCommunicator
from django.conf import settings

from mamba_site import metrics
from mamba_site.bodylimit import BodyLimit

LIMIT = 100
CLIENT_ID = "0b7e1c52-8f6a-4b8e-9d55-3f1f2f0f4a11"


class FakeApp:
    """Reads the whole body, then answers 200; records what it received."""

    def __init__(self, respond_first=False):
        self.called = False
        self.received = b""
        self.disconnected = False
        self.respond_first = respond_first

    async def __call__(self, scope, receive, send):
        self.called = True
        if self.respond_first:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                break
            self.received += message.get("body", b"")
            if not message.get("more_body", False):
                break
        if not self.respond_first:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok", "more_body": False})


class Client:
    """Drives one request through an ASGI app: the body in the given chunks."""

    def __init__(self, chunks):
        self.chunks = list(chunks)
        self.reads = 0
        self.sent = []

    async def receive(self):
        self.reads += 1
        if not self.chunks:
            return {"type": "http.disconnect"}
        body = self.chunks.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(self.chunks)}

    async def send(self, message):
        self.sent.append(message)

    @property
    def status(self):
        return self.sent[0]["status"]

    @property
    def headers(self):
        return {name.decode(): value.decode() for name, value in self.sent[0]["headers"]}

    def json(self):
        return json.loads(b"".join(m.get("body", b"") for m in self.sent[1:]))


def http_scope(headers=()):
    return {
        "type": "http",
        "method": "POST",
        "path": "/chat",
        "headers": [(name.encode(), value.encode()) for name, value in headers],
    }


async def call(app, headers=(), chunks=(b"",)):
    client = Client(chunks)
    await BodyLimit(app, max_body_bytes=LIMIT)(http_scope(headers), client.receive, client.send)
    return client


def assert_error(client, status, code):
    assert client.status == status
    assert client.headers["content-type"] == "application/json"
    body = client.json()
    assert body["code"] == code
    assert body["detail"]
    assert body["request_id"] == client.headers["x-request-id"]
    assert int(client.headers["content-length"]) == len(json.dumps(body, separators=(",", ":")))
    return body


async def test_body_limit_refuses_a_content_length_over_the_limit_before_reading():
    app = FakeApp()
    client = await call(app, [("content-length", str(LIMIT + 1))], [b"x" * (LIMIT + 1)])
    body = assert_error(client, 413, "PAYLOAD_TOO_LARGE")
    assert body["detail"] == f"The request body is larger than {LIMIT} bytes."
    assert not app.called
    assert client.reads == 0


def refused_count(status):
    return metrics.http_requests.labels("/chat", "POST", str(status))._value.get()


@pytest.mark.parametrize(
    ("headers", "chunks", "status"),
    [
        ([("content-length", str(LIMIT + 1))], [b"x"], 413),
        ([("content-length", "x")], [b"x"], 400),
        ([], [b"x" * LIMIT, b"x"], 413),  # chunked, cut at the limit
    ],
)
async def test_body_limit_counts_what_it_refuses_as_requests_of_their_route(
    headers, chunks, status
):
    before = refused_count(status)
    client = await call(FakeApp(), headers, chunks)
    assert client.status == status
    assert refused_count(status) == before + 1


@pytest.mark.parametrize("size", [0, LIMIT - 1, LIMIT])
async def test_body_limit_passes_a_content_length_up_to_the_limit(size):
    app = FakeApp()
    client = await call(app, [("content-length", str(size))], [b"x" * size])
    assert client.status == 200
    assert app.received == b"x" * size


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "", "10, 20", "0x10", "\uff11\uff10"])
async def test_body_limit_refuses_an_invalid_content_length(value):
    app = FakeApp()
    client = await call(app, [("content-length", value)])
    body = assert_error(client, 400, "INVALID_REQUEST")
    assert body["detail"] == "The Content-Length header is not a valid length."
    assert not app.called


async def test_body_limit_refuses_two_different_content_lengths():
    app = FakeApp()
    client = await call(app, [("content-length", "5"), ("content-length", "6")], [b"x" * 5])
    assert_error(client, 400, "INVALID_REQUEST")
    assert not app.called


async def test_body_limit_accepts_a_list_of_equal_content_lengths():
    app = FakeApp()
    client = await call(app, [("content-length", "5, 5")], [b"x" * 5])
    assert client.status == 200


async def test_body_limit_cuts_a_chunked_body_at_the_limit():
    app = FakeApp()
    client = await call(app, chunks=[b"x" * 60, b"x" * 40, b"x" * 60, b"x" * 60])
    assert_error(client, 413, "PAYLOAD_TOO_LARGE")
    assert app.received == b"x" * 100
    assert app.disconnected
    assert client.reads == 3  # nothing read after the chunk that passed the limit
    assert len(client.sent) == 2  # the app's own response after the cut is dropped


async def test_body_limit_passes_a_chunked_body_of_exactly_the_limit():
    app = FakeApp()
    client = await call(app, chunks=[b"x" * 60, b"x" * 40])
    assert client.status == 200
    assert app.received == b"x" * 100


async def test_body_limit_only_stops_the_body_once_the_response_has_started():
    app = FakeApp(respond_first=True)
    client = await call(app, chunks=[b"x" * 60, b"x" * 60])
    assert client.status == 200
    assert app.received == b"x" * 60
    assert app.disconnected
    assert [m["type"] for m in client.sent] == ["http.response.start", "http.response.body"]


async def test_body_limit_echoes_a_uuid_request_id():
    headers = [("content-length", "1000"), ("x-request-id", CLIENT_ID.upper())]
    client = await call(FakeApp(), headers)
    assert assert_error(client, 413, "PAYLOAD_TOO_LARGE")["request_id"] == CLIENT_ID


async def test_body_limit_makes_a_request_id_for_one_that_is_not_a_uuid():
    client = await call(FakeApp(), [("content-length", "1000"), ("x-request-id", "<script>")])
    request_id = assert_error(client, 413, "PAYLOAD_TOO_LARGE")["request_id"]
    assert uuid.UUID(request_id).version == 4


async def test_body_limit_passes_other_scope_types():
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["type"])

    await BodyLimit(app, max_body_bytes=LIMIT)({"type": "lifespan"}, None, None)
    assert seen == ["lifespan"]


# -- Through the real stack: mamba_site.asgi.application --------------------------------------
# (`async_client` starts below asgi.py, at Django's handler, so it cannot show this layer.)


async def asgi_request(path, headers, chunks):
    """One request through the project's ASGI application; the response's status, headers and
    parsed JSON body."""
    from mamba_site.asgi import application

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"localhost"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    communicator = ApplicationCommunicator(application, scope)
    for index, chunk in enumerate(chunks):
        more = index < len(chunks) - 1
        await communicator.send_input({"type": "http.request", "body": chunk, "more_body": more})
    start = await communicator.receive_output(timeout=10)
    body = b""
    while True:
        message = await communicator.receive_output(timeout=10)
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    await communicator.wait(timeout=10)
    headers = {name.decode().lower(): value.decode() for name, value in start["headers"]}
    return start["status"], headers, json.loads(body)


def json_headers(length=None):
    headers = [(b"content-type", b"application/json"), (b"x-request-id", CLIENT_ID.encode())]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    return headers


@pytest.mark.django_db(transaction=True)
async def test_asgi_application_refuses_a_declared_large_body_before_auth(api_key_mode):
    over = settings.CHAT_MAX_BODY_BYTES + 1
    status, headers, body = await asgi_request("/chat", json_headers(over), [b"{}"])
    assert status == 413
    assert body["code"] == "PAYLOAD_TOO_LARGE"
    assert body["request_id"] == headers["x-request-id"] == CLIENT_ID


@pytest.mark.django_db(transaction=True)
async def test_asgi_application_refuses_a_large_chunked_body_before_auth(api_key_mode):
    chunk = b"x" * (1024 * 1024)
    chunks = [chunk] * (settings.CHAT_MAX_BODY_BYTES // len(chunk)) + [b"x"]
    status, headers, body = await asgi_request("/chat", json_headers(), chunks)
    assert status == 413
    assert body["code"] == "PAYLOAD_TOO_LARGE"
    assert body["request_id"] == headers["x-request-id"] == CLIENT_ID


@pytest.mark.django_db(transaction=True)
async def test_asgi_application_authenticates_a_body_within_the_limit(api_key_mode):
    status, _headers, body = await asgi_request("/chat", json_headers(2), [b"{}"])
    assert status == 401
    assert body["code"] == "AUTH_REQUIRED"


async def test_body_limit_leaves_bodies_to_mamba_server_when_it_caps_them_as_tightly():
    app = FakeApp()
    scope = http_scope([("content-length", "200")])
    scope["extensions"] = {"mamba.server": {"inbox": None, "max_body_bytes": LIMIT}}
    client = Client([b"x" * 200])  # what the server would never pass on: shows no second count
    await BodyLimit(app, max_body_bytes=LIMIT)(scope, client.receive, client.send)
    assert app.called
    assert client.status == 200


async def test_body_limit_counts_bodies_a_server_caps_more_loosely():
    app = FakeApp()
    scope = http_scope([("content-length", "200")])
    scope["extensions"] = {"mamba.server": {"inbox": None, "max_body_bytes": LIMIT * 10}}
    client = Client([b"x" * 200])
    await BodyLimit(app, max_body_bytes=LIMIT)(scope, client.receive, client.send)
    assert not app.called
    assert client.status == 413

"""The chat stream through the project's ASGI application, as daphne runs it: the body is
written through the ASGI `send` by the stream itself, one message per batch of events."""

import asyncio

import httpx
import orjson
import pytest
from asgiref.testing import ApplicationCommunicator

from tests.chat.conftest import (
    API_APPS,
    UPSTREAM_URL,
    chunk,
    parse_sse,
    streaming,
    text_reply,
    user,
)

pytestmark = [
    pytest.mark.django_db(transaction=True, available_apps=API_APPS),
    pytest.mark.usefixtures("main_agent"),
]


def chat_scope():
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/chat",
        "raw_path": b"/chat",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"localhost"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def start_chat(text="Hi", scope=None):
    from mamba_site.asgi import application

    communicator = ApplicationCommunicator(application, scope or chat_scope())
    body = orjson.dumps({"messages": [user(text)]})
    await communicator.send_input({"type": "http.request", "body": body, "more_body": False})
    return communicator


async def test_chat_body_is_written_in_one_message_per_batch_of_events(respx_mock):
    # The whole upstream reply arrives in one read: one batch of content events.
    respx_mock.post(UPSTREAM_URL).mock(return_value=streaming(text_reply("Hel", "lo", "!")))
    communicator = await start_chat()
    start = await communicator.receive_output(timeout=10)
    assert start["type"] == "http.response.start"
    assert start["status"] == 200
    headers = dict(start["headers"])
    assert headers[b"Content-Type"] == b"text/event-stream"
    assert b"gateway;dur=" in headers[b"Server-Timing"]
    messages = []
    while True:
        message = await communicator.receive_output(timeout=10)
        messages.append(message)
        if not message.get("more_body", False):
            break
    await communicator.wait(timeout=10)
    assert messages[-1] == {"type": "http.response.body"}  # the end, as Django sends it
    writes = [parse_sse(message["body"]) for message in messages[:-1]]
    # Every message holds whole events; the three batches: the start, the read, the end.
    assert [[e if e == "[DONE]" else e["type"] for e in write] for write in writes] == [
        ["start", "start-step"],
        ["text-start", "text-delta", "text-delta", "text-delta"],
        ["text-end", "finish-step", "finish", "[DONE]"],
    ]
    assert "".join(e["delta"] for e in writes[1] if e["type"] == "text-delta") == "Hello!"


@pytest.mark.parametrize("server", ["any", "mamba"])
async def test_chat_client_leaving_mid_stream_closes_the_upstream_and_ends_the_request(
    respx_mock, server
):
    """Under any server a task listens for `http.disconnect`; under `mamba_site.server` (its
    scope extension) nothing listens, and the server calls `Inbox.leave()` instead."""
    from mamba_site.handler import Inbox

    closed = asyncio.Event()

    class QuietBody(httpx.AsyncByteStream):
        async def __aiter__(self):
            yield b"data: " + orjson.dumps(chunk({"role": "assistant", "content": "one "}))
            yield b"\n\n"
            await asyncio.sleep(30)  # the model goes quiet
            yield b""

        async def aclose(self):
            closed.set()

    quiet = httpx.Response(200, stream=QuietBody(), headers={"content-type": "text/event-stream"})
    respx_mock.post(UPSTREAM_URL).mock(return_value=quiet)
    scope, inbox = chat_scope(), Inbox()
    if server == "mamba":
        scope["extensions"] = {"mamba.server": {"inbox": inbox, "max_body_bytes": 1 << 20}}
    communicator = await start_chat(scope=scope)
    assert (await communicator.receive_output(timeout=10))["type"] == "http.response.start"
    seen = b""
    while b"text-delta" not in seen:
        seen += (await communicator.receive_output(timeout=10))["body"]
    if server == "mamba":
        assert inbox.watcher is not None  # the handler's task, while the response runs
        inbox.leave()
    else:
        await communicator.send_input({"type": "http.disconnect"})
    await asyncio.wait_for(closed.wait(), 2)
    await communicator.wait(timeout=5)  # the application returned: nothing left running
    assert inbox.watcher is None


async def test_chat_under_mamba_server_is_not_cancelled_once_its_response_is_whole(respx_mock):
    from mamba_site.handler import Inbox

    respx_mock.post(UPSTREAM_URL).mock(return_value=streaming(text_reply("ok")))
    scope, inbox = chat_scope(), Inbox()
    scope["extensions"] = {"mamba.server": {"inbox": inbox, "max_body_bytes": 1 << 20}}
    communicator = await start_chat(scope=scope)
    assert (await communicator.receive_output(timeout=10))["status"] == 200
    body = b""
    while (message := await communicator.receive_output(timeout=10)).get("more_body", False):
        body += message["body"]
    await communicator.wait(timeout=5)
    assert body.endswith(b"data: [DONE]\n\n")
    assert inbox.watcher is None  # a leave() now (the connection closing) cancels nothing


async def test_chat_under_mamba_server_hands_its_body_parts_to_the_server_write(respx_mock):
    """Under `mamba_site.server` a stream's parts go to the server's `write` (no ASGI message
    per part); the start and the end are still ASGI messages."""
    from mamba_site.handler import Inbox

    respx_mock.post(UPSTREAM_URL).mock(return_value=streaming(text_reply("ok")))
    scope, inbox, parts = chat_scope(), Inbox(), []
    scope["extensions"] = {
        "mamba.server": {"inbox": inbox, "max_body_bytes": 1 << 20, "write": parts.append}
    }
    communicator = await start_chat(scope=scope)
    assert (await communicator.receive_output(timeout=10))["status"] == 200
    end = await communicator.receive_output(timeout=10)
    await communicator.wait(timeout=5)
    assert end == {"type": "http.response.body"}  # no part came as a message
    body = b"".join(parts)
    assert body.startswith(b"data: {")
    assert b'"type":"text-delta"' in body
    assert body.endswith(b"data: [DONE]\n\n")


async def test_chat_under_mamba_server_keeps_one_copy_of_the_request_headers(respx_mock):
    """The server's list of the request's headers (the scope's) is emptied once the view has
    answered: Django's `META` holds them, and a stream keeps its scope for minutes."""
    from mamba_site.handler import Inbox

    respx_mock.post(UPSTREAM_URL).mock(return_value=streaming(text_reply("ok")))
    scope, inbox = chat_scope(), Inbox()
    scope["extensions"] = {"mamba.server": {"inbox": inbox, "max_body_bytes": 1 << 20}}
    headers = scope["headers"]
    communicator = await start_chat(scope=scope)
    assert (await communicator.receive_output(timeout=10))["status"] == 200
    assert headers == []
    while (await communicator.receive_output(timeout=10)).get("more_body", False):
        pass
    await communicator.wait(timeout=5)


async def test_chat_request_body_is_released_while_the_stream_runs(respx_mock, monkeypatch):
    from mamba_site.handler import ApiASGIHandler

    respx_mock.post(UPSTREAM_URL).mock(return_value=streaming(text_reply("ok")))
    seen = []
    send_response = ApiASGIHandler.send_response

    async def noting(self, response, send):
        # The request, as the response refers to it (Django closes it with the response).
        requests = [closer.__self__ for closer in response._resource_closers]
        seen.append(([request for request in requests if hasattr(request, "META")], response))
        await send_response(self, response, send)

    monkeypatch.setattr(ApiASGIHandler, "send_response", noting)
    communicator = await start_chat("x " * 50_000)  # a long conversation: 100 kB
    start = await communicator.receive_output(timeout=10)
    assert start["status"] == 200
    while (await communicator.receive_output(timeout=10)).get("more_body", False):
        pass
    await communicator.wait(timeout=10)
    [([request], response)] = seen
    assert "_body" not in request.__dict__  # not kept for as long as the stream runs
    assert "_stream" not in request.__dict__
    assert "headers" not in request.__dict__  # the copy the middleware read
    assert request.headers["Content-Type"] == "application/json"  # made again when asked
    # The headers went out with the start; the response kept for the stream no longer has them.
    assert dict(start["headers"])[b"Content-Type"] == b"text/event-stream"
    assert not response.headers


async def test_chat_under_mamba_server_whose_client_left_before_it_ran_does_not_start(respx_mock):
    """The connection may be lost between the request's arrival and the handler's first step:
    no view runs, no upstream is called, the application returns."""
    from mamba_site.handler import Inbox

    route = respx_mock.post(UPSTREAM_URL).mock(return_value=streaming(text_reply("ok")))
    scope, inbox = chat_scope(), Inbox()
    scope["extensions"] = {"mamba.server": {"inbox": inbox, "max_body_bytes": 1 << 20}}
    inbox.leave()
    communicator = await start_chat(scope=scope)
    await communicator.wait(timeout=5)
    assert not route.called
    assert await communicator.receive_nothing()

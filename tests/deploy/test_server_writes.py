"""What the server writes, as a client reads it: mamba_site.server sends each callback's
writes at once while nothing is queued, and queues behind what a slow client has not taken."""

import asyncio
import json
import socket
import time
from types import SimpleNamespace

import httpx

CHUNKS = 2000  # ~200 kB of SSE, read through a 4 kB receive window


def test_a_client_that_stops_reading_still_gets_every_byte_in_order(serve):
    server = serve(grace_seconds=10)
    body = {"messages": [{"role": "user", "content": f"bench:{CHUNKS}"}]}
    transport = httpx.HTTPTransport(socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)])
    with (
        httpx.Client(timeout=30, transport=transport) as client,
        client.stream("POST", server.url + "/chat", json=body) as response,
    ):
        assert response.status_code == 200
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")
        time.sleep(1.5)  # the server writes meanwhile, into full buffers
        events = [line for line in lines if line]
    assert events[-1] == "data: [DONE]"
    parsed = [json.loads(line.removeprefix("data: ")) for line in events[:-1]]
    deltas = [event for event in parsed if event["type"] == "text-delta"]
    assert len(deltas) == CHUNKS
    assert {event["delta"] for event in deltas} == {"token "}
    assert parsed[-1]["type"] == "finish"
    assert parsed[-1]["finishReason"] == "stop"


class FakeReactor:
    """What a Twisted connection asks of its reactor, noted instead of done."""

    def __init__(self):
        self.writers = set()
        self.readers = set()

    def addReader(self, reader):
        self.readers.add(reader)

    def removeReader(self, reader):
        self.readers.discard(reader)

    def addWriter(self, writer):
        self.writers.add(writer)

    def removeWriter(self, writer):
        self.writers.discard(writer)

    def callLater(self, delay, call, *args):
        asyncio.get_running_loop().call_later(delay, call, *args)


def connection_pair():
    """An `ImmediateWriteServer` on one end of a socket pair with a small send buffer."""
    from twisted.internet.protocol import Protocol

    from mamba_site.server import ImmediateWriteServer

    ours, theirs = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    ours.setblocking(False)
    reactor = FakeReactor()
    transport = ImmediateWriteServer(ours, Protocol(), ("127.0.0.1", 1), None, 1, reactor)
    return transport, theirs, reactor


def read_all(sock, timeout=0.2):
    sock.settimeout(timeout)
    data = b""
    try:
        while part := sock.recv(65536):
            data += part
    except TimeoutError:
        pass
    return data


async def test_writes_of_one_callback_go_out_in_one_send_without_the_reactor():
    transport, theirs, reactor = connection_pair()
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    transport.writeSequence([b"5\r\n", b"hello", b"\r\n"])
    transport.write(b"0\r\n\r\n")
    await asyncio.sleep(0)  # the callback is over: the gathered writes are sent
    assert read_all(theirs) == b"HTTP/1.1 200 OK\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    assert not reactor.writers  # never asked to watch the socket for writing
    theirs.close()


async def test_a_part_sent_now_goes_out_at_once_and_never_ahead_of_what_waits():
    transport, theirs, reactor = connection_pair()
    transport.send_now([b"5\r\n", b"first", b"\r\n"])
    assert read_all(theirs) == b"5\r\nfirst\r\n"  # sent in the call, no loop turn
    transport.write(b"gathered ")
    transport.send_now([b"after"])  # behind what this callback gathered
    assert read_all(theirs) == b""
    await asyncio.sleep(0)
    assert read_all(theirs) == b"gathered after"
    parts = [bytes([65 + index % 26]) * 3000 for index in range(100)]
    for part in parts:
        transport.send_now([part])  # until the socket is full, then queued
    assert reactor.writers == {transport}
    transport.send_now([b"last"])  # behind the queue
    received = b""
    while not received.endswith(b"last"):
        received += read_all(theirs, timeout=0.05)
        transport.doWrite()
    assert received == b"".join(parts) + b"last"
    assert not reactor.writers
    theirs.close()


async def test_what_a_full_socket_does_not_take_is_queued_and_later_writes_wait_behind_it():
    transport, theirs, reactor = connection_pair()
    parts = [bytes([65 + index % 26]) * 3000 for index in range(200)]  # 600 kB
    expected = b"".join(parts)
    for part in parts[:100]:
        transport.write(part)
    await asyncio.sleep(0)  # sent, until the socket is full; the rest is queued
    assert reactor.writers == {transport}  # Twisted sends the rest when it is writable
    for part in parts[100:]:
        transport.write(part)  # behind the queue, never ahead of it
        await asyncio.sleep(0)
    received = b""
    while len(received) < len(expected):
        received += read_all(theirs, timeout=0.05)
        transport.doWrite()  # what the reactor does once the socket takes more
    assert received == expected
    assert not reactor.writers  # all sent: no longer watched
    theirs.close()


async def test_closing_sends_what_was_gathered_first():
    transport, theirs, _ = connection_pair()
    transport.write(b"last words")
    transport.loseConnection()  # before the gathered write was sent
    assert transport.disconnecting
    transport.doWrite()  # the reactor finds the socket writable: queued bytes, then close
    await asyncio.sleep(0)
    assert read_all(theirs) == b"last words"
    theirs.close()


async def test_aborting_drops_what_was_gathered():
    transport, theirs, _ = connection_pair()
    transport.write(b"never sent")
    transport.abortConnection()
    await asyncio.sleep(0)
    assert read_all(theirs) == b""
    theirs.close()


def started_request(method):
    """A `BodyLimitedRequest` on Twisted's dummy channel, its response started; and what its
    channel's transport was given."""
    from twisted.web.test.requesthelper import DummyChannel

    from mamba_site.server import BodyLimitedRequest

    channel = DummyChannel()
    server = SimpleNamespace(
        max_body_bytes=1000,
        server_name=None,
        protocol_connected=lambda request: None,
        protocol_disconnected=lambda request: None,
        log_action=lambda *details: None,
    )
    channel.factory = SimpleNamespace(server=server, log=lambda request: None)
    request = BodyLimitedRequest(channel)
    request.clientproto, request.method = b"HTTP/1.1", method
    start = {"type": "http.response.start", "status": 200, "headers": [(b"x-custom", b"yes")]}
    request.handle_reply(start)
    return request, channel.transport.written


def test_the_head_is_written_at_the_start_and_its_headers_are_not_kept():
    """A stream keeps its request for minutes, and may wait long on its model before the
    first part of its body: the head goes out with the response's start, and Twisted's copy
    of the headers goes with it."""
    streamed, written = started_request(b"POST")
    head = written.getvalue().lower()
    assert head.startswith(b"http/1.1 200 ok\r\n")
    assert b"x-custom: yes" in head
    assert b"transfer-encoding: chunked" in head
    assert not list(streamed.responseHeaders.getAllRawHeaders())
    streamed.handle_reply({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
    assert written.getvalue()[len(head) :] == b"9\r\ndata: 1\n\n\r\n"  # the part, chunked
    streamed.handle_reply({"type": "http.response.body", "body": b"data: 2\n\n"})
    assert written.getvalue().endswith(b"9\r\ndata: 2\n\n\r\n0\r\n\r\n")  # and the end
    assert streamed.finished

    # A HEAD answer keeps Twisted's way: the head with the first part, and no body.
    headed, written = started_request(b"HEAD")
    assert written.getvalue() == b""
    headed.handle_reply({"type": "http.response.body", "body": b"ignored", "more_body": True})
    assert b"x-custom: yes" in written.getvalue().lower()
    assert b"ignored" not in written.getvalue()


def test_a_part_handed_to_the_request_directly_is_written_as_a_message_would_be():
    """`write_part` (the handler's way under this server) writes what a body message with
    `more_body` would: a chunk after the head, nothing for HEAD or once finished."""
    streamed, written = started_request(b"POST")
    head = written.getvalue()
    streamed.write_part(b"data: 1\n\n")
    streamed.write_part(b"")  # nothing to send, nothing sent
    assert written.getvalue()[len(head) :] == b"9\r\ndata: 1\n\n\r\n"
    assert streamed.sentLength == 9
    streamed.handle_reply({"type": "http.response.body"})
    assert written.getvalue().endswith(b"\r\n0\r\n\r\n")
    streamed.write_part(b"too late")  # finished: dropped, as daphne drops such a message
    assert b"too late" not in written.getvalue()

    headed, written = started_request(b"HEAD")
    headed.write_part(b"ignored")
    assert b"x-custom: yes" in written.getvalue().lower()
    assert b"ignored" not in written.getvalue()


def test_twisted_formats_no_access_line_of_its_own():
    """Mamba's access log is `mamba.access`; Twisted's combined-format line went nowhere."""
    from mamba_site.server import BodyLimitedHTTPFactory

    factory = BodyLimitedHTTPFactory(SimpleNamespace())
    formatted = []
    factory._logFormatter = lambda timestamp, request: formatted.append(request) or ""
    factory.startFactory()
    try:
        factory.log(SimpleNamespace())
    finally:
        factory.stopFactory()
    assert formatted == []


async def test_the_connection_asks_its_socket_for_its_address_once():
    from twisted.internet.protocol import Protocol

    from mamba_site.server import ImmediateWriteServer

    with socket.create_server(("127.0.0.1", 0)) as listening:
        port = listening.getsockname()[1]
        theirs = socket.create_connection(("127.0.0.1", port))
        ours, _ = listening.accept()
    transport = ImmediateWriteServer(ours, Protocol(), ("127.0.0.1", 1), None, 1, FakeReactor())
    try:
        first = transport.getHost()
        assert first.port == port
        transport.socket = None  # a second question to the socket would fail
        assert transport.getHost() is first
    finally:
        ours.close()
        theirs.close()

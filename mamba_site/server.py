"""The daphne server `python -m mamba_site.serve` runs: a graceful drain on SIGTERM, a
capped request body, deadlines to receive a request and JSON answers to what Twisted refuses.
Imported only once the event loop policy is chosen (daphne makes its loop when this module
imports it)."""

# Plain daphne stops its reactor on SIGTERM, and before the reactor stops it cancels every
# running application instance: streams in flight are cut at once. Here SIGTERM (or SIGINT)
# instead stops listening (new connections are refused), closes idle kept-alive connections,
# lets active requests finish for up to SERVER_SHUTDOWN_GRACE_SECONDS, then stops; a second
# signal stops at once. What is still running at the limit is cancelled, as daphne does.
#
# daphne (twisted) reads a whole request body, into a temporary file past 100 kB, before it
# calls the application, so the application's own limit (mamba_site.bodylimit) comes too late
# to protect memory or /tmp. Here the body is capped while it arrives: a Content-Length over
# MAMBA_CHAT__MAX_BODY_BYTES is answered with the same JSON 413 as soon as the headers are in,
# a chunked body as soon as it passes the limit; what the client still sends is dropped.
#
# Twisted's only timeout is an idle one, reset by every byte; here a request's head and its
# body each have a deadline (`GuardedChannel`), answered 408 as the cap is answered 413. What
# Twisted cannot parse (a bare 400 from it, or a silent close) is answered 400 or 431 the same
# way.

import asyncio
import logging
import math
import os
import signal
import time
import weakref
from functools import partial
from io import BytesIO
from typing import Any

# daphne.server installs the asyncio reactor: it comes before `twisted.internet.reactor`.
from daphne.endpoints import build_endpoint_description_strings
from daphne.http_protocol import HTTPFactory, WebRequest
from daphne.server import Server
from daphne.utils import import_by_path
from django.conf import settings
from twisted.internet import defer, reactor, tcp
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web.http import NO_BODY_CODES, HTTPChannel
from twisted.web.http_headers import Headers

from mamba_site import lifecycle, metrics
from mamba_site.bodylimit import body_too_large, error_parts, request_id_in
from mamba_site.errors import ApiError, HeadersTooLarge, InvalidRequest, RequestTimeout, ServerBusy
from mamba_site.handler import Inbox
from mamba_site.logs import request_id_from

logger = logging.getLogger("mamba.serve")

APPLICATION = "mamba_site.asgi:application"
DRAIN_POLL_SECONDS = 0.05
LISTEN_BACKLOG = 1024
# The shutdown hooks get at least this long, also when the grace is already over.
HOOKS_MIN_SECONDS = 1.0
# After a 413, how long the rest of the body is read and dropped before the connection is cut.
LINGER_SECONDS = 5.0
# The status lines of the answers the server gives before the application sees a request.
REFUSAL_REASONS = {
    400: b"Bad Request",
    408: b"Request Timeout",
    413: b"Payload Too Large",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}


class BodyBudget:
    """The request bodies one server process holds at once (received and not answered yet),
    at most `limit` bytes (0: no limit): many large bodies arriving together must not exhaust
    the process's memory before any is authenticated (a body is read whole before Django
    runs). Bytes count as they arrive, not as a Content-Length announces them, so clients that
    announce large bodies and send nothing hold nothing."""

    __slots__ = ("held", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, size: int) -> bool:
        if self.limit and self.held + size > self.limit:
            return False
        self.held += size
        return True

    def give_back(self, size: int) -> None:
        self.held -= size


def answer_and_close(
    channel: Any, error: ApiError, request_id: str, reason: str
) -> asyncio.TimerHandle:
    """Answer `error` on `channel` before the application has seen the request, and close the
    connection once the client has had time to read it; the timer that will cut it."""
    answer(channel, error, request_id, reason)
    # Half-close: the client reads the answer while it ends its request, which is read and
    # dropped; closing at once would reset the connection before it has read the answer.
    channel.transport.loseWriteConnection()
    loop = asyncio.get_running_loop()
    return loop.call_later(LINGER_SECONDS, channel.transport.abortConnection)


def answer(channel: Any, error: ApiError, request_id: str, reason: str) -> None:
    """Write `error` as the JSON answer to the request arriving on `channel` (which is not
    kept alive), logged and counted."""
    response_headers, body = error_parts(error, request_id)
    status_line = b"HTTP/1.1 %d %s" % (error.status, REFUSAL_REASONS[error.status])
    head = [status_line, *(b"%s: %s" % h for h in response_headers)]
    head.append(b"connection: close")
    channel.persistent = False
    channel.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
    logger.info("Refused a request: %s", reason, extra={"request_id": request_id})
    # Counted as the access log counts the requests Django answers; the request line is
    # still the channel's (the request gets it once its body has arrived).
    method = getattr(channel, "_command", b"") or b"-"
    target = getattr(channel, "_path", b"") or b"/"
    path = target.split(b"?", 1)[0].decode("latin-1")
    metrics.count_refused(method.decode("latin-1"), path, error.status)


class BodyLimitedRequest(WebRequest):  # type: ignore[misc]
    """daphne's request, with its body capped at the server's `max_body_bytes` as it arrives
    and kept in memory (the limit bounds it, and the server's `BodyBudget` all bodies held
    at once), never in a temporary file."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Twisted would also parse form bodies into `args`, a second copy daphne never reads.
        super().__init__(*args, parsePOSTFormSubmission=False, **kwargs)
        self.body_received = 0
        self.body_held = 0  # of the server's budget: what arrived, until the response starts
        self.refused = False
        self.linger: asyncio.TimerHandle | None = None

    def gotLength(self, length: int | None) -> None:
        self.content = BytesIO()
        limit = self.server.max_body_bytes
        if length is not None and length > limit:
            self.refuse(body_too_large(limit), f"Content-Length {length} over {limit}")

    def handleContentChunk(self, data: bytes) -> None:
        if self.refused:
            return
        self.body_received += len(data)
        limit = self.server.max_body_bytes
        if self.body_received > limit:
            self.refuse(body_too_large(limit), f"body over {limit} bytes")
            return
        if self.body_received > self.body_held and not self.hold(
            self.body_received - self.body_held
        ):
            self.refuse_busy()
            return
        self.content.write(data)

    def hold(self, size: int) -> bool:
        if not self.server.bodies.take(size):
            return False
        self.body_held += size
        return True

    def let_go(self) -> None:
        """The body no longer counts: the response has started, or the request is over."""
        if self.body_held:
            self.server.bodies.give_back(self.body_held)
            self.body_held = 0

    def refuse_busy(self) -> None:
        held, limit = self.server.bodies.held, self.server.bodies.limit
        self.refuse(ServerBusy(), f"{held} bytes of bodies held, up to {limit}")

    def refuse(self, error: ApiError, reason: str) -> None:
        """Answers `error` now and drops the rest of the body."""
        self.give_up()
        # Twisted answers `Expect: 100-continue` right after this; the final answer is given.
        self.requestHeaders.removeHeader(b"Expect")
        self.linger = answer_and_close(self.channel, error, self.request_id(), reason)

    def give_up(self) -> None:
        """The request is answered before its body is in: what it holds of it is let go."""
        self.refused = True
        self.let_go()
        self.content = BytesIO()

    def request_id(self) -> str:
        """The client's request id (`X-Request-ID`) among the headers received so far, else
        a new one."""
        headers = [
            (name.lower(), value)
            for name, values in self.requestHeaders.getAllRawHeaders()
            for value in values
        ]
        return request_id_in(headers)

    def process(self) -> Any:
        if self.refused:
            # The whole body has arrived (and was dropped): nothing is left to wait for.
            self.channel.loseConnection()
            return None
        result = super().process()
        # daphne has queued the body for the application and copied the headers into its
        # scope by now; these copies would otherwise live as long as the response (a stream
        # may take minutes). Twisted reads the request's headers no more.
        self.content.close()
        self.requestHeaders = Headers()
        return result

    def handle_reply(self, message: dict[str, Any]) -> None:
        if (
            message["type"] == "http.response.body"
            and message.get("more_body", False)
            and self._response_started
            and not self.finished
            and self.channel is not None
        ):
            # A part of a streamed body, as daphne writes it, without its lookups through
            # `twisted.web.http`'s deprecation proxy and its debug line: this is per chunk.
            self.write(message.get("body", b""))
            return
        super().handle_reply(message)
        if message["type"] == "http.response.start":
            self.let_go()
        if (
            message["type"] == "http.response.start"
            and not self.finished
            and self.channel is not None
            and self.method != b"HEAD"
            and self.code not in NO_BODY_CODES
        ):
            # The head goes out now, not with the body's first part (in the same send when
            # that part follows in the same loop callback): a stream waiting on its model does
            # not keep the response's headers meanwhile, and the client knows its answer.
            self.write(b"")
            self.responseHeaders = Headers()

    def write_part(self, data: bytes) -> None:
        """A part of a streamed body, handed over by the handler directly (the extension
        `mamba.server`'s `write`): what an ASGI body message with `more_body` ends in, without
        the message, daphne's dispatch and Twisted's request layer, and sent at once when
        nothing waits before it. This is per chunk."""
        if self.finished or self._disconnected or self.channel is None:
            return  # gone: daphne drops the messages of a closed connection too
        if not (self.startedWriting and self.chunked):  # HEAD, no body, or no head out yet
            self.write(data)
            return
        self.sentLength += len(data)
        if data:
            parts = (b"%x\r\n" % len(data), data, b"\r\n")
            transport = self.channel.transport
            if isinstance(transport, ImmediateWriteServer):
                transport.send_now(parts)
            else:  # TLS, or another transport: Twisted's way
                transport.writeSequence(parts)

    def connectionLost(self, reason: Any) -> None:
        if self.linger is not None:
            self.linger.cancel()
        self.let_go()
        super().connectionLost(reason)
        # Lost before the response was complete (a finished request is no longer the
        # connection's): the client left. The handler's task is cancelled at once.
        if isinstance(self.application_queue, Inbox) and not self.finished:
            self.application_queue.leave()


class ImmediateWriteServer(tcp.Server):
    """Twisted's server connection, sending what it is given at the end of the current loop
    callback while nothing is queued.

    Twisted queues every write and sends it when the loop next reports the socket writable:
    each chunk of a stream cost two epoll changes (watch for writable, stop watching), a loop
    turn and Twisted's dispatch before its `send`. Here the writes of one callback (a
    response's headers, body and last chunk; a batch of events) are gathered and sent with
    one `send` once it returns. What the socket does not take (a slow client) is queued the
    usual way, and while anything is queued every later write waits behind it, so the order
    of bytes and Twisted's flow control are kept. A stream's parts (`send_now`) go out in the
    call itself when nothing is gathered or queued: one loop turn less per chunk. Closing
    first hands gathered bytes to Twisted's queue, which sends them before it closes."""

    _gathered: list[bytes] | None = None
    _host: Any = None

    def write(self, data: bytes) -> None:
        self.writeSequence((data,))

    def writeSequence(self, iovec: Any) -> None:
        if self._gathered is not None:
            self._gathered.extend(iovec)
        elif self._idle():
            self._gathered = list(iovec)
            asyncio.get_running_loop().call_soon(self._send_gathered)
        else:
            super().writeSequence(iovec)  # type: ignore[no-untyped-call]

    def send_now(self, iovec: Any) -> None:
        """`writeSequence`, but sent now rather than at the end of the loop callback when
        nothing is gathered or queued (a stream's part: it saves the loop a turn)."""
        if self._gathered is None and self._idle():
            self._send(b"".join(iovec))
        else:
            self.writeSequence(iovec)

    def loseConnection(self) -> None:
        self._queue_gathered()
        super().loseConnection()  # type: ignore[no-untyped-call]

    def loseWriteConnection(self) -> None:
        self._queue_gathered()
        super().loseWriteConnection()  # type: ignore[no-untyped-call]

    def abortConnection(self) -> None:
        self._gathered = None  # cut now: nothing more is sent
        super().abortConnection()  # type: ignore[no-untyped-call]

    def getHost(self) -> Any:
        """This end's address, asked once per connection, not once per request (daphne asks
        for every request, and each time Twisted asked the socket)."""
        if self._host is None:
            self._host = super().getHost()  # type: ignore[no-untyped-call]
        return self._host

    def _idle(self) -> bool:
        """Connected, not closing, not TLS, and nothing queued."""
        return bool(
            self.connected
            and not self.TLS
            and not self.disconnecting
            and not self._writeDisconnected
            and not self._writeDisconnecting
            and not self._tempDataLen
            and self.offset >= len(self.dataBuffer)
        )

    def _queue_gathered(self) -> None:
        gathered, self._gathered = self._gathered, None
        if gathered:
            super().writeSequence(gathered)  # type: ignore[no-untyped-call]

    def _send_gathered(self) -> None:
        if self._gathered is None:  # handed to Twisted's queue meanwhile
            return
        if not self._idle():
            self._queue_gathered()
            return
        data = b"".join(self._gathered)
        self._gathered = None
        self._send(data)

    def _send(self, data: bytes) -> None:
        try:
            sent = self.socket.send(data)
        except OSError:  # full, or broken: the queued write finds out, as it would have
            sent = 0
        if sent < len(data):
            super().writeSequence([data[sent:]])  # type: ignore[no-untyped-call]


class GuardedChannel(HTTPChannel):
    """Twisted's HTTP/1.1 channel, answering what it refuses as the application would.

    - Deadlines to receive each request: its head within `head_seconds` of its first byte,
      its body within `body_seconds` of its head, else `408 REQUEST_TIMEOUT` and the
      connection closed. Twisted's own timeout is an idle one, reset by every byte: a client
      sending a byte at a time held a connection, and what it had sent of a body, for as long
      as it liked. Between requests the idle timeout applies.
    - A request Twisted cannot parse (its request line, a header, a chunked body) is answered
      `400 INVALID_REQUEST`, headers over its limits (16 KiB in all or in one line, 500
      headers) `431 HEADERS_TOO_LARGE`, as JSON with the request id; Twisted answered a bare
      `400` with no body, or closed the connection without a word for an over-long line."""

    head_seconds = math.inf
    body_seconds = math.inf
    _receiving: asyncio.TimerHandle | None = None
    _linger: asyncio.TimerHandle | None = None  # after a 408 given before any request
    _expired = False

    def dataReceived(self, data: bytes) -> None:
        if self._expired:
            return  # answered 408: what still comes is dropped until the connection closes
        if self._receiving is None and not self._handlingRequest:
            self._arm(self.head_seconds, "its head")
        super().dataReceived(data)  # type: ignore[no-untyped-call]

    def allHeadersReceived(self) -> None:
        super().allHeadersReceived()  # type: ignore[no-untyped-call]
        self._disarm()
        self._arm(self.body_seconds, "its body")

    def allContentReceived(self) -> None:
        self._disarm()
        super().allContentReceived()  # type: ignore[no-untyped-call]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._disarm()
        if self._linger is not None:
            self._linger.cancel()
        super().connectionLost(reason)  # type: ignore[no-untyped-call]

    def _arm(self, seconds: float, part: str) -> None:
        if seconds != math.inf:
            loop = asyncio.get_running_loop()
            self._receiving = loop.call_later(seconds, self._expire, seconds, part)

    def _disarm(self) -> None:
        if self._receiving is not None:
            self._receiving.cancel()
            self._receiving = None

    def _expire(self, seconds: float, part: str) -> None:
        self._receiving = None
        request = self.requests[-1] if self.requests else None
        if request is not None and request.refused:
            return  # answered already; its linger closes the connection
        self._expired = True
        reason = f"{part} did not arrive within {seconds:g} s"
        if request is not None:
            request.refuse(RequestTimeout(), reason)
        else:  # the request line is not complete: no request yet
            self._linger = answer_and_close(self, RequestTimeout(), request_id_from(None), reason)

    def _respondToBadRequestAndDisconnect(self) -> None:
        if self._receivedHeaderCount > self.maxHeaders:
            error: ApiError = HeadersTooLarge(
                f"The request has more than {self.maxHeaders} headers."
            )
        elif self._receivedHeaderSize > self.totalHeadersSize:
            error = HeadersTooLarge(
                f"The request's line and headers are longer than {self.totalHeadersSize} bytes."
            )
        else:
            error = InvalidRequest("The request is not valid HTTP/1.1.")
        self._refuse_now(error, error.detail)

    def lineLengthExceeded(self, line: bytes) -> None:
        detail = f"A line of the request's head is longer than {self.MAX_LENGTH} bytes."
        self._refuse_now(HeadersTooLarge(detail), detail)

    def _refuse_now(self, error: ApiError, reason: str) -> None:
        """Answer `error` and close (Twisted stops reading once the connection closes, as it
        did after its own answer)."""
        self._disarm()
        request = self.requests[-1] if self.requests else None
        if request is None or not request.refused:
            if request is not None:
                request.give_up()
            request_id = request.request_id() if request is not None else request_id_from(None)
            answer(self, error, request_id, reason)
        self.loseConnection()  # type: ignore[no-untyped-call]


class BodyLimitedHTTPFactory(HTTPFactory):  # type: ignore[misc]
    # The channel itself per connection: Twisted's default wraps it for HTTP/2 negotiation,
    # which needs TLS (Mamba is served over plain HTTP behind its ingress).
    protocol = GuardedChannel

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        protocol.requestFactory = BodyLimitedRequest
        protocol.head_seconds = self.server.head_seconds
        protocol.body_seconds = self.server.body_seconds
        return protocol

    def log(self, request: Any) -> None:
        """Twisted formatted a combined-format access line for every request into its own log,
        which nothing reads (Mamba's access log is `mamba.access`): 1.4 % of the CPU of a
        short request."""


class DrainingServer(Server):  # type: ignore[misc]
    """daphne's `Server` with a graceful drain instead of daphne's immediate stop on SIGTERM."""

    def __init__(
        self,
        *args: Any,
        grace_seconds: float,
        max_body_bytes: int,
        max_body_bytes_held: int = 0,
        head_seconds: float = math.inf,
        body_seconds: float = math.inf,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, signal_handlers=False, **kwargs)
        self.grace_seconds = grace_seconds
        self.max_body_bytes = max_body_bytes
        self.head_seconds = head_seconds
        self.body_seconds = body_seconds
        # At least one largest body fits (0: no limit).
        self.bodies = BodyBudget(max_body_bytes_held and max(max_body_bytes_held, max_body_bytes))
        metrics.request_body_bytes_held.set_function(lambda: self.bodies.held)
        self.ports: list[Any] = []
        self.channels: weakref.WeakSet[Any] = weakref.WeakSet()
        self.draining_since: float | None = None
        self.stopping = False

    def create_application(self, protocol: Any, scope: dict[str, Any]) -> Inbox | None:
        """daphne's, with an `Inbox` as the application's receive queue. The scope says so
        (the extension `mamba.server`), and that bodies are capped and Content-Length checked
        here already (`mamba_site.bodylimit` need not count them again)."""
        details = self.connections.get(protocol)
        if details is None:  # gone meanwhile: no application (nor a coroutine never awaited)
            return None
        assert "application_instance" not in details
        inbox = Inbox()
        scope.setdefault("asgi", {"version": "3.0"})
        scope["extensions"] = {
            "mamba.server": {
                "inbox": inbox,
                "max_body_bytes": self.max_body_bytes,
                "write": protocol.write_part,
            }
        }
        instance = self.application(
            scope=scope, receive=inbox.get, send=partial(self.handle_reply, protocol)
        )
        details["application_instance"] = asyncio.ensure_future(instance)
        return inbox

    def run(self) -> None:
        reactor.callWhenRunning(self._install_signal_handlers)
        super().run()

    # daphne's run() makes its HTTPFactory and listens with it at once: ours goes in here.
    @property
    def http_factory(self) -> Any:
        return self._http_factory

    @http_factory.setter
    def http_factory(self, factory: Any) -> None:
        self._http_factory = BodyLimitedHTTPFactory(self)

    def listen_success(self, port: Any) -> None:
        if getattr(port, "transport", None) is tcp.Server:
            port.transport = ImmediateWriteServer
        super().listen_success(port)
        self.ports.append(port)
        host = port.getHost()
        logger.info(
            "Listening on %s:%s (shutdown grace %g s)", host.host, host.port, self.grace_seconds
        )

    def protocol_connected(self, protocol: Any) -> None:
        super().protocol_connected(protocol)
        # Requests are tracked by daphne; their connections are kept here, to close idle ones.
        channel = getattr(protocol, "channel", None)
        if channel is not None:
            self.channels.add(channel)

    def stop(self) -> None:
        if not self.stopping:
            self.stopping = True
            super().stop()

    def _install_signal_handlers(self) -> None:
        # The reactor's loop (daphne made it current); it is not running yet at start-up. Its
        # callbacks run in the context they were scheduled from: here, no request's.
        loop = asyncio.get_event_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.drain, signum)

    def drain(self, signum: int = signal.SIGTERM) -> None:
        name = signal.Signals(signum).name
        if self.draining_since is not None:
            logger.warning("%s again: stopping now", name)
            self.stop()
            return
        self.draining_since = time.monotonic()
        lifecycle.drain_begin(self.grace_seconds)
        for port in self.ports:
            port.stopListening()
        for channel in list(self.channels):
            # Close each connection once its response is done; idle ones at once.
            channel.persistent = False
            if not getattr(channel, "requests", None) and channel.transport is not None:
                channel.loseConnection()
        logger.info(
            "%s: stopped accepting connections; waiting up to %g s for %d active request(s)",
            name,
            self.grace_seconds,
            self.active_requests(),
        )
        self._stop_when_drained()

    def active_requests(self) -> int:
        """Requests whose response is not finished, or whose application is still running."""
        return sum(1 for details in self.connections.values() if _busy(details))

    def _stop_when_drained(self) -> None:
        assert self.draining_since is not None
        active = self.active_requests()
        waited = time.monotonic() - self.draining_since
        if active == 0:
            logger.info("Drained in %.1f s; stopping", waited)
            self._stop_after_hooks()
        elif waited >= self.grace_seconds:
            logger.warning(
                "Grace of %g s is over; cancelling %d request(s)", self.grace_seconds, active
            )
            self._stop_after_hooks()
        else:
            asyncio.get_running_loop().call_later(DRAIN_POLL_SECONDS, self._stop_when_drained)

    def _stop_after_hooks(self) -> None:
        """Run the shutdown hooks (usage records still kept are written) within what is left
        of the grace, then stop."""
        assert self.draining_since is not None
        deadline = max(
            self.draining_since + self.grace_seconds, time.monotonic() + HOOKS_MIN_SECONDS
        )
        hooks = asyncio.get_running_loop().create_task(lifecycle.shutdown(deadline, final=False))
        hooks.add_done_callback(lambda _: self.stop())

    def kill_all_applications(self) -> defer.Deferred[Any]:
        """Before the reactor stops: cancel every task left on the loop and wait for them.

        daphne's own version cancels only application instances (and fails on a request
        whose application has not started); background tasks, such as the health monitor,
        would be destroyed while pending.
        """
        loop = asyncio.get_event_loop()
        tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            logger.info("Cancelled %d task(s) still running at shutdown", len(tasks))

        async def cancelled_then_hooks() -> None:
            await asyncio.gather(*tasks, return_exceptions=True)
            # Streams cancelled just now recorded their usage: one last, short chance.
            await lifecycle.shutdown(time.monotonic() + HOOKS_MIN_SECONDS, final=True)

        return defer.Deferred.fromFuture(asyncio.ensure_future(cancelled_then_hooks()))


def _busy(details: dict[str, Any]) -> bool:
    application = details.get("application_instance")
    running = application is not None and not application.done()
    return "disconnected" not in details or running


def run(*, bind: str, port: int, fd: int | None, proxy_headers: bool) -> int:
    """Serve until SIGTERM has drained the server; the exit status."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mamba_site.settings")
    application = import_by_path(APPLICATION)  # sets Django up (and its logging)
    if fd is not None:  # a socket the supervisor bound and shares with its other workers
        endpoints = build_endpoint_description_strings(file_descriptor=fd)
    else:
        # A burst of connections larger than Twisted's default backlog (50) would overflow
        # the accept queue: clients would wait for a retransmission.
        endpoints = [
            f"{endpoint}:backlog={LISTEN_BACKLOG}"
            for endpoint in build_endpoint_description_strings(host=bind, port=port)
        ]
    server = DrainingServer(
        application=application,
        endpoints=endpoints,
        grace_seconds=settings.SERVER_SHUTDOWN_GRACE_SECONDS,
        max_body_bytes=settings.CHAT_MAX_BODY_BYTES,
        max_body_bytes_held=settings.SERVER_MAX_BODY_BYTES_HELD,
        head_seconds=settings.SERVER_REQUEST_HEAD_TIMEOUT_SECONDS,
        body_seconds=settings.SERVER_REQUEST_BODY_TIMEOUT_SECONDS,
        proxy_forwarded_address_header="X-Forwarded-For" if proxy_headers else None,
        proxy_forwarded_port_header="X-Forwarded-Port" if proxy_headers else None,
        proxy_forwarded_proto_header="X-Forwarded-Proto" if proxy_headers else None,
    )
    server.run()
    return 1 if server.abort_start else 0

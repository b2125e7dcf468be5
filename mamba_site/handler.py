"""Django's ASGI handler, with the API's requests served without a thread.

Django's handler runs each request in a `ThreadSensitiveContext` (a thread made for the
request), sends `request_started` with `asend` and closes the response with `sync_to_async`:
Django's own receivers of both signals are sync, so each request made a thread and hopped to
it twice, though the API runs no sync code. The API's requests (everything but the admin and
static files) instead send both signals inline on the event loop, where their receivers find
nothing to do (no database connection ever lives on the loop's thread), and close responses
there too. The admin, whose views are sync, keeps Django's handling unchanged.

Served by `mamba_site.server` (the scope's extension `mamba.server` holds the request's
`Inbox`), no task listens for the client's disconnect while a response runs: the server
cancels the handler's task when the client leaves before its response is complete.
"""

import asyncio
from contextlib import closing
from typing import IO, Any

from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import HttpRequest, HttpResponseBase
from django.http.response import ResponseHeaders
from django.urls import set_script_prefix

type Scope = dict[str, Any]
type Receive = Any
type Send = Any

# Served the Django way: sync views (admin), and files.
FULL_CYCLE_PREFIXES = ("/admin/", "/static/")


class RequestProcessed(Exception):
    """Ends the request's task group once the response is sent (Django makes this class anew
    for every request; one class is enough, and a class costs 1.5 KiB as long as a stream)."""


class Inbox:
    """The application's receive queue in `mamba_site.server`, instead of daphne's
    `asyncio.Queue` (four deques and an event: 3 KiB for as long as a stream runs). One
    `get` at a time, as an ASGI application receives.

    `client_left` is set by the server when the connection is lost before the response was
    complete; it then cancels `watcher`, the task of a handler that asked to be told so."""

    __slots__ = ("_messages", "_waiter", "client_left", "watcher")

    def __init__(self) -> None:
        self._messages: list[dict[str, Any]] = []
        self._waiter: asyncio.Future[None] | None = None
        self.client_left = False
        self.watcher: asyncio.Task[Any] | None = None

    def put_nowait(self, message: dict[str, Any]) -> None:
        self._messages.append(message)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self) -> dict[str, Any]:
        while not self._messages:
            if self._waiter is not None:
                raise RuntimeError("receive() is already being awaited")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._messages.pop(0)

    def leave(self) -> None:
        """The client left before its response was complete."""
        self.client_left = True
        if self.watcher is not None:
            self.watcher.cancel()


class ApiASGIHandler(ASGIHandler):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(FULL_CYCLE_PREFIXES):
            await super().__call__(scope, receive, send)
            return
        await self.handle_on_loop(scope, receive, send)

    async def handle_on_loop(self, scope: Scope, receive: Receive, send: Send) -> None:
        """`ASGIHandler.handle`, with the signals and the response's close on the loop."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        with closing(body_file):
            set_script_prefix(get_script_prefix(scope))
            signals.request_started.send(sender=self.__class__, scope=scope)
            request, error_response = self.create_request(scope, body_file)
            if request is None:
                assert error_response is not None
                await self.send_response(error_response, send)
                error_response.close()
                return

            inbox = scope.get("extensions", {}).get("mamba.server", {}).get("inbox")
            if inbox is not None:
                response = await self.respond_watched(inbox, scope, request, body_file, send)
            else:
                response = await self.respond_listening(receive, request, body_file, send)
            if response is None:
                signals.request_finished.send(sender=self.__class__)
            else:
                response.close()

    async def respond_watched(
        self, inbox: Inbox, scope: Scope, request: HttpRequest, body_file: IO[bytes], send: Send
    ) -> HttpResponseBase | None:
        """Run the view and send its response; the server cancels this if the client leaves
        (then the response, if any, is returned as if it had been sent)."""
        task = asyncio.current_task()
        assert task is not None
        if inbox.client_left:  # before this task first ran: nothing is cancelled then
            return None
        response = None
        inbox.watcher = task
        try:
            response = await self.run_get_response(request)
            _release_copies(request, body_file)
            # The scope's headers are daphne's own list here, which nothing reads once
            # Django has made `META` of them; a stream keeps its scope for minutes.
            scope["headers"].clear()
            await self.send_response(response, send, scope["extensions"]["mamba.server"])
        except asyncio.CancelledError:
            if not inbox.client_left or task.uncancel() > 0:
                raise
        finally:
            inbox.watcher = None
        return response

    async def respond_listening(
        self, receive: Receive, request: HttpRequest, body_file: IO[bytes], send: Send
    ) -> HttpResponseBase | None:
        """Django's way, under any other server: a task listens for the client's disconnect
        while the view runs and its response is sent."""
        response = None
        try:
            try:
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(self.listen_for_disconnect(receive))
                    response = await self.run_get_response(request)
                    _release_copies(request, body_file)
                    await self.send_response(response, send)
                    raise RequestProcessed
            except* (RequestProcessed, RequestAborted):
                pass
        except BaseExceptionGroup as group:
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise
        return response

    async def send_response(
        self, response: HttpResponseBase, send: Send, server: dict[str, Any] | None = None
    ) -> None:
        """Django's, except for a response that writes its own body (`stream_to`, the chat
        stream): each of its writes is one ASGI message, without Django's iterator layers,
        or, under `mamba_site.server` (its scope extension `server`), handed to the server's
        `write` directly."""
        stream_to = getattr(response, "stream_to", None)
        if stream_to is None:
            await super().send_response(response, send)
            return
        await send(_start_message(response))
        # Sent: nothing reads Django's copy of the headers again, and a stream keeps its
        # response for minutes.
        response.headers = ResponseHeaders({})
        write_part = server.get("write") if server is not None else None

        async def write(data: bytes) -> None:
            if write_part is not None:
                write_part(data)
            else:
                await send({"type": "http.response.body", "body": data, "more_body": True})

        await stream_to(write)
        await send({"type": "http.response.body"})


def _release_copies(request: HttpRequest, body_file: IO[bytes]) -> None:
    """The view and the middleware are done with the request: what they read need not live
    as long as a stream does (a long conversation is megabytes): the body's file, the bytes
    Django keeps on the request (which the response refers to), and `request.headers`, a
    second copy of the headers (made again if anything asks for it later)."""
    body_file.close()
    for cached in ("_body", "_stream", "headers"):
        request.__dict__.pop(cached, None)


def _start_message(response: HttpResponseBase) -> dict[str, Any]:
    """`http.response.start` for `response`, as Django's `send_response` makes it."""
    headers = [(name.encode("ascii"), value.encode("latin1")) for name, value in response.items()]
    headers += [
        (b"Set-Cookie", cookie.OutputString().encode("ascii"))
        for cookie in response.cookies.values()
    ]
    return {"type": "http.response.start", "status": response.status_code, "headers": headers}


def get_api_asgi_application() -> ApiASGIHandler:
    """`get_asgi_application()`, with `ApiASGIHandler`."""
    import django

    django.setup(set_prefix=False)
    return ApiASGIHandler()

"""Django's ASGI handler, with the API's requests served without a thread.

Django's handler runs each request in a `ThreadSensitiveContext` (a thread made for the
request), sends `request_started` with `asend` and closes the response with `sync_to_async`:
Django's own receivers of both signals are sync, so each request made a thread and hopped to
it twice, though the API runs no sync code. The API's requests (everything but the admin and
static files) instead send both signals inline on the event loop, where their receivers find
nothing to do (no database connection ever lives on the loop's thread), and close responses
there too. The admin, whose views are sync, keeps Django's handling unchanged.
"""

import asyncio
from contextlib import closing
from typing import Any

from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import HttpResponseBase
from django.urls import set_script_prefix

type Scope = dict[str, Any]
type Receive = Any
type Send = Any

# Served the Django way: sync views (admin), and files.
FULL_CYCLE_PREFIXES = ("/admin/", "/static/")


class RequestProcessed(Exception):
    """Ends the request's task group once the response is sent (Django makes this class anew
    for every request; one class is enough, and a class costs 1.5 KiB as long as a stream)."""


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

            response = None
            try:
                try:
                    async with asyncio.TaskGroup() as tasks:
                        tasks.create_task(self.listen_for_disconnect(receive))
                        response = await self.run_get_response(request)
                        # The view has read the body: its copies need not live as long as
                        # a stream does (a long conversation is megabytes): the file, and the
                        # bytes Django keeps on the request, which the response refers to.
                        body_file.close()
                        request.__dict__.pop("_body", None)
                        request.__dict__.pop("_stream", None)
                        await self.send_response(response, send)
                        raise RequestProcessed
                except* (RequestProcessed, RequestAborted):
                    pass
            except BaseExceptionGroup as group:
                if len(group.exceptions) == 1:
                    raise group.exceptions[0] from None
                raise
            if response is None:
                signals.request_finished.send(sender=self.__class__)
            else:
                response.close()

    async def send_response(self, response: HttpResponseBase, send: Send) -> None:
        """Django's, except for a response that writes its own body (`stream_to`, the chat
        stream): each of its writes is one ASGI message, without Django's iterator layers."""
        stream_to = getattr(response, "stream_to", None)
        if stream_to is None:
            await super().send_response(response, send)
            return
        await send(_start_message(response))

        async def write(data: bytes) -> None:
            await send({"type": "http.response.body", "body": data, "more_body": True})

        await stream_to(write)
        await send({"type": "http.response.body"})


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

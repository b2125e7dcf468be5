"""The outermost ASGI layer: a request body over the limit is refused before anything reads it."""

# Django reads a whole body (into a temporary file past FILE_UPLOAD_MAX_MEMORY_SIZE) before the
# first middleware runs, so neither authentication nor a view can protect memory or disk from a
# large anonymous POST. This layer sits under the server and above Django, for every HTTP route:
# a declared Content-Length over the limit is answered at once, and a body without one (chunked)
# is counted as it arrives and cut at the limit, so the application never receives more.
# daphne buffers a body before it calls any application; `mamba_site.serve` caps that buffer
# with the same limit and the same answer.

import logging
from collections.abc import Iterable
from typing import Any

import orjson
from asgiref.typing import (
    ASGI3Application,
    ASGIReceiveCallable,
    ASGIReceiveEvent,
    ASGISendCallable,
    ASGISendEvent,
    HTTPScope,
    Scope,
)

from mamba_site import metrics
from mamba_site.errors import ApiError, InvalidRequest, PayloadTooLarge, error_body
from mamba_site.logs import REQUEST_ID_HEADER, request_id_from

type Headers = Iterable[tuple[bytes, bytes]]

logger = logging.getLogger(__name__)

REQUEST_ID_KEY = REQUEST_ID_HEADER.lower().encode("latin-1")


def body_too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body is larger than {limit} bytes.")


def invalid_length() -> InvalidRequest:
    return InvalidRequest("The Content-Length header is not a valid length.")


def declared_length(headers: Headers) -> int | None:
    """The body length the request declares, or None; ValueError when it is not a number or
    several differ (RFC 9110 8.6 allows a list of equal values)."""
    values = {
        part.strip()
        for name, value in headers
        if name.lower() == b"content-length"
        for part in value.split(b",")
    }
    if not values:
        return None
    if len(values) > 1 or not all(value.isdigit() for value in values):
        raise ValueError("invalid Content-Length")
    return int(values.pop())


def request_id_in(headers: Headers) -> str:
    for name, value in headers:
        if name.lower() == REQUEST_ID_KEY:
            return request_id_from(value.decode("latin-1"))
    return request_id_from(None)


def error_parts(error: ApiError, request_id: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Headers and body of the JSON error response, as `mamba_site.errors` renders them."""
    body = orjson.dumps(error_body(error, request_id))
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (REQUEST_ID_KEY, request_id.encode()),
        *((name.lower().encode(), value.encode()) for name, value in error.headers.items()),
    ]
    return headers, body


async def send_error(
    send: ASGISendCallable, error: ApiError, scope: HTTPScope, headers: Headers, reason: str
) -> None:
    request_id = request_id_in(headers)
    logger.info("Refused a request: %s", reason, extra={"request_id": request_id})
    metrics.count_refused(scope["method"], scope["path"], error.status)
    response_headers, body = error_parts(error, request_id)
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            "headers": response_headers,
            "trailers": False,
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


class BodyLimit:
    """Refuses HTTP request bodies over `max_body_bytes` with 413 (and an invalid
    Content-Length with 400) before the wrapped application reads them."""

    def __init__(self, app: ASGI3Application, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        extensions: Any = scope.get("extensions") or {}
        server = extensions.get("mamba.server")
        if scope["type"] != "http" or (
            server is not None and server["max_body_bytes"] <= self.max_body_bytes
        ):  # `mamba_site.server` has capped the body and checked its length already
            await self.app(scope, receive, send)
            return
        headers = list(scope["headers"])
        try:
            length = declared_length(headers)
        except ValueError:
            await send_error(send, invalid_length(), scope, headers, "invalid Content-Length")
            return
        if length is not None and length > self.max_body_bytes:
            reason = f"Content-Length {length} over {self.max_body_bytes}"
            await send_error(send, body_too_large(self.max_body_bytes), scope, headers, reason)
            return
        body = _CountedBody(receive, send, self.max_body_bytes, scope, headers)
        await self.app(scope, body.receive, body.send)


class _CountedBody:
    """The application's receive and send: counts the body as it arrives. Past the limit the
    application is told the client left, and the client gets the 413 unless the
    application's response has already started."""

    def __init__(
        self,
        receive: ASGIReceiveCallable,
        send: ASGISendCallable,
        max_body_bytes: int,
        scope: HTTPScope,
        headers: Headers,
    ) -> None:
        self._receive = receive
        self._send = send
        self.max_body_bytes = max_body_bytes
        self.scope = scope
        self.headers = headers
        self.received = 0
        self.cut = False
        self.response_started = False
        self.answered = False

    async def receive(self) -> ASGIReceiveEvent:
        if self.cut:
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.max_body_bytes:
                self.cut = True
                if not self.response_started:
                    self.answered = True
                    error = body_too_large(self.max_body_bytes)
                    reason = f"body over {self.max_body_bytes} bytes"
                    await send_error(self._send, error, self.scope, self.headers, reason)
                return {"type": "http.disconnect"}
        return message

    async def send(self, message: ASGISendEvent) -> None:
        if self.answered:
            return  # the 413 is the response
        if message["type"] == "http.response.start":
            self.response_started = True
        await self._send(message)

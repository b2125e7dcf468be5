"""Fake OpenAI Chat Completions server on real HTTP/1.1 (asyncio + h11) for tests and benches."""

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Self

import h11

Json = dict[str, Any]

MARKER = "SECRET-PROVIDER-DETAIL"  # In every provider error message; must never reach clients.
CREATED = 1700000000
MODELS = ("gpt-4o", "gpt-4o-mini")
CHART_ARGS = (
    '{"chartType":"bar","title":"Fruit sales","data":'
    '[{"label":"apples","value":10},{"label":"pears","value":4}]}'
)
INVALID_CHART_ARGS = '{"chartType":"donut","title":"X","data":[{"label":"a","value":"lots"}]}'
BAD_ARGS = '{"chartType": "bar", "title": '
LONG_TITLE = (
    "An unusually long conversation title about planning a mountain trip "
    "with friends, dogs, snacks, maps, and too many bags."
)
# Streaming scripts, picked by the last user message. Checked in this order, first match wins;
# a keyword matches as a whole token (case-insensitive), so "change" does not trigger "hang".
KEYWORDS = (
    "midstream-error",  # two content chunks, then the TCP connection is cut mid-body
    "stream-error-event",  # one chunk, then a `data: {"error": ...}` event, then a clean end
    "hang",  # 200 headers and no chunk until the client disconnects (max 120 s)
    "slow",  # slow:<seconds>: wait before the first chunk, then the echo reply
    "drip",  # drip:<n>: n "tick " chunks 0.2 s apart
    "reasoning-field",  # like "reason" but in `delta.reasoning`
    "reason",  # three `delta.reasoning_content` chunks, then "The answer is 42."
    "badargs",  # generateChart call with truncated (invalid) JSON arguments
    "invalid-chart",  # generateChart call with valid JSON that breaks the chart schema
    "chart",  # "Here is the chart." then a generateChart call (id call_chart_1)
    "two-tools",  # parallel generateCode + generateCard calls, interleaved
    "unknown-tool",  # a launchMissiles call with arguments {}
    "length",  # "Truncated" with finish_reason "length"
    "usage-none",  # the echo reply, with no usage chunk even if asked
    "bench",  # bench:<n>: n "token " chunks as fast as possible
)
# Faults a test sets with `set_fault()` (or POST /_fake/fault {"fault", "times"}), for chat
# requests whatever their text: "status:<code>[:<retry-after>]" answers that error;
# "reset" closes the connection before any byte; "hang" sends nothing; "json200" and "text200"
# answer 200 with a body that is not a stream; "<kind>:<n>" streams n content chunks, then:
# "cut" ends the body cleanly without finish_reason or [DONE], "drop" closes the connection,
# "stall" goes silent, "malformed" sends an event that is not JSON, "notobject" one that is
# JSON but not an object, "empty" sends [DONE] (with n = 0: an empty reply).
FAULTS = ("status", "reset", "hang", "json200", "text200", "cut", "drop", "stall")
FAULTS += ("malformed", "notobject", "empty")
ARG_PATTERNS = {"slow": r"\d*\.?\d+", "drip": r"\d+", "bench": r"\d+"}
TOOL_KEYWORDS = ("badargs", "invalid-chart", "chart", "two-tools", "unknown-tool")
_IRE = "invalid_request_error"
# model -> (status, type, code, message); MARKER is appended to the message.
MODEL_ERRORS: dict[str, tuple[int, str, str | None, str]] = {
    "error-400": (400, _IRE, "context_length_exceeded", "Context too long."),
    "error-401": (401, _IRE, "invalid_api_key", "Incorrect API key provided: sk-fake."),
    "error-403": (403, _IRE, "permission_denied", "You may not use this model."),
    "error-429": (429, "rate_limit_exceeded", "rate_limit_exceeded", "Rate limit reached."),
    "error-500": (500, "server_error", None, "The server had an error processing your request."),
    "error-503": (503, "server_error", None, "The engine is currently overloaded."),
}
SSE_HEADERS = [
    ("content-type", "text/event-stream; charset=utf-8"),
    ("cache-control", "no-cache"),
    ("transfer-encoding", "chunked"),
]
log = logging.getLogger(__name__)


def dumps(payload: Json) -> str:
    return json.dumps(payload, separators=(",", ":"))


def envelope(kind: str, completion_id: str, model: Any, choices: list[Json]) -> Json:
    return {
        "id": completion_id,
        "object": kind,
        "created": CREATED,
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": choices,
    }


def error_body(message: str, type_: str, code: str | None, param: str | None = None) -> Json:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def message_text(message: Json) -> str:
    """Text of a chat message whose content is a string or a list of content parts."""
    content = message.get("content")
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def last_user_text(messages: list[Json]) -> str:
    return next((message_text(m) for m in reversed(messages) if m.get("role") == "user"), "")


def usage(messages: list[Json], completion_tokens: int) -> Json:
    prompt_tokens = sum(len(message_text(m)) for m in messages) // 4 + 1
    total = prompt_tokens + completion_tokens
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": total,
    }


def match_keyword(text: str) -> tuple[str | None, str]:
    """The first of KEYWORDS found as a whole token in `text`, and its `:<arg>` if it takes one."""
    lowered = text.lower()
    for keyword in KEYWORDS:
        arg = f":({ARG_PATTERNS[keyword]})" if keyword in ARG_PATTERNS else "()"
        if found := re.search(rf"(?<![\w-]){re.escape(keyword)}{arg}(?![\w-])", lowered):
            return keyword, found.group(1)
    return None, ""


def word_chunks(text: str, size: int = 3) -> list[str]:
    """Split text into pieces of about `size` words that concatenate back to `text` exactly."""
    words = re.findall(r"\s*\S+", text)
    if not words:
        return [text] if text else []
    words[-1] += text[len("".join(words)) :]
    return ["".join(words[i : i + size]) for i in range(0, len(words), size)]


def fragments(arguments: str, parts: int = 4) -> list[str]:
    step = max(1, -(-len(arguments) // parts))
    return [arguments[i : i + step] for i in range(0, len(arguments), step)]


class ClientGone(Exception):
    """The client closed the connection before the response was fully written."""


class Exchange:
    """One request/response cycle on an h11 connection, aware of the client going away."""

    def __init__(self, conn: h11.Connection, writer: asyncio.StreamWriter) -> None:
        self.conn = conn
        self.writer = writer
        self.gone = asyncio.Event()  # Set by the EOF watcher in FakeUpstream._serve_connection.
        self.aborted = False

    def check_open(self) -> None:
        if self.gone.is_set() or self.writer.transport.is_closing():
            raise ClientGone

    async def send(self, *events: h11.Event) -> None:
        self.check_open()
        self.writer.write(b"".join(self.conn.send(event) or b"" for event in events))
        try:
            await self.writer.drain()
        except ConnectionError as exc:
            raise ClientGone from exc

    async def pause(self, seconds: float) -> None:
        """Sleep, but raise ClientGone as soon as the client disconnects."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.gone.wait(), seconds)
        if self.gone.is_set():
            raise ClientGone

    async def send_json(self, status: int, payload: Json, *headers: tuple[str, str]) -> None:
        body = dumps(payload).encode()
        base = [("content-type", "application/json"), ("content-length", str(len(body)))]
        response = h11.Response(status_code=status, headers=[*base, *headers])
        await self.send(response, h11.Data(data=body), h11.EndOfMessage())


class ChunkStream:
    """Writes the `chat.completion.chunk` server-sent events of one streamed completion."""

    def __init__(
        self,
        ex: Exchange,
        request: Json,
        completion_id: str,
        delay: float,
        on_done: Callable[[], None],
    ) -> None:
        self.ex = ex
        self.on_done = on_done
        self.request = request
        self.include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
        self.id = completion_id
        self.delay = delay
        self.fragments = 0  # content, reasoning and argument pieces: the completion_tokens
        self.events = 0
        self.started = False
        self.done = False

    def chunk(self, choices: list[Json]) -> Json:
        chunk = envelope("chat.completion.chunk", self.id, self.request.get("model"), choices)
        return chunk | {"usage": None} if self.include_usage else chunk

    async def event(self, data: Json | str, last: bool = False) -> None:
        """Send one `data:` event; the last one goes out with the end of the body."""
        if self.events and self.delay:
            await self.ex.pause(self.delay)
        self.events += 1
        text = data if isinstance(data, str) else dumps(data)
        events: list[h11.Event] = [h11.Data(data=f"data: {text}\n\n".encode())]
        if last:  # Count first, so that a client that has seen the end sees it counted.
            self.ex.check_open()
            self.done = True
            self.on_done()
            events.append(h11.EndOfMessage())
        await self.ex.send(*events)

    async def delta(self, delta: Json, finish_reason: str | None = None) -> None:
        if not self.started:  # Like OpenAI, open with the role and an empty content.
            self.started = True
            await self.delta({"role": "assistant", "content": ""})
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        await self.event(self.chunk([choice]))

    async def content(self, text: str, field: str = "content") -> None:
        self.fragments += 1
        await self.delta({field: text})

    async def words(self, text: str) -> None:
        for piece in word_chunks(text):
            await self.content(piece)

    async def tool_header(self, index: int, call_id: str, name: str) -> None:
        function = {"name": name, "arguments": ""}
        call = {"index": index, "id": call_id, "type": "function", "function": function}
        await self.delta({"tool_calls": [call]})

    async def tool_arguments(self, index: int, text: str) -> None:
        self.fragments += 1
        await self.delta({"tool_calls": [{"index": index, "function": {"arguments": text}}]})

    async def tool_call(self, call_id: str, name: str, arguments: str) -> None:
        await self.tool_header(0, call_id, name)
        for piece in fragments(arguments):
            await self.tool_arguments(0, piece)

    async def finish(self, reason: str) -> None:
        await self.delta({}, reason)
        if self.include_usage:
            tokens = usage(self.request.get("messages", []), self.fragments)
            await self.event(self.chunk([]) | {"usage": tokens})
        await self.event("[DONE]", last=True)


class FakeUpstream:
    """The fake server: `await start()`/`await stop()`, or `with running_in_thread()`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, chunk_delay: float | None = None):
        self.host = host
        self.port = port
        env_delay = os.environ.get("FAKE_UPSTREAM_CHUNK_DELAY", "0")
        self.chunk_delay = float(env_delay) if chunk_delay is None else chunk_delay
        self.connections = 0  # TCP connections accepted; not cleared by reset().
        self.active = 0  # Chat requests being answered now; not cleared by reset().
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.reset()

    def reset(self) -> None:
        self.fault: str | None = None  # See FAULTS; None: behave.
        self.fault_times: int | None = None  # Apply the fault this many times; None: always.
        self.requests: list[Json] = []  # Chat request bodies, in order.
        self.disconnects = 0  # Streams the client abandoned before they were fully written.
        self.completed = 0  # Streams fully written.
        self._ids = itertools.count(1)

    def state(self) -> Json:
        return {
            "requests": self.requests,
            "disconnects": self.disconnects,
            "completed": self.completed,
            "active": self.active,
        }

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_connect, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def wait_for_disconnect(self, timeout: float = 1.0, count: int = 1) -> bool:  # noqa: ASYNC109
        """Whether `disconnects` reaches `count` (since the last reset) within `timeout` s."""
        deadline = time.monotonic() + timeout
        while self.disconnects < count:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    @classmethod
    @contextlib.contextmanager
    def running_in_thread(cls, **kwargs: Any) -> Iterator[Self]:
        """Serve from an event loop in a daemon thread, for synchronous callers."""
        server = cls(**kwargs)
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="fake-upstream", daemon=True)
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(server.start(), loop).result(timeout=10)
            yield server
        finally:
            asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()

    # -- HTTP/1.1 ---------------------------------------------------------------------------

    def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Own the task (rather than hand start_server a coroutine) so stop() can cancel it.
        self.connections += 1
        task = asyncio.create_task(self._serve_connection(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while (request := await self._read_request(conn, reader)) is not None:
                ex = Exchange(conn, writer)
                watcher = asyncio.create_task(self._watch_for_eof(conn, reader, ex.gone))
                try:
                    await self._route(ex, *request)
                finally:
                    watcher.cancel()
                    await asyncio.wait([watcher])
                if ex.aborted or ex.gone.is_set() or conn.our_state is not h11.DONE:
                    break
                conn.start_next_cycle()  # Keep-alive: serve the next request.
        except (ConnectionError, h11.ProtocolError, ClientGone):
            pass
        finally:
            writer.close()

    @staticmethod
    async def _read_request(
        conn: h11.Connection, reader: asyncio.StreamReader
    ) -> tuple[h11.Request, bytes] | None:
        request, body = None, bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(65536))
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage) and request is not None:
                return request, bytes(body)
            else:  # ConnectionClosed: the client is done with this connection.
                return None

    @staticmethod
    async def _watch_for_eof(
        conn: h11.Connection, reader: asyncio.StreamReader, gone: asyncio.Event
    ) -> None:
        """While a response is written, read the socket so that a client close is seen at once."""
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                conn.receive_data(data)  # A pipelined next request: h11 keeps it.
        gone.set()

    async def _route(self, ex: Exchange, request: h11.Request, body: bytes) -> None:
        method, path = request.method.decode(), request.target.decode().split("?", 1)[0]
        try:
            if (method, path) == ("POST", "/v1/chat/completions"):
                self.active += 1
                try:
                    await self._chat(ex, body)
                finally:
                    self.active -= 1
            elif (method, path) == ("GET", "/v1/models"):
                data = [
                    {"id": m, "object": "model", "created": CREATED, "owned_by": "fake"}
                    for m in MODELS
                ]
                await ex.send_json(200, {"object": "list", "data": data})
            elif (method, path) == ("GET", "/_fake/state"):
                await ex.send_json(200, self.state())
            elif (method, path) == ("POST", "/_fake/reset"):
                self.reset()
                await ex.send_json(200, {})
            elif (method, path) == ("POST", "/_fake/fault"):
                settings = json.loads(body or b"{}")
                self.set_fault(settings.get("fault"), times=settings.get("times"))
                await ex.send_json(200, {})
            else:
                message = f"Invalid URL ({method} {path})"
                await ex.send_json(404, error_body(message, _IRE, "unknown_url"))
        except ClientGone:
            raise
        except Exception as exc:  # A bug in the fake: answer 500 (if still possible), not hang.
            log.exception("fake upstream failed")
            if ex.conn.our_state is h11.SEND_RESPONSE:
                await ex.send_json(500, error_body(f"fake upstream: {exc!r}", "server_error", None))

    # -- Chat completions -------------------------------------------------------------------

    async def _chat(self, ex: Exchange, body: bytes) -> None:
        try:
            request = json.loads(body)
        except ValueError:
            await ex.send_json(400, error_body(f"Invalid JSON body. {MARKER}", _IRE, None))
            return
        self.requests.append(request)
        model = str(request.get("model", ""))
        if model == "missing-model":
            message = f"The model `{model}` does not exist or you do not have access to it."
            await ex.send_json(404, error_body(message, _IRE, "model_not_found"))
        elif model in MODEL_ERRORS:
            status, type_, code, message = MODEL_ERRORS[model]
            error = error_body(
                f"{message} {MARKER}", type_, code, "messages" if status == 400 else None
            )
            retry_after = [("retry-after", "7")] if status == 429 else []
            await ex.send_json(status, error, *retry_after)
        elif self._take_fault():
            await self._play_fault(ex, request)
        elif request.get("stream"):
            await self._stream(ex, request)
        else:
            await self._complete(ex, request)

    async def _complete(self, ex: Exchange, request: Json) -> None:
        """A non-streamed reply: a conversation title."""
        messages = request.get("messages", [])
        text = last_user_text(messages)
        if "slow-title" in text.lower():
            with contextlib.suppress(ClientGone):
                await ex.pause(3)
        if "quoted-title" in text.lower():
            content = '"Quoted Title"'
        elif "long-title" in text.lower():
            content = LONG_TITLE
        else:
            content = "Title: " + " ".join(text.split()[:5])
        message = {"role": "assistant", "content": content, "refusal": None}
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
        completion_id = f"chatcmpl-fake{next(self._ids)}"
        reply = envelope("chat.completion", completion_id, request.get("model"), [choice])
        await ex.send_json(200, reply | {"usage": usage(messages, len(content.split()))})

    async def _stream(self, ex: Exchange, request: Json) -> None:
        completion_id = f"chatcmpl-fake{next(self._ids)}"
        stream = ChunkStream(ex, request, completion_id, self.chunk_delay, self._count_completed)
        try:
            await ex.send(h11.Response(status_code=200, headers=SSE_HEADERS))
            await self._script(stream, request.get("messages", []))
        except ClientGone:
            if not stream.done:
                self.disconnects += 1

    def set_fault(self, fault: str | None, *, times: int | None = None) -> None:
        """Misbehave (see FAULTS) on the next `times` chat requests (None: on every one)."""
        if fault is not None and fault.split(":")[0] not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}")
        self.fault, self.fault_times = fault, times

    def _take_fault(self) -> bool:
        if self.fault is None or self.fault_times == 0:
            return False
        if self.fault_times is not None:
            self.fault_times -= 1
        return True

    async def _play_fault(self, ex: Exchange, request: Json) -> None:
        assert self.fault is not None
        name, _, arg = self.fault.partition(":")
        if name == "status":
            code, _, retry_after = arg.partition(":")
            headers = [("retry-after", retry_after)] if retry_after else []
            error = error_body(f"Fault {code}. {MARKER}", "server_error", None)
            await ex.send_json(int(code), error, *headers)
            return
        if name == "reset":
            ex.aborted = True
            ex.writer.transport.abort()  # RST before any response byte
            return
        if name == "hang":
            try:
                await ex.pause(120)
            except ClientGone:
                self.disconnects += 1
            ex.aborted = True
            return
        if name == "json200":  # a plain completion where a stream was asked for
            await self._complete(ex, request)
            return
        if name == "text200":
            body = f"<html>upstream proxy says hello {MARKER}</html>".encode()
            headers = [("content-type", "text/html"), ("content-length", str(len(body)))]
            await ex.send(h11.Response(status_code=200, headers=headers), h11.Data(data=body))
            await ex.send(h11.EndOfMessage())
            return
        completion_id = f"chatcmpl-fault{next(self._ids)}"
        s = ChunkStream(ex, request, completion_id, self.chunk_delay, self._count_completed)
        try:
            await ex.send(h11.Response(status_code=200, headers=SSE_HEADERS))
            await self._faulty_stream(s, name, int(arg or 0))
        except ClientGone:
            self.disconnects += 1

    @staticmethod
    async def _faulty_stream(s: ChunkStream, name: str, tokens: int) -> None:
        for _ in range(tokens):
            await s.content("fault ")
        match name:
            case "cut":  # a clean end of the body, without finish_reason or [DONE]
                await s.ex.send(h11.EndOfMessage())
            case "drop":  # the TCP connection closes mid-body
                s.ex.aborted = True
                s.ex.writer.close()
            case "stall":
                await s.ex.pause(120)
            case "malformed":
                await s.event("{not json", last=True)
            case "notobject":
                await s.event("[1, 2, 3]", last=True)
            case "empty":
                await s.event("[DONE]", last=True)

    def _count_completed(self) -> None:
        self.completed += 1

    async def _script(self, s: ChunkStream, messages: list[Json]) -> None:
        """Play the scripted reply for the request's last message."""
        if messages and messages[-1].get("role") == "tool":  # The step after a tool call.
            await s.words("Done: the tool returned a result.")
            await s.finish("stop")
            return
        text = last_user_text(messages)
        keyword, arg = match_keyword(text)
        match keyword:
            case "midstream-error":
                await s.content("Partial ")
                await s.content("answer")
                s.ex.aborted = True
                s.ex.writer.close()  # No terminating zero-length chunk: a broken body.
                return
            case "stream-error-event":
                await s.content("Partial ")
                error = {"message": f"{MARKER} overloaded", "type": "server_error"}
                await s.event({"error": error}, last=True)
                return
            case "hang":
                await s.ex.pause(120)
            case "slow":
                await s.ex.pause(float(arg))
                await s.words("Echo: " + text)
            case "drip":
                for i in range(int(arg)):
                    if i:
                        await s.ex.pause(0.2)
                    await s.content("tick ")
            case "reason" | "reasoning-field":
                field = "reasoning" if keyword == "reasoning-field" else "reasoning_content"
                for piece in ("Let me think. ", "The user wants ", "an answer."):
                    await s.content(piece, field)
                await s.words("The answer is 42.")
            case "badargs":
                await s.tool_call("call_badargs_1", "generateChart", BAD_ARGS)
            case "invalid-chart":
                await s.tool_call("call_invalid_1", "generateChart", INVALID_CHART_ARGS)
            case "chart":
                await s.content("Here is the chart.")
                await s.tool_call("call_chart_1", "generateChart", CHART_ARGS)
            case "two-tools":
                await self._two_tools(s)
            case "unknown-tool":
                await s.tool_call("call_unknown_1", "launchMissiles", "{}")
            case "length":
                await s.content("Truncated")
                await s.finish("length")
                return
            case "usage-none":
                s.include_usage = False
                await s.words("Echo: " + text)
            case "bench":
                for _ in range(int(arg)):
                    await s.content("token ")
            case _:
                await s.words("Echo: " + text)
        await s.finish("tool_calls" if keyword in TOOL_KEYWORDS else "stop")

    @staticmethod
    async def _two_tools(s: ChunkStream) -> None:
        code = fragments('{"language":"python","code":"print(1)"}')
        card = fragments('{"title":"Card","description":"A card"}')
        await s.tool_header(0, "call_code_1", "generateCode")
        await s.tool_arguments(0, code[0])
        await s.tool_header(1, "call_card_1", "generateCard")
        for pair in itertools.zip_longest(card, code[1:]):
            for index, piece in zip((1, 0), pair, strict=True):
                if piece is not None:
                    await s.tool_arguments(index, piece)


async def serve(host: str = "127.0.0.1", port: int = 0, chunk_delay: float | None = None) -> None:
    """Serve until SIGTERM/SIGINT, printing `READY <port>` to stdout once listening."""
    server = FakeUpstream(host, port, chunk_delay=chunk_delay)
    await server.start()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    print(f"READY {server.port}", flush=True)
    await stop.wait()
    await server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--chunk-delay", type=float, help="seconds between streamed chunks")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port, args.chunk_delay))


if __name__ == "__main__":
    main()

"""Fake OpenAI-compatible Chat Completions server (asyncio + h11) for end-to-end tests and benchmarks."""

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
from collections.abc import Iterator
from typing import Any, Self

import h11

Json = dict[str, Any]

MARKER = "SECRET-PROVIDER-DETAIL"
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
# Checked in this order, first match wins. Keywords taking an argument are written `kw:<arg>`.
KEYWORDS = (
    "midstream-error stream-error-event hang slow drip reasoning-field reason badargs"
    " invalid-chart chart two-tools unknown-tool length usage-none bench"
).split()
_ARG_PATTERNS = {"slow": r"\d*\.?\d+", "drip": r"\d+", "bench": r"\d+"}
TOOL_KEYWORDS = ("badargs", "invalid-chart", "chart", "two-tools", "unknown-tool")
_IRE = "invalid_request_error"
# model -> (status, type, code, message); MARKER is appended to every message.
MODEL_ERRORS: dict[str, tuple[int, str, str | None, str]] = {
    "error-400": (400, _IRE, "context_length_exceeded", "Context too long."),
    "error-401": (401, _IRE, "invalid_api_key", "Incorrect API key provided: sk-fake."),
    "error-403": (403, _IRE, "permission_denied", "You may not use this model."),
    "error-429": (429, "rate_limit_exceeded", "rate_limit_exceeded", "Rate limit reached."),
    "error-500": (500, "server_error", None, "The server had an error processing your request."),
    "error-503": (503, "server_error", None, "The engine is currently overloaded."),
}
log = logging.getLogger("fake_upstream")


def error_body(message: str, type_: str, code: str | None, param: str | None = None) -> Json:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def message_text(message: Json) -> str:
    """Text of a chat message whose content is a string or a list of content parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def last_user_text(messages: list[Json]) -> str:
    return next((message_text(m) for m in reversed(messages) if m.get("role") == "user"), "")


def match_keyword(text: str) -> tuple[str | None, str]:
    """First keyword (in KEYWORDS order) present as a whole token in `text`, with its argument."""
    lowered = text.lower()
    for keyword in KEYWORDS:
        arg = f":({_ARG_PATTERNS[keyword]})" if keyword in _ARG_PATTERNS else "()"
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
        self.gone = asyncio.Event()
        self.aborted = False

    async def send(self, event: h11.Event) -> None:
        if self.gone.is_set() or self.writer.transport.is_closing():
            raise ClientGone
        self.writer.write(self.conn.send(event))
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

    async def send_json(
        self, status: int, payload: Json, headers: list[tuple[str, str]] | None = None
    ) -> None:
        body = json.dumps(payload).encode()
        all_headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
        await self.send(h11.Response(status_code=status, headers=all_headers + (headers or [])))
        await self.send(h11.Data(data=body))
        await self.send(h11.EndOfMessage())

    def abort(self) -> None:
        """Close the TCP connection without finishing the (chunked) body."""
        self.aborted = True
        self.writer.close()


class ChunkStream:
    """Writes `chat.completion.chunk` server-sent events for one streamed completion."""

    def __init__(self, ex: Exchange, completion_id: str, request: Json, delay: float) -> None:
        self.ex = ex
        self.id = completion_id
        self.model = request.get("model")
        self.include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
        self.prompt_tokens = sum(len(message_text(m)) for m in request.get("messages", [])) // 4 + 1
        self.delay = delay
        self.fragments = 0
        self.events = 0
        self.started = False

    async def event(self, data: Json | str) -> None:
        if self.events and self.delay:
            await self.ex.pause(self.delay)
        self.events += 1
        text = data if isinstance(data, str) else json.dumps(data)
        await self.ex.send(h11.Data(data=f"data: {text}\n\n".encode()))

    def chunk(self, choices: list[Json]) -> Json:
        chunk = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": self.model,
            "system_fingerprint": "fp_fake",
            "choices": choices,
        }
        if self.include_usage:
            chunk["usage"] = None
        return chunk

    async def delta(self, delta: Json, finish_reason: str | None = None) -> None:
        if not self.started:
            self.started = True
            await self.delta({"role": "assistant", "content": ""})
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        await self.event(self.chunk([choice]))

    async def content(self, text: str) -> None:
        self.fragments += 1
        await self.delta({"content": text})

    async def words(self, text: str) -> None:
        for piece in word_chunks(text):
            await self.content(piece)

    async def reasoning(self, text: str, field: str) -> None:
        self.fragments += 1
        await self.delta({field: text})

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
            usage = {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.fragments,
                "total_tokens": self.prompt_tokens + self.fragments,
            }
            await self.event(self.chunk([]) | {"usage": usage})
        await self.event("[DONE]")
        await self.end()

    async def end(self) -> None:
        await self.ex.send(h11.EndOfMessage())


class FakeUpstream:
    """A fake OpenAI Chat Completions server; see the module's tests for usage."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, chunk_delay: float | None = None):
        self.host = host
        self.port = port
        env_delay = os.environ.get("FAKE_UPSTREAM_CHUNK_DELAY", "0")
        self.chunk_delay = float(env_delay) if chunk_delay is None else chunk_delay
        self.connections = 0  # TCP connections accepted (not reset by reset()).
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.reset()

    def reset(self) -> None:
        self.requests: list[Json] = []
        self.disconnects = 0
        self.completed = 0
        self._ids = itertools.count(1)

    def state(self) -> Json:
        return {
            "requests": self.requests,
            "disconnects": self.disconnects,
            "completed": self.completed,
        }

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve_connection, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def wait_for_disconnect(self, timeout: float = 1.0, count: int = 1) -> bool:
        """True once at least `count` streams were disconnected (since reset), within timeout."""
        deadline = time.monotonic() + timeout
        while self.disconnects < count:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    @classmethod
    @contextlib.contextmanager
    def running_in_thread(cls, **kwargs: Any) -> Iterator[Self]:
        """Run a server on its own event loop in a daemon thread for synchronous callers."""
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

    # -- HTTP plumbing -------------------------------------------------------------------

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
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
                conn.start_next_cycle()
        except (ConnectionError, h11.ProtocolError, ClientGone):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    @staticmethod
    async def _read_request(
        conn: h11.Connection, reader: asyncio.StreamReader
    ) -> tuple[h11.Request, bytes] | None:
        request: h11.Request | None = None
        body = bytearray()
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
            else:
                return None

    @staticmethod
    async def _watch_for_eof(
        conn: h11.Connection, reader: asyncio.StreamReader, gone: asyncio.Event
    ) -> None:
        """While a response is written, read the socket so a client close is seen at once."""
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                conn.receive_data(data)  # A pipelined next request: keep it for h11.
        gone.set()

    async def _route(self, ex: Exchange, request: h11.Request, body: bytes) -> None:
        method, path = request.method.decode(), request.target.decode().split("?", 1)[0]
        try:
            if (method, path) == ("POST", "/v1/chat/completions"):
                await self._chat(ex, body)
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
            else:
                message = f"Invalid URL ({method} {path})"
                await ex.send_json(404, error_body(message, "invalid_request_error", "unknown_url"))
        except ClientGone:
            raise
        except Exception as exc:  # A bug in the fake: report it rather than hang the client.
            log.exception("fake upstream failed")
            if ex.conn.our_state is h11.SEND_RESPONSE:
                await ex.send_json(
                    500, error_body(f"fake upstream bug: {exc!r}", "server_error", None)
                )

    # -- Chat completions ----------------------------------------------------------------

    async def _chat(self, ex: Exchange, body: bytes) -> None:
        try:
            request = json.loads(body)
            assert isinstance(request, dict)
        except (ValueError, AssertionError):
            error = error_body(
                f"We could not parse the JSON body. {MARKER}", "invalid_request_error", None
            )
            await ex.send_json(400, error)
            return
        self.requests.append(request)
        model = str(request.get("model", ""))
        if model == "missing-model":
            message = f"The model `{model}` does not exist or you do not have access to it."
            await ex.send_json(404, error_body(message, "invalid_request_error", "model_not_found"))
        elif model in MODEL_ERRORS:
            status, type_, code, message = MODEL_ERRORS[model]
            message = f"{message} {MARKER}"
            headers = [("retry-after", "7")] if status == 429 else []
            param = "messages" if status == 400 else None
            await ex.send_json(status, error_body(message, type_, code, param), headers)
        elif request.get("stream"):
            await self._stream(ex, request)
        else:
            await self._complete(ex, request)

    async def _complete(self, ex: Exchange, request: Json) -> None:
        text = last_user_text(request.get("messages", []))
        lowered = text.lower()
        if "slow-title" in lowered:
            with contextlib.suppress(ClientGone):
                await ex.pause(3)
        if "quoted-title" in lowered:
            content = '"Quoted Title"'
        elif "long-title" in lowered:
            content = LONG_TITLE
        else:
            content = "Title: " + " ".join(text.split()[:5])
        prompt = sum(len(message_text(m)) for m in request.get("messages", [])) // 4 + 1
        completion = len(content.split())
        message = {"role": "assistant", "content": content, "refusal": None}
        await ex.send_json(
            200,
            {
                "id": f"chatcmpl-fake{next(self._ids)}",
                "object": "chat.completion",
                "created": CREATED,
                "model": request.get("model"),
                "system_fingerprint": "fp_fake",
                "choices": [
                    {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
                ],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                },
            },
        )

    async def _stream(self, ex: Exchange, request: Json) -> None:
        headers = [
            ("content-type", "text/event-stream; charset=utf-8"),
            ("cache-control", "no-cache"),
            ("transfer-encoding", "chunked"),
        ]
        stream = ChunkStream(ex, f"chatcmpl-fake{next(self._ids)}", request, self.chunk_delay)
        try:
            await ex.send(h11.Response(status_code=200, headers=headers))
            if await self._script(stream, request.get("messages", [])):
                self.completed += 1
        except ClientGone:
            self.disconnects += 1

    async def _script(self, s: ChunkStream, messages: list[Json]) -> bool:
        """Play the scripted reply; return True if the stream was fully written."""
        if messages and messages[-1].get("role") == "tool":
            await s.words("Done: the tool returned a result.")
            await s.finish("stop")
            return True
        text = last_user_text(messages)
        keyword, arg = match_keyword(text)
        match keyword:
            case "midstream-error":
                await s.content("Partial ")
                await s.content("answer")
                s.ex.abort()
                return False
            case "stream-error-event":
                await s.content("Partial ")
                await s.event(
                    {"error": {"message": f"{MARKER} overloaded", "type": "server_error"}}
                )
                await s.end()
                return True
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
                    await s.reasoning(piece, field)
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
                return True
            case "usage-none":
                s.include_usage = False
                await s.words("Echo: " + text)
            case "bench":
                for _ in range(int(arg)):
                    await s.content("token ")
            case _:
                await s.words("Echo: " + text)
        await s.finish("tool_calls" if keyword in TOOL_KEYWORDS else "stop")
        return True

    @staticmethod
    async def _two_tools(s: ChunkStream) -> None:
        code = fragments('{"language":"python","code":"print(1)"}')
        card = fragments('{"title":"Card","description":"A card"}')
        await s.tool_header(0, "call_code_1", "generateCode")
        await s.tool_arguments(0, code[0])
        await s.tool_header(1, "call_card_1", "generateCard")
        for pair in itertools.zip_longest(card, code[1:]):
            for index, piece in zip((1, 0), pair):
                if piece is not None:
                    await s.tool_arguments(index, piece)


async def serve(host: str, port: int, chunk_delay: float | None = None) -> None:
    """Serve until SIGTERM/SIGINT, announcing `READY <port>` on stdout once listening."""
    server = FakeUpstream(host, port, chunk_delay=chunk_delay)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"READY {server.port}", flush=True)
    await stop.wait()
    await server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--chunk-delay",
        type=float,
        default=None,
        help="seconds between streamed chunks (default: $FAKE_UPSTREAM_CHUNK_DELAY or 0)",
    )
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port, args.chunk_delay))


if __name__ == "__main__":
    main()

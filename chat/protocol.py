"""The AI SDK UI message stream: typed events, their wire form, and the SSE response body."""

import asyncio
import contextlib
import logging
import math
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import orjson

logger = logging.getLogger(__name__)

CONTENT_TYPE = "text/event-stream"
HEADERS = {
    "Cache-Control": "no-cache",
    "Connection": "keep-alive",
    "X-Vercel-AI-UI-Message-Stream": "v1",
    "X-Accel-Buffering": "no",
}
DONE = b"data: [DONE]\n\n"
# `reset-step` came with ai 7.0.70; ai 6 rejects it. Clients on Node name their version.
RESET_STEP_SINCE = (7, 0, 70)
_AI_SDK_VERSION = re.compile(r"\bai-sdk/(\d+)\.(\d+)\.(\d+)")
KEEPALIVE = b": keep-alive\n\n"
INTERRUPTED = "The reply was interrupted before this tool call finished."
# The message of the cancellation a stream sends its producer when it ends it itself.
TIMEOUT_CANCEL = "stream-timeout"
INTERRUPT_CANCEL = "stream-interrupted"

# The finish reasons every client from ai 6.0.12 to 7.x accepts.
type FinishReason = Literal["stop", "length", "content-filter", "tool-calls", "error", "other"]
type Json = Any


@dataclass(slots=True)
class Start:
    message_id: str

    def wire(self) -> dict[str, Json]:
        return {"type": "start", "messageId": self.message_id}


@dataclass(slots=True)
class StartStep:
    def wire(self) -> dict[str, Json]:
        return {"type": "start-step"}


@dataclass(slots=True)
class ResetStep:
    """`ai` >= 7.0.70 only: drop the current step's parts; its content is sent again."""

    def wire(self) -> dict[str, Json]:
        return {"type": "reset-step"}


@dataclass(slots=True)
class FinishStep:
    def wire(self) -> dict[str, Json]:
        return {"type": "finish-step"}


@dataclass(slots=True)
class _Block:
    """An event about one text or reasoning block; subclasses only name the type."""

    TYPE: ClassVar[str] = ""
    id: str

    def wire(self) -> dict[str, Json]:
        return {"type": self.TYPE, "id": self.id}


@dataclass(slots=True)
class _BlockDelta:
    TYPE: ClassVar[str] = ""
    id: str
    delta: str

    def wire(self) -> dict[str, Json]:
        return {"type": self.TYPE, "id": self.id, "delta": self.delta}


class TextStart(_Block):
    __slots__ = ()
    TYPE = "text-start"


class TextDelta(_BlockDelta):
    __slots__ = ()
    TYPE = "text-delta"


class TextEnd(_Block):
    __slots__ = ()
    TYPE = "text-end"


class ReasoningStart(_Block):
    __slots__ = ()
    TYPE = "reasoning-start"


class ReasoningDelta(_BlockDelta):
    __slots__ = ()
    TYPE = "reasoning-delta"


class ReasoningEnd(_Block):
    __slots__ = ()
    TYPE = "reasoning-end"


@dataclass(slots=True)
class ToolInputStart:
    tool_call_id: str
    tool_name: str

    def wire(self) -> dict[str, Json]:
        return {
            "type": "tool-input-start",
            "toolCallId": self.tool_call_id,
            "toolName": self.tool_name,
        }


@dataclass(slots=True)
class ToolInputDelta:
    tool_call_id: str
    input_text_delta: str

    def wire(self) -> dict[str, Json]:
        return {
            "type": "tool-input-delta",
            "toolCallId": self.tool_call_id,
            "inputTextDelta": self.input_text_delta,
        }


@dataclass(slots=True)
class ToolInputAvailable:
    tool_call_id: str
    tool_name: str
    input: Json

    def wire(self) -> dict[str, Json]:
        return {
            "type": "tool-input-available",
            "toolCallId": self.tool_call_id,
            "toolName": self.tool_name,
            "input": self.input,
        }


@dataclass(slots=True)
class ToolInputError:
    tool_call_id: str
    tool_name: str
    input: Json
    error_text: str

    def wire(self) -> dict[str, Json]:
        return {
            "type": "tool-input-error",
            "toolCallId": self.tool_call_id,
            "toolName": self.tool_name,
            "input": self.input,
            "errorText": self.error_text,
        }


@dataclass(slots=True)
class ToolOutputAvailable:
    tool_call_id: str
    output: Json

    def wire(self) -> dict[str, Json]:
        return {
            "type": "tool-output-available",
            "toolCallId": self.tool_call_id,
            "output": self.output,
        }


@dataclass(slots=True)
class ToolOutputError:
    tool_call_id: str
    error_text: str

    def wire(self) -> dict[str, Json]:
        return {
            "type": "tool-output-error",
            "toolCallId": self.tool_call_id,
            "errorText": self.error_text,
        }


@dataclass(slots=True)
class Finish:
    finish_reason: FinishReason
    message_metadata: dict[str, Json] | None = None

    def wire(self) -> dict[str, Json]:
        chunk: dict[str, Json] = {"type": "finish", "finishReason": self.finish_reason}
        if self.message_metadata is not None:
            chunk["messageMetadata"] = self.message_metadata
        return chunk


@dataclass(slots=True)
class Error:
    error_text: str

    def wire(self) -> dict[str, Json]:
        return {"type": "error", "errorText": self.error_text}


type Event = (
    Start
    | StartStep
    | FinishStep
    | ResetStep
    | TextStart
    | TextDelta
    | TextEnd
    | ReasoningStart
    | ReasoningDelta
    | ReasoningEnd
    | ToolInputStart
    | ToolInputDelta
    | ToolInputAvailable
    | ToolInputError
    | ToolOutputAvailable
    | ToolOutputError
    | Finish
    | Error
)


def accepts_reset_step(user_agent: str) -> bool:
    """False when the client says it runs an `ai` older than 7.0.70 (ai 6 on Node sends
    `ai-sdk/<version>` in User-Agent; ai 7 and browsers send nothing, and are trusted to match
    the deployment's setting)."""
    found = _AI_SDK_VERSION.search(user_agent)
    return found is None or tuple(map(int, found.groups())) >= RESET_STEP_SINCE


def encode(event: Event) -> bytes:
    return b"data: " + orjson.dumps(event.wire()) + b"\n\n"


@dataclass(slots=True)
class StreamLimits:
    keepalive_seconds: float
    idle_timeout_seconds: float
    total_timeout_seconds: float


class StreamEnded(Exception):
    """The stream ended itself before its producer was done (one of its own limits)."""


class StreamTimeout(StreamEnded):
    """The producer was silent longer than the idle timeout, or the stream ran too long."""


class StreamInterrupted(StreamEnded):
    """The server is shutting down and the stream ran out of its drain time."""


class _Ledger:
    """What the stream has opened, so an error can close it before the `error` chunk."""

    __slots__ = ("blocks", "finished", "started", "step_open", "tool_calls")

    def __init__(self) -> None:
        self.started = False
        self.step_open = False
        self.finished = False
        self.blocks: dict[str, type[TextEnd] | type[ReasoningEnd]] = {}
        self.tool_calls: set[str] = set()

    def note(self, event: Event) -> None:
        # The event classes have no subclasses, so these class patterns match exact types.
        match event:
            case TextDelta() | ReasoningDelta() | ToolInputDelta():
                return
            case TextStart():
                self.blocks[event.id] = TextEnd
            case ReasoningStart():
                self.blocks[event.id] = ReasoningEnd
            case TextEnd() | ReasoningEnd():
                self.blocks.pop(event.id, None)
            case ToolInputStart():
                self.tool_calls.add(event.tool_call_id)
            case ToolOutputAvailable() | ToolOutputError() | ToolInputError():
                self.tool_calls.discard(event.tool_call_id)
            case ResetStep():
                # The client forgets the step's open blocks and partial tool calls.
                self.blocks.clear()
                self.tool_calls.clear()
            case StartStep():
                self.step_open = True
            case FinishStep():
                self.step_open = False
            case Start():
                self.started = True
            case Finish():
                self.finished = True

    def closing(self, error_text: str, message_id: str) -> list[Event]:
        events: list[Event] = [] if self.started else [Start(message_id)]
        events += [end(block_id) for block_id, end in self.blocks.items()]
        events += [ToolOutputError(call_id, INTERRUPTED) for call_id in sorted(self.tool_calls)]
        if self.step_open:
            events.append(FinishStep())
        events += [Error(error_text), Finish("error")]
        return events


_END = object()
CANCEL_REASONS = {StreamTimeout: TIMEOUT_CANCEL, StreamInterrupted: INTERRUPT_CANCEL}


async def stream(
    events: AsyncGenerator[Event, None],
    *,
    limits: StreamLimits,
    message_id: str,
    safe_error: Callable[[BaseException], str],
    drain_deadline: Callable[[], float] = lambda: math.inf,
) -> AsyncIterator[bytes]:
    """Encode `events` as SSE, with keep-alive comments, timeouts and a clean error ending.

    The producer runs in its own task so that a silent model can be answered with keep-alive
    frames. Closing this generator (client disconnect) cancels the producer, which closes the
    upstream connection, and re-raises. An exception in the producer ends the stream with the
    open blocks closed, one `error` chunk (text from `safe_error`), `finish` and `[DONE]`; so
    do the idle and total timeouts (`StreamTimeout`) and the server's shutdown reaching
    `drain_deadline()` (`StreamInterrupted`). When this generator returns, the producer has
    stopped, whatever ended the stream.
    """
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=64)

    async def produce() -> None:
        try:
            async for event in events:
                await queue.put(event)
        except asyncio.CancelledError as cancel:
            # Cancelled while waiting on a full queue, outside the producer: hand it the
            # cancellation, so that it records why it ended (a disconnect is not an error).
            with contextlib.suppress(BaseException):
                await events.athrow(cancel)
            raise
        except Exception as error:  # handed to the consumer, which ends the stream with it
            await queue.put(error)
            return
        finally:
            await events.aclose()
        await queue.put(_END)

    ledger = _Ledger()
    producer = asyncio.create_task(produce())
    cancel_reason: str | None = None
    loop = asyncio.get_running_loop()
    # One timer per stream, re-armed when it fires (not per event): it wakes the consumer when
    # a keep-alive, the idle or total limit, or the drain is due while the producer is silent.
    deadline = time.monotonic() + limits.total_timeout_seconds
    idle_deadline = last_write = time.monotonic()
    idle_deadline += limits.idle_timeout_seconds
    ticker: asyncio.TimerHandle

    def wake() -> None:
        nonlocal ticker
        now = time.monotonic()
        due = min(last_write + limits.keepalive_seconds, idle_deadline, deadline)
        if queue.empty() and (now >= due or now >= drain_deadline()):
            queue.put_nowait(_WAKE)
            due = now + limits.keepalive_seconds
        # Not sooner than MIN_WAKE_SECONDS: a consumer busy with events writes soon anyway.
        ticker = loop.call_later(max(MIN_WAKE_SECONDS, min(due - now, WAKE_SECONDS)), wake)

    ticker = loop.call_later(min(limits.keepalive_seconds, WAKE_SECONDS), wake)
    try:
        while True:
            item = queue.get_nowait() if not queue.empty() else await queue.get()
            now = time.monotonic()
            if now >= drain_deadline():
                item = StreamInterrupted()
            elif now >= deadline or (item is _WAKE and now >= idle_deadline):
                item = StreamTimeout()
            elif item is _WAKE:
                if now - last_write >= limits.keepalive_seconds:
                    last_write = now
                    yield KEEPALIVE
                continue
            else:
                idle_deadline = now + limits.idle_timeout_seconds
            # Everything the producer has ready goes out in one write.
            batch = [item]
            while not queue.empty() and len(batch) < 64:
                batch.append(queue.get_nowait())
            out: list[bytes] = []
            ended = False
            for item in batch:
                if item is _WAKE:
                    continue
                if item is _END:
                    ended = True
                    break
                if isinstance(item, BaseException):
                    if isinstance(item, StreamEnded):
                        cancel_reason = CANCEL_REASONS[type(item)]
                    out += [encode(e) for e in ledger.closing(safe_error(item), message_id)]
                    ended = True
                    break
                ledger.note(item)
                out.append(encode(item))
            if ended:
                out.append(DONE)
                yield b"".join(out)
                return
            if out:
                last_write = time.monotonic()
                yield b"".join(out)
    finally:
        ticker.cancel()
        if not producer.done():
            producer.cancel(cancel_reason)
        # Wait for the producer so the upstream connection is closed before we return.
        await asyncio.gather(producer, return_exceptions=True)


_WAKE = object()
# How often a silent stream looks at the clock: keep-alives and a drain that began meanwhile.
WAKE_SECONDS = 1.0
MIN_WAKE_SECONDS = 0.005

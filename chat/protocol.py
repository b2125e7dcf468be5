"""The AI SDK UI message stream: typed events, their wire form, and the SSE response body."""

import asyncio
import contextlib
import logging
import math
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import orjson

from chat.ticker import ticker

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


CANCEL_REASONS = {StreamTimeout: TIMEOUT_CANCEL, StreamInterrupted: INTERRUPT_CANCEL}

type Write = Callable[[bytes], Awaitable[None]]


class _Pacer:
    """A stream's clock on the loop's ticker: a keep-alive while the producer is silent
    (written by a short task of its own: the stream's task waits on the producer), and the
    stream's task cancelled when the idle or total limit, or the drain's deadline, is
    reached. A write only notes that it happened; the ticker reads the time."""

    __slots__ = (
        "_ticker",
        "deadline",
        "drain_deadline",
        "ended_by",
        "idle_deadline",
        "keepalive",
        "last_write",
        "limits",
        "task",
        "write",
        "writing",
        "wrote",
    )

    def __init__(
        self,
        task: asyncio.Task[Any],
        write: Write,
        limits: StreamLimits,
        drain_deadline: Callable[[], float],
    ) -> None:
        self.task = task
        self.write = write
        self.limits = limits
        self.drain_deadline = drain_deadline
        now = time.monotonic()
        self.deadline = now + limits.total_timeout_seconds
        self.idle_deadline = now + limits.idle_timeout_seconds
        self.last_write = now
        self.wrote = False
        self.writing = True
        self.ended_by: type[StreamEnded] | None = None
        self.keepalive: asyncio.Task[None] | None = None
        self._ticker = ticker()
        shortest = min(
            limits.keepalive_seconds, limits.idle_timeout_seconds, limits.total_timeout_seconds
        )
        self._ticker.add(self, shortest)

    def tick(self, now: float) -> None:
        if self.wrote:
            self.wrote = False
            self.last_write = now
            self.idle_deadline = now + self.limits.idle_timeout_seconds
        if now >= self.drain_deadline():
            self.ended_by = StreamInterrupted
        elif now >= self.deadline or now >= self.idle_deadline:
            self.ended_by = StreamTimeout
        if self.ended_by is not None:
            self.stop()
            self.task.cancel(CANCEL_REASONS[self.ended_by])
        elif now - self.last_write >= self.limits.keepalive_seconds and self.keepalive is None:
            self.last_write = now
            self.keepalive = asyncio.get_running_loop().create_task(self._keep_alive())

    async def _keep_alive(self) -> None:
        try:
            if self.writing:  # the stream may have ended since this was scheduled
                await self.write(KEEPALIVE)
        finally:
            self.keepalive = None

    def stop(self) -> None:
        self.writing = False
        self._ticker.discard(self)


async def pump(
    events: AsyncGenerator[list[Event], None],
    write: Write,
    *,
    limits: StreamLimits,
    message_id: str,
    safe_error: Callable[[BaseException], str],
    drain_deadline: Callable[[], float] = lambda: math.inf,
) -> None:
    """Write `events` (batches, each written at once) as SSE through `write`, with keep-alive
    comments, timeouts and a clean error ending; returns once `[DONE]` is written.

    Everything runs in the calling task: no task, queue or timer per event or per stream.
    The stream's clock on the loop's ticker (`_Pacer`) sends keep-alives while the producer
    is silent, and cancels the stream's task when the idle or total limit (`StreamTimeout`)
    or the drain's deadline (`StreamInterrupted`) is reached. An exception from the
    producer, or one of those limits, ends the stream with the open blocks closed, one
    `error` chunk (text from `safe_error`), `finish` and `[DONE]`. A cancellation from
    elsewhere (the client left) is re-raised once the producer has been closed with it, so
    that it records why it ended.
    """
    task = asyncio.current_task()
    assert task is not None, "pump() runs in a task"
    ledger = _Ledger()
    pacer = _Pacer(task, write, limits, drain_deadline)
    waiting = False  # on the producer: an exception raised there has passed through it
    failure: BaseException | None = None
    try:
        try:
            while True:
                waiting = True
                batch = await anext(events)
                waiting = False
                if pacer.ended_by is not None:  # the limit's cancellation was absorbed
                    raise asyncio.CancelledError(CANCEL_REASONS[pacer.ended_by])
                out = []
                for event in batch:
                    ledger.note(event)
                    out.append(encode(event))
                if ledger.finished:
                    # The producer is done after `finish`: let it end, then write once.
                    with contextlib.suppress(StopAsyncIteration):
                        await anext(events)
                    out.append(DONE)
                    pacer.stop()
                    await write(b"".join(out))
                    return
                pacer.wrote = True
                await write(b"".join(out))
        except StopAsyncIteration:  # without `finish`: the reply is not whole
            failure = RuntimeError("The stream's producer ended without `finish`.")
        except asyncio.CancelledError as cancel:
            pacer.stop()
            ended_by = pacer.ended_by
            if ended_by is None or task.uncancel() > 0:
                if not waiting:  # it waits at a `yield`: hand it the cancellation
                    with contextlib.suppress(BaseException):
                        await events.athrow(cancel)
                raise
            failure = ended_by()
            if not waiting:
                with contextlib.suppress(BaseException):
                    await events.athrow(asyncio.CancelledError(CANCEL_REASONS[ended_by]))
        except Exception as error:  # from the producer (or a bug here): ended below
            failure = error
        pacer.stop()
        assert failure is not None
        closing = ledger.closing(safe_error(failure), message_id)
        await write(b"".join([*map(encode, closing), DONE]))
    finally:
        pacer.stop()
        await events.aclose()

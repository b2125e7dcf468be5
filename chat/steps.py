"""The step loop: call the model, run the tools it asks for, call it again, until done; a
provider that fails before the step's first content is replaced by the next candidate."""

import asyncio
import contextlib
import logging
import secrets
import string
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from agents.tools import Tool, ToolError
from chat import protocol as p
from chat.messages import OpenAIMessage, compact_json
from chat.routing import Attempts, Opened, Router
from chat.translate import BlockIds, ToolCall, Translator, Usage
from chat.upstream import UpstreamFailure, cut_off, empty, stalled
from chat.watch import Watch
from mamba_site import metrics
from mamba_site.errors import ApiError, truncate
from mamba_site.providers import ModelRoute

logger = logging.getLogger(__name__)

ID_ALPHABET = string.ascii_letters + string.digits
INTERNAL_ERROR_TEXT = "An internal error occurred. Try again later."
TIMEOUT_TEXT = "The model took too long to answer."
INTERRUPTED_TEXT = "The server is restarting; send your message again."


def new_message_id() -> str:
    """16 alphanumeric characters, like the AI SDK's generateId(), from one read of the
    system's randomness (a `secrets.choice` per character was 16 system calls)."""
    number = int.from_bytes(secrets.token_bytes(13))  # 104 bits: 62**16 is about 2**95.3
    characters = []
    for _ in range(16):
        number, digit = divmod(number, len(ID_ALPHABET))
        characters.append(ID_ALPHABET[digit])
    return "".join(characters)


def error_text(error: BaseException) -> str:
    """What the client may read about an error that ended a stream; the rest goes to the log."""
    if isinstance(error, p.StreamInterrupted):
        logger.warning("Stream ended by the server's shutdown")
        return INTERRUPTED_TEXT
    if isinstance(error, p.StreamTimeout):
        logger.warning("Stream ended by a timeout")
        return TIMEOUT_TEXT
    if isinstance(error, ApiError):
        return error.detail
    logger.error("Stream failed", exc_info=error)
    return INTERNAL_ERROR_TEXT


@dataclass(slots=True)
class ChatPlan:
    """Everything the stream needs, resolved and validated before the response starts."""

    route: ModelRoute
    agent: str
    messages: list[OpenAIMessage]
    tools: Sequence[Tool]
    max_steps: int
    message_id: str
    tool_timeout: float = 10.0
    tool_output_limit: int = 32 * 1024
    options: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    def request_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"messages": self.messages, **self.options}
        if self.tools:
            params["tools"] = [tool.spec for tool in self.tools]
        return params


@dataclass(frozen=True, slots=True)
class StepPolicy:
    """How a step meets a failing provider: the deadline to open another one, how long the
    provider may be silent, and whether a step that already showed content may be replayed
    on another target (`reset-step`, for clients from `ai` 7.0.70)."""

    first_byte_seconds: float
    idle_seconds: float
    replay: bool = False


class StepLoop:
    """The model calls and tool runs of one chat message, as protocol events."""

    def __init__(
        self,
        plan: ChatPlan,
        router: Router,
        policy: StepPolicy,
        first: Opened,
        attempts: Attempts,
    ) -> None:
        self.plan = plan
        self.router = router
        self.policy = policy
        self.served: Opened = first
        # The first step's upstream, opened before the response started, and what opening it
        # tried (a failover within that step does not go back to a target that failed).
        self._first: Opened | None = first
        self._first_attempts: Attempts | None = attempts
        self._tools = {tool.name: tool for tool in plan.tools}
        self.usage = Usage()
        self.first_token_at: float | None = None
        self.steps = 0
        self.replays = 0
        self.finish_reason: p.FinishReason | None = None
        self.outcome = "running"
        self._tail: list[p.Event] = []
        self._again = False

    async def events(self) -> AsyncGenerator[list[p.Event], None]:
        """The whole message, in batches of events to write at once: `start`, one step per
        model call, `finish`. Each upstream read is one batch; what ends a step (its open
        blocks, tool calls and `finish-step`) goes out with what starts the next one, or with
        `finish`."""
        ids = BlockIds(tag=secrets.token_hex(3))
        outcome = "error"
        metrics.active_streams.inc()
        try:
            pending: list[p.Event] = [p.Start(self.plan.message_id)]
            more = True
            while more:
                # aclosing: if this generator is closed mid-step, the step closes its upstream.
                async with contextlib.aclosing(self._step(ids)) as step:
                    async for batch in step:
                        if pending:
                            batch, pending = pending + batch, []
                        yield batch
                pending += self._tail
                more = self._again
            outcome = "finished"
            pending.append(p.Finish(self.finish_reason or "other", self.metadata()))
            yield pending
        except asyncio.CancelledError as cancel:
            outcome = _cancel_outcome(cancel)
            raise
        except ApiError as error:
            outcome = "timed out" if error.status == 504 else "error"
            raise
        finally:
            metrics.active_streams.dec()
            self.outcome = outcome
            await self.aclose()

    async def aclose(self) -> None:
        """Close a first upstream that no step has taken (the client left before reading)."""
        first, self._first = self._first, None
        if first is not None:
            await first.stream.aclose()

    async def _step(self, ids: BlockIds) -> AsyncGenerator[list[p.Event], None]:
        """One model call and its tool calls. What ends the step is left in `_tail`, and
        `_again` says whether the model should see the tools' results in another step."""
        self.steps += 1
        self._tail, self._again = [], False
        yield [p.StartStep()]
        attempts, self._first_attempts = self._first_attempts, None
        opened = self._first or await self._open(self.router.attempts(self.plan.route))
        self._first = None
        while True:
            translator = Translator(ids=ids)
            try:
                async with contextlib.aclosing(self._read(opened, translator)) as read:
                    async for batch in read:
                        yield batch
                break
            except UpstreamFailure as failure:
                self.router.failed(opened.target, failure)
                shown = translator.produced
                if shown and not self.policy.replay:
                    raise self._ended_by(failure) from None
                if attempts is None:
                    attempts = self.router.attempts(self.plan.route)
                attempts.exclude(opened.target)
                attempts.last = failure
                try:
                    opened = await self._open(attempts)
                except ApiError:
                    # Counted by the router; the client reads what went wrong first.
                    raise failure.error from None
                if shown:
                    self.replays += 1
                    logger.warning("Step %s replayed on %s", self.steps, opened.target.label)
                    yield [p.ResetStep()]
        self.served = opened
        if translator.usage:
            self.usage.add(translator.usage)
        self.finish_reason = translator.finish_reason or "other"
        tail = translator.close()
        calls = [call for call in translator.tool_calls if call.started]
        results: list[OpenAIMessage] = []
        for call in calls:
            tool_events, result = await self._run_tool(call)
            tail += tool_events
            results.append(result)
        tail.append(p.FinishStep())
        self._tail = tail
        if calls and self.steps < self.plan.max_steps:
            plan = self.plan
            plan.messages = [*plan.messages, _assistant_turn(translator, calls), *results]
            self._again = True

    async def _open(self, attempts: Attempts) -> Opened:
        deadline = time.monotonic() + self.policy.first_byte_seconds
        return await self.router.open_stream(
            attempts, self.plan.request_params(), deadline=deadline
        )

    async def _read(
        self, opened: Opened, translator: Translator
    ) -> AsyncGenerator[list[p.Event], None]:
        """The step's events from one upstream, which is closed however this ends; raises
        `UpstreamFailure` for a reply that stalls, breaks, or ends cut off or empty."""
        started = time.perf_counter()
        first_token: float | None = None
        stream = opened.stream
        try:
            async with Watch(min(self.policy.idle_seconds, stream.silence)) as watch:
                while (chunks := await stream.batch()) is not None:
                    events = [event for chunk in chunks for event in translator.feed(chunk)]
                    if not events:
                        watch.touch()
                        continue
                    if first_token is None:
                        first_token = time.perf_counter() - started
                        if self.first_token_at is None:
                            self.first_token_at = time.perf_counter()
                    watch.pause()
                    yield events
                    watch.resume()
            if watch.expired:
                logger.warning("Stream ended by a timeout: %s went silent", opened.target.label)
                raise stalled()
        finally:
            await stream.aclose()
        if translator.finish_reason is None and not (stream.done and translator.produced):
            # A finish reason or [DONE] says the reply is whole; without either it was cut.
            ended = "with [DONE] and nothing else" if stream.done else "without [DONE]"
            logger.warning("Upstream %s ended its reply %s", opened.target.label, ended)
            raise empty() if stream.done else cut_off()
        self.router.succeeded(opened.target, first_token_seconds=first_token)

    def _ended_by(self, failure: UpstreamFailure) -> ApiError:
        metrics.upstream_errors.labels(str(failure.error.code)).inc()
        return failure.error

    async def _run_tool(self, call: ToolCall) -> tuple[list[p.Event], OpenAIMessage]:
        """Validate and run one tool call: its events, and the `tool` message for the model."""
        tool = self._tools.get(call.name)
        try:
            arguments = orjson.loads(call.arguments or "{}")
        except orjson.JSONDecodeError:
            arguments = None
        if tool is None or not isinstance(arguments, dict):
            reason = (
                f"Tool {truncate(call.name, 100)!r} is not available."
                if tool is None
                else "The tool arguments are not valid JSON."
            )
            shown = arguments if isinstance(arguments, dict) else call.arguments
            event = p.ToolInputError(call.id, call.name, shown, reason)
            return [event], _tool_message(call, {"error": reason})
        events: list[p.Event] = [p.ToolInputAvailable(call.id, call.name, arguments)]
        try:
            output = await self._execute(tool, arguments)
        except ToolError as error:
            reason = str(error)
        except Exception:
            logger.exception("Tool %s failed", call.name)
            reason = f"Tool {call.name!r} failed."
        else:
            events.append(p.ToolOutputAvailable(call.id, output))
            return events, _tool_message(call, output)
        # The model is told the tool failed, so it can recover in the next step.
        events.append(p.ToolOutputError(call.id, reason))
        return events, _tool_message(call, {"error": reason})

    async def _execute(self, tool: Tool, arguments: dict[str, Any]) -> Any:
        """Run a tool within the plan's time and output size limits; raises `ToolError`."""
        validated = tool.validate(arguments)
        try:
            async with asyncio.timeout(self.plan.tool_timeout):
                output = await tool.execute(validated)
        except TimeoutError:
            raise ToolError(
                f"Tool {tool.name!r} took longer than {self.plan.tool_timeout:g} s."
            ) from None
        if tool.output_limited and len(orjson.dumps(output)) > self.plan.tool_output_limit:
            raise ToolError(
                f"Tool {tool.name!r} returned more than {self.plan.tool_output_limit} bytes."
            )
        return output

    def metadata(self) -> dict[str, Any]:
        now = time.perf_counter()
        timings: dict[str, Any] = {"totalMs": round((now - self.plan.started) * 1000)}
        if self.first_token_at is not None:
            timings["timeToFirstTokenMs"] = round((self.first_token_at - self.plan.started) * 1000)
        usage = self.usage
        return {
            "model": self.served.model,
            "provider": self.served.target.provider,
            "providerModel": self.served.target.model,
            "agent": self.plan.agent,
            "steps": self.steps,
            "usage": {
                "inputTokens": usage.input_tokens,
                "outputTokens": usage.output_tokens,
                "totalTokens": usage.input_tokens + usage.output_tokens,
                "reasoningTokens": usage.reasoning_tokens,
                "cachedInputTokens": usage.cached_input_tokens,
            },
            "timings": timings,
        }


def _cancel_outcome(cancel: asyncio.CancelledError) -> str:
    """Why the stream's task was cancelled: one of its own limits, or the client leaving."""
    if p.TIMEOUT_CANCEL in cancel.args:
        return "timed out"
    if p.INTERRUPT_CANCEL in cancel.args:
        return "interrupted"
    metrics.client_disconnects.inc()
    logger.info("Client disconnected; upstream closed")
    return "disconnected"


def _assistant_turn(translator: Translator, calls: list[ToolCall]) -> OpenAIMessage:
    return {
        "role": "assistant",
        "content": "".join(translator.text) or None,
        "tool_calls": [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": _json_or_empty(call.arguments)},
            }
            for call in calls
        ],
    }


def _tool_message(call: ToolCall, output: Any) -> OpenAIMessage:
    content = output if isinstance(output, str) else compact_json(output)
    return {"role": "tool", "tool_call_id": call.id, "content": content}


def _json_or_empty(arguments: str) -> str:
    """Arguments as the model sent them if they are JSON; providers reject anything else."""
    try:
        orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return "{}"
    return arguments

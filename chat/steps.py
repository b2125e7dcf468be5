"""The step loop: call the model, run the tools it asks for, call it again, until done."""

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

from agents.catalog import known_model_ids
from agents.tools import Tool, ToolError
from chat import protocol as p
from chat.messages import OpenAIMessage, compact_json
from chat.translate import BlockIds, ToolCall, Translator, Usage
from chat.upstream import Route, UpstreamStream, open_stream
from mamba_site import metrics
from mamba_site.errors import ApiError

logger = logging.getLogger(__name__)

ID_ALPHABET = string.ascii_letters + string.digits
INTERNAL_ERROR_TEXT = "An internal error occurred. Try again later."
TIMEOUT_TEXT = "The model took too long to answer."
INTERRUPTED_TEXT = "The server is restarting; send your message again."


def new_message_id() -> str:
    """16 alphanumeric characters, like the AI SDK's generateId()."""
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(16))


def error_text(error: BaseException) -> str:
    """What the client may read about an error that ended a stream; the rest goes to the log."""
    if isinstance(error, ApiError):
        return error.detail
    if isinstance(error, p.StreamInterrupted):
        logger.warning("Stream ended by the server's shutdown")
        return INTERRUPTED_TEXT
    if isinstance(error, p.StreamTimeout):
        logger.warning("Stream ended by a timeout")
        return TIMEOUT_TEXT
    logger.error("Stream failed", exc_info=error)
    return INTERNAL_ERROR_TEXT


@dataclass(slots=True)
class ChatPlan:
    """Everything the stream needs, resolved and validated before the response starts."""

    route: Route
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


async def start(plan: ChatPlan) -> "ChatRun":
    """Open the first model call, so that its failure is still an HTTP error, not a stream."""
    return ChatRun(plan, await open_stream(plan.route, plan.request_params()))


class ChatRun:
    def __init__(self, plan: ChatPlan, first: UpstreamStream) -> None:
        self.plan = plan
        self._first: UpstreamStream | None = first
        self._tools = {tool.name: tool for tool in plan.tools}
        self.usage = Usage()
        self.first_token_at: float | None = None
        self.steps = 0
        self.finish_reason: p.FinishReason | None = None
        self.outcome = "running"

    async def events(self) -> AsyncGenerator[p.Event, None]:
        """The whole message: `start`, one step per model call, `finish`."""
        ids = BlockIds(tag=secrets.token_hex(3))
        outcome = "error"
        metrics.active_streams.inc()
        try:
            yield p.Start(self.plan.message_id)
            more = True
            while more:
                more = False
                # aclosing: if this generator is closed mid-step, the step closes its upstream.
                async with contextlib.aclosing(self._step(ids)) as step:
                    async for event in step:
                        if event is _CALL_AGAIN:
                            more = True
                        else:
                            yield event
            outcome = "finished"
            yield p.Finish(self.finish_reason or "other", self.metadata())
        except asyncio.CancelledError as cancel:
            outcome = _cancel_outcome(cancel)
            raise
        finally:
            metrics.active_streams.dec()
            self.outcome = outcome
            self._record(outcome)

    async def _step(self, ids: BlockIds) -> AsyncGenerator[Any, None]:
        """One model call and its tool calls; ends with `_CALL_AGAIN` when the model should
        see the tools' results in another step."""
        plan = self.plan
        upstream = self._first or await open_stream(plan.route, plan.request_params())
        self._first = None
        translator = Translator(ids=ids)
        try:  # the upstream is closed however this generator ends, at any of its yields
            self.steps += 1
            yield p.StartStep()
            async for chunk in upstream.chunks():
                for event in translator.feed(chunk):
                    yield event
                if self.first_token_at is None and translator.produced:
                    self.first_token_at = time.perf_counter()
        finally:
            await upstream.aclose()
        for event in translator.close():
            yield event
        if translator.usage:
            self.usage.add(translator.usage)
        self.finish_reason = translator.finish_reason or "other"
        calls = [call for call in translator.tool_calls if call.started]
        results: list[OpenAIMessage] = []
        for call in calls:
            events, result = await self._run_tool(call)
            for event in events:
                yield event
            results.append(result)
        yield p.FinishStep()
        if calls and self.steps < plan.max_steps:
            plan.messages = [*plan.messages, _assistant_turn(translator, calls), *results]
            yield _CALL_AGAIN

    async def _run_tool(self, call: ToolCall) -> tuple[list[p.Event], OpenAIMessage]:
        """Validate and run one tool call: its events, and the `tool` message for the model."""
        tool = self._tools.get(call.name)
        try:
            arguments = orjson.loads(call.arguments or "{}")
        except orjson.JSONDecodeError:
            arguments = None
        if tool is None or not isinstance(arguments, dict):
            reason = (
                f"Tool {call.name!r} is not available."
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
            "model": self.plan.route.label,
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

    def _record(self, outcome: str) -> None:
        """The stream's metrics and its log line."""
        plan, usage = self.plan, self.usage
        # Model names come from clients: only the catalog's become label values.
        model = plan.route.label if plan.route.label in known_model_ids() else "other"
        if self.first_token_at is not None:
            ttft = self.first_token_at - plan.started
            metrics.time_to_first_token.labels(model, plan.agent).observe(ttft)
        elapsed = time.perf_counter() - plan.started
        metrics.stream_duration.labels(model, plan.agent, outcome).observe(elapsed)
        metrics.tokens.labels(model, plan.agent, "input").inc(usage.input_tokens)
        metrics.tokens.labels(model, plan.agent, "output").inc(usage.output_tokens)
        meta = self.metadata()
        logger.info(
            "chat %s: model=%s agent=%s steps=%s finish=%s input_tokens=%s output_tokens=%s "
            "ttft_ms=%s total_ms=%s",
            outcome,
            meta["model"],
            meta["agent"],
            self.steps,
            self.finish_reason or "-",
            self.usage.input_tokens,
            self.usage.output_tokens,
            meta["timings"].get("timeToFirstTokenMs", "-"),
            meta["timings"]["totalMs"],
            extra={
                "model": meta["model"],
                "agent": meta["agent"],
                "outcome": outcome,
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "ttft_ms": meta["timings"].get("timeToFirstTokenMs"),
                "total_ms": meta["timings"]["totalMs"],
            },
        )


_CALL_AGAIN = object()


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

"""Upstream Chat Completions chunks to UI message stream events: a pure state machine."""

from dataclasses import dataclass, field
from typing import Any

from chat import protocol as p

FINISH_REASONS: dict[str, p.FinishReason] = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content-filter",
    "tool_calls": "tool-calls",
    "function_call": "tool-calls",
}


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str = ""
    arguments: str = ""
    started: bool = False


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cached_input_tokens: int = 0

    def add(self, usage: dict[str, Any]) -> None:
        self.input_tokens += usage.get("prompt_tokens") or 0
        self.output_tokens += usage.get("completion_tokens") or 0
        details = usage.get("completion_tokens_details") or {}
        self.reasoning_tokens += details.get("reasoning_tokens") or 0
        prompt_details = usage.get("prompt_tokens_details") or {}
        self.cached_input_tokens += prompt_details.get("cached_tokens") or 0


@dataclass(slots=True)
class Translator:
    """One model call (one step). Feed it chunks; `close()` ends the open blocks.

    `ids` makes block ids that are unique within the whole message; the translator of each step
    shares it.
    """

    ids: "BlockIds"
    text_id: str | None = None
    reasoning_id: str | None = None
    text: list[str] = field(default_factory=list)
    calls: dict[int, ToolCall] = field(default_factory=dict)
    finish_reason: p.FinishReason | None = None
    usage: dict[str, Any] | None = None
    produced: bool = False

    def feed(self, chunk: dict[str, Any]) -> list[p.Event]:
        usage = chunk.get("usage")
        if usage:
            self.usage = usage
        choices = chunk.get("choices")
        if not choices:
            return []
        choice = choices[0]
        delta = choice.get("delta") or {}
        events: list[p.Event] = []
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning and isinstance(reasoning, str):
            events += self._reasoning(reasoning)
        # A refusal streams in `refusal` instead of `content`; the user should read it too.
        content = delta.get("content") or delta.get("refusal")
        if content and isinstance(content, str):
            events += self._text(content)
        tool_calls = delta.get("tool_calls")
        if tool_calls:
            events += self._tool_calls(tool_calls)
        reason = choice.get("finish_reason")
        if reason:
            self.finish_reason = FINISH_REASONS.get(reason, "other")
        if events:
            self.produced = True
        return events

    def close(self) -> list[p.Event]:
        return self._end_reasoning() + self._end_text()

    @property
    def tool_calls(self) -> list[ToolCall]:
        return [self.calls[index] for index in sorted(self.calls)]

    def _reasoning(self, delta: str) -> list[p.Event]:
        events = self._end_text()
        if self.reasoning_id is None:
            self.reasoning_id = self.ids.next("reasoning")
            events.append(p.ReasoningStart(self.reasoning_id))
        events.append(p.ReasoningDelta(self.reasoning_id, delta))
        return events

    def _text(self, delta: str) -> list[p.Event]:
        events = self._end_reasoning()
        if self.text_id is None:
            self.text_id = self.ids.next("text")
            events.append(p.TextStart(self.text_id))
        self.text.append(delta)
        events.append(p.TextDelta(self.text_id, delta))
        return events

    def _tool_calls(self, deltas: list[dict[str, Any]]) -> list[p.Event]:
        events = self._end_reasoning() + self._end_text()
        for position, delta in enumerate(deltas):
            index = delta.get("index", position)
            function = delta.get("function") or {}
            call = self.calls.get(index)
            if call is None:
                call = self.calls[index] = ToolCall(id=delta.get("id") or self.ids.next("call"))
            if not call.name and function.get("name"):
                call.name = function["name"]
            arguments = function.get("arguments") or ""
            call.arguments += arguments
            if call.started:
                if arguments:
                    events.append(p.ToolInputDelta(call.id, arguments))
            elif call.name:
                # The part is named after the tool, so it can only start once the name is known.
                call.started = True
                events.append(p.ToolInputStart(call.id, call.name))
                if call.arguments:
                    events.append(p.ToolInputDelta(call.id, call.arguments))
        return events

    def _end_text(self) -> list[p.Event]:
        if self.text_id is None:
            return []
        end, self.text_id = p.TextEnd(self.text_id), None
        return [end]

    def _end_reasoning(self) -> list[p.Event]:
        if self.reasoning_id is None:
            return []
        end, self.reasoning_id = p.ReasoningEnd(self.reasoning_id), None
        return [end]


@dataclass(slots=True)
class BlockIds:
    """Block ids unique within one message: `<prefix>-<message tag>-<n>`."""

    tag: str
    count: int = 0

    def next(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}-{self.tag}-{self.count}"

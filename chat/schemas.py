"""Request and response bodies of the chat API, as `useChat` (AI SDK 5 to 7) sends them."""

from typing import Annotated, Any, Literal, cast

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    JsonValue,
    SkipValidation,
    Tag,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError

NAME_MAX = 200


# -- Limits ----------------------------------------------------------------------------------
# `mamba_site.bodies` passes the settings' limits in pydantic's validation context
# (`max_messages`, `max_parts_per_message`, `max_text_chars`, `max_json_depth`); validated
# without a context, a body has no limits.


def _limit(info: ValidationInfo, name: str) -> int | None:
    context = info.context
    value = context.get(name) if isinstance(context, dict) else None
    return value if isinstance(value, int) else None


def _at_most(name: str, error: str, message: str) -> BeforeValidator:
    """A before-validator refusing a list longer than the context's limit `name`."""

    def check(value: Any, info: ValidationInfo) -> Any:
        limit = _limit(info, name)
        if limit is not None and isinstance(value, list) and len(value) > limit:
            raise PydanticCustomError(error, message, {"limit": limit, "count": len(value)})
        return value

    return BeforeValidator(check)


def json_depth(value: Any, *, stop_above: int) -> int:
    """How deep `value` nests lists and objects (a scalar: 0), counted up to `stop_above` + 1."""
    depth = 0
    containers = [value] if isinstance(value, dict | list) else []
    while containers and depth <= stop_above:
        depth += 1
        children: list[Any] = []
        for container in containers:
            children.extend(container.values() if isinstance(container, dict) else container)
        containers = [child for child in children if isinstance(child, dict | list)]
    return depth


def _shallow(value: Any, info: ValidationInfo) -> Any:
    limit = _limit(info, "max_json_depth")
    if limit is not None and json_depth(value, stop_above=limit) > limit:
        raise PydanticCustomError(
            "json_too_deep", "JSON may nest at most {limit} levels deep", {"limit": limit}
        )
    return value


# Tool inputs and outputs, data parts: JSON as the parser made it, so only JSON types. Checking
# that again as `JsonValue` visited every value in pydantic, most of the cost of a large body.
FreeJson = Annotated[SkipValidation[JsonValue], AfterValidator(_shallow)]


class Part(BaseModel):
    # Unknown keys are dropped, as the AI SDK's own validateUIMessages does.
    model_config = ConfigDict(extra="ignore", frozen=True)


class TextPart(Part):
    type: Literal["text"]
    text: str


class ReasoningPart(Part):
    type: Literal["reasoning"]
    text: str


class FilePart(Part):
    type: Literal["file"]
    media_type: str = Field(alias="mediaType", min_length=1)
    url: str = Field(min_length=1)
    filename: str | None = None


class StepStartPart(Part):
    type: Literal["step-start"]


ToolState = Literal[
    "input-streaming",
    "input-available",
    "approval-requested",
    "approval-responded",
    "output-available",
    "output-error",
    "output-denied",
]


class Approval(Part):
    id: str = ""
    approved: bool | None = None
    reason: str | None = None


class ToolPart(Part):
    """A `tool-<name>` part (static tool) or a `dynamic-tool` part (with `toolName`)."""

    type: str = Field(pattern=r"^(tool-.+|dynamic-tool)$")
    tool_name: str | None = Field(default=None, alias="toolName")
    tool_call_id: str = Field(alias="toolCallId", min_length=1)
    state: ToolState
    input: FreeJson = None
    output: FreeJson = None
    error_text: str | None = Field(default=None, alias="errorText")
    approval: Approval | None = None

    @model_validator(mode="after")
    def _dynamic_tool_has_name(self) -> "ToolPart":
        if self.type == "dynamic-tool" and not self.tool_name:
            raise ValueError("a dynamic-tool part needs a toolName")
        return self

    @property
    def name(self) -> str:
        if self.type == "dynamic-tool":
            # _dynamic_tool_has_name has checked that a dynamic-tool part has its name.
            return cast(str, self.tool_name)
        return self.type.removeprefix("tool-")


class DataPart(Part):
    type: str = Field(pattern=r"^data-.+$")
    data: FreeJson = None


class OtherPart(Part):
    """Parts that never reach the model (sources, reasoning files, custom, steering)."""

    type: Literal["source-url", "source-document", "reasoning-file", "custom", "steering-message"]


def _part_tag(value: Any) -> str | None:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    if not isinstance(kind, str):
        return None
    if kind.startswith("tool-") or kind == "dynamic-tool":
        return "tool"
    if kind.startswith("data-"):
        return "data"
    if kind in ("source-url", "source-document", "reasoning-file", "custom", "steering-message"):
        return "other"
    return kind


UIMessagePart = Annotated[
    Annotated[TextPart, Tag("text")]
    | Annotated[ReasoningPart, Tag("reasoning")]
    | Annotated[FilePart, Tag("file")]
    | Annotated[StepStartPart, Tag("step-start")]
    | Annotated[ToolPart, Tag("tool")]
    | Annotated[DataPart, Tag("data")]
    | Annotated[OtherPart, Tag("other")],
    Discriminator(
        _part_tag,
        custom_error_type="invalid_part_type",
        custom_error_message="Unknown part type",
    ),
]


class UIMessage(BaseModel):
    """A `UIMessage`; the original service's `{role, content}` form is accepted too."""

    model_config = ConfigDict(extra="ignore")

    id: str = ""
    role: Literal["system", "user", "assistant"]
    parts: Annotated[
        list[UIMessagePart],
        _at_most(
            "max_parts_per_message",
            "too_many_parts",
            "A message may have at most {limit} parts; this one has {count}",
        ),
    ] = Field(default_factory=list)
    content: str | None = Field(default=None, description="Plain text instead of `parts`.")

    @model_validator(mode="after")
    def _has_content(self) -> "UIMessage":
        if self.content is not None:
            if self.parts:
                raise ValueError("give either parts or content, not both")
            self.parts = [TextPart(type="text", text=self.content)]
        elif not self.parts and self.role != "assistant":
            raise ValueError("a message needs at least one part")
        return self


Messages = Annotated[
    list[UIMessage],
    _at_most(
        "max_messages", "too_many_messages", "At most {limit} messages are allowed; got {count}"
    ),
]


def _check_text(messages: list[UIMessage] | None, info: ValidationInfo) -> None:
    limit = _limit(info, "max_text_chars")
    if limit is None or not messages:
        return
    count = sum(
        len(part.text)
        for message in messages
        for part in message.parts
        if isinstance(part, TextPart | ReasoningPart)
    )
    if count > limit:
        raise PydanticCustomError(
            "too_much_text",
            "The messages may hold at most {limit} characters of text; these hold {count}",
            {"limit": limit, "count": count},
        )


class ChatRequest(BaseModel):
    """The body of POST /chat."""

    model_config = ConfigDict(extra="ignore")

    messages: Messages
    model: str | None = Field(default=None, min_length=1, max_length=NAME_MAX)
    agent: str | None = Field(default=None, min_length=1, max_length=NAME_MAX)
    tools: list[Annotated[str, Field(min_length=1, max_length=NAME_MAX)]] | None = None
    id: str | None = None
    trigger: Literal["submit-message", "regenerate-message"] | None = None
    message_id: str | None = Field(default=None, alias="messageId")

    @model_validator(mode="after")
    def _text_within_limit(self, info: ValidationInfo) -> "ChatRequest":
        _check_text(self.messages, info)
        return self


class TitleRequest(BaseModel):
    """The body of POST /title/generate: the original's form, or the conversation's messages."""

    model_config = ConfigDict(extra="ignore")

    user_message: str | None = Field(
        default=None, alias="userMessage", min_length=1, max_length=10000
    )
    conversation_id: str | None = Field(default=None, alias="conversationId")
    messages: Messages | None = None
    model: str | None = Field(default=None, min_length=1, max_length=NAME_MAX)

    @model_validator(mode="after")
    def _has_text(self, info: ValidationInfo) -> "TitleRequest":
        if not self.user_message and not self.messages:
            raise ValueError("give userMessage or a non-empty messages list")
        _check_text(self.messages, info)
        return self


class TitleResponse(BaseModel):
    title: str = Field(description="The cleaned title; empty when `useFallback` is true.")
    use_fallback: bool = Field(
        alias="useFallback", description="True when the client should use its own title."
    )


class ModelInfo(BaseModel):
    id: str
    name: str
    provider: str
    description: str
    context_window: int
    supports_tools: bool


class AgentInfo(BaseModel):
    slug: str = Field(description="The value to send as `agent` in POST /chat.")
    name: str
    description: str
    tools: list[str]


class ModelsResponse(BaseModel):
    models: list[ModelInfo]
    agents: list[AgentInfo]


class ErrorResponse(BaseModel):
    detail: str = Field(description="A message safe to show to a user.")
    code: str = Field(description="A stable error code, such as VALIDATION_ERROR.")
    request_id: str
    errors: list[dict[str, str]] | None = Field(
        default=None, description="For VALIDATION_ERROR: each field path (`loc`) and message."
    )

"""Request and response bodies of the chat API, as `useChat` (AI SDK 5 to 7) sends them."""

from typing import Annotated, Any, Literal, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    JsonValue,
    Tag,
    model_validator,
)

NAME_MAX = 200


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
    input: JsonValue = None
    output: JsonValue = None
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
    data: JsonValue = None


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
    parts: list[UIMessagePart] = Field(default_factory=list)
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


class ChatRequest(BaseModel):
    """The body of POST /chat."""

    model_config = ConfigDict(extra="ignore")

    messages: list[UIMessage]
    model: str | None = Field(default=None, min_length=1, max_length=NAME_MAX)
    agent: str | None = Field(default=None, min_length=1, max_length=NAME_MAX)
    tools: list[Annotated[str, Field(min_length=1, max_length=NAME_MAX)]] | None = None
    id: str | None = None
    trigger: Literal["submit-message", "regenerate-message"] | None = None
    message_id: str | None = Field(default=None, alias="messageId")


class TitleRequest(BaseModel):
    """The body of POST /title/generate: the original's form, or the conversation's messages."""

    model_config = ConfigDict(extra="ignore")

    user_message: str | None = Field(
        default=None, alias="userMessage", min_length=1, max_length=10000
    )
    conversation_id: str | None = Field(default=None, alias="conversationId")
    messages: list[UIMessage] | None = None
    model: str | None = Field(default=None, min_length=1, max_length=NAME_MAX)

    @model_validator(mode="after")
    def _has_text(self) -> "TitleRequest":
        if not self.user_message and not self.messages:
            raise ValueError("give userMessage or a non-empty messages list")
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

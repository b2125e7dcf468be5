"""The tool registry: display tools the frontend renders (PROTOCOL.md §10) and server tools."""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agents.complexity import CodeError, analyze
from agents.search import notes_search
from mamba_site.db import DatabaseUnavailable
from mamba_site.errors import truncate

type Json = Any


class ToolError(ValueError):
    """A tool could not produce a result; the message is safe to show and to give the model."""


class ToolInputInvalid(ToolError):
    """The model's arguments do not match the tool's schema."""


class ToolArgs(BaseModel):
    # Models often send null for an optional key; drop such keys rather than fail.
    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _drop_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None}
        return data


class FormOption(ToolArgs):
    label: str
    value: str


class FormField(ToolArgs):
    id: str = Field(min_length=1)
    type: Literal[
        "text",
        "textarea",
        "select",
        "checkbox",
        "radio",
        "date",
        "slider",
        "file",
        "number",
        "email",
    ]
    label: str
    placeholder: str | None = None
    required: bool | None = None
    defaultValue: str | int | float | bool | None = None
    options: list[FormOption] | None = Field(default=None, description="For select and radio.")
    min: int | float | None = None
    max: int | float | None = None
    step: int | float | None = None


class FormArgs(ToolArgs):
    title: str
    description: str | None = None
    submitLabel: str | None = None
    fields: list[FormField] = Field(min_length=1)


class ChartPoint(ToolArgs):
    label: str
    value: int | float


class ChartArgs(ToolArgs):
    chartType: Literal["line", "bar", "pie", "area"]
    title: str
    description: str | None = None
    data: list[ChartPoint] = Field(min_length=1)


class CodeArgs(ToolArgs):
    language: str = Field(min_length=1)
    code: str
    filename: str | None = None
    editable: bool | None = None
    showLineNumbers: bool | None = None


class CardMedia(ToolArgs):
    type: Literal["image", "video"]
    url: str = Field(min_length=1)
    alt: str | None = None


class CardAction(ToolArgs):
    label: str
    action: str
    variant: Literal["default", "secondary", "destructive", "outline"] | None = None


class CardArgs(ToolArgs):
    title: str
    description: str | None = None
    content: str | None = None
    media: CardMedia | None = None
    actions: list[CardAction] | None = None


class FunctionSpec(TypedDict):
    name: str
    description: str
    parameters: dict[str, Json]


class ToolSpec(TypedDict):
    """An entry of the OpenAI `tools` request parameter."""

    type: Literal["function"]
    function: FunctionSpec


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    args: type[ToolArgs]
    kind: Literal["display", "server"]
    execute: Callable[[ToolArgs], Awaitable[Json]]
    # The OpenAI `tools` entry, built once: schema generation is too slow for every request.
    spec: ToolSpec = field(init=False)

    def __post_init__(self) -> None:
        function: FunctionSpec = {
            "name": self.name,
            "description": self.description,
            "parameters": openai_parameters(self.args),
        }
        spec: ToolSpec = {"type": "function", "function": function}
        object.__setattr__(self, "spec", spec)

    @property
    def parameters(self) -> dict[str, Json]:
        return self.spec["function"]["parameters"]

    @property
    def output_limited(self) -> bool:
        """Whether the output must fit in `MAMBA_TOOLS__MAX_OUTPUT_BYTES` (server tools).

        A display tool's output is the model's own validated arguments plus a `type`: it is
        bounded by what the model streamed (its output token limit), and a long
        `generateCode` block is a valid result, not an error."""
        return self.kind == "server"

    def validate(self, arguments: Json) -> ToolArgs:
        try:
            return self.args.model_validate(arguments)
        except ValidationError as error:
            raise ToolInputInvalid(_summarise(self.name, error)) from None


def _summarise(tool_name: str, error: ValidationError) -> str:
    """A short message naming the fields, never echoing the model's input."""
    problems = [
        f"{truncate('.'.join(str(p) for p in e['loc']), 200) or 'input'}: {truncate(e['msg'], 200)}"
        for e in error.errors(include_url=False, include_input=False)[:3]
    ]
    more = f" (and {error.error_count() - 3} more)" if error.error_count() > 3 else ""
    return f"Invalid input for {tool_name}: {'; '.join(problems)}{more}"


# Keywords whose value is a schema, a list of schemas, or a map from names to schemas. Every
# other keyword's value is data (`enum`, `default`, `required`, ...) and is copied unchanged.
_SUBSCHEMA = frozenset({"items", "additionalProperties", "not", "contains", "propertyNames"})
_SUBSCHEMA_LISTS = frozenset({"anyOf", "oneOf", "allOf", "prefixItems"})
_SUBSCHEMA_MAPS = frozenset({"properties", "patternProperties"})
# Annotations for people, not for the model; each costs prompt tokens on every request.
_DROPPED = frozenset({"title"})


def openai_parameters(model: type[BaseModel]) -> dict[str, Json]:
    """The model's JSON Schema as OpenAI function parameters: refs inlined, `title`
    annotations dropped. A property named `title` is data, not an annotation: it stays."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def clean(node: Json) -> Json:
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            target = clean(definitions[node["$ref"].rsplit("/", 1)[1]])
            siblings = clean({key: value for key, value in node.items() if key != "$ref"})
            return {**target, **siblings}
        cleaned: dict[str, Json] = {}
        for key, value in node.items():
            if key in _DROPPED:
                continue
            if key in _SUBSCHEMA:
                cleaned[key] = clean(value)
            elif key in _SUBSCHEMA_LISTS:
                cleaned[key] = [clean(item) for item in value]
            elif key in _SUBSCHEMA_MAPS:
                cleaned[key] = {name: clean(item) for name, item in value.items()}
            else:
                cleaned[key] = value
        return cleaned

    # A schema object cleans to an object (a top-level `$ref` to its definition's object).
    return cast(dict[str, Json], clean(schema))


def display_tool(name: str, kind: str, args: type[ToolArgs], description: str) -> Tool:
    async def execute(validated: ToolArgs) -> Json:
        return {"type": kind, **validated.model_dump(mode="json", exclude_none=True)}

    return Tool(name=name, description=description, args=args, kind="display", execute=execute)


DISPLAY_TOOLS = (
    display_tool(
        "generateForm",
        "form",
        FormArgs,
        "Show an interactive FORM to collect input from the user (sign-ups, surveys, settings, "
        "bookings). Use only when the user needs to enter data. Each field needs a unique id, "
        "a type and a label; select and radio fields need options.",
    ),
    display_tool(
        "generateChart",
        "chart",
        ChartArgs,
        "Show a data VISUALIZATION chart (line, bar, pie or area) of numerical data. Use only "
        "when there are numbers to compare or a trend to show. Requires a data array of "
        "{label, value} objects. Do not use for collecting input or for showing code.",
    ),
    display_tool(
        "generateCode",
        "code",
        CodeArgs,
        "Show a block of source CODE with syntax highlighting. Use when the user asks for code, "
        "a script, a configuration file or a command listing. Give the language and the code.",
    ),
    display_tool(
        "generateCard",
        "card",
        CardArgs,
        "Show a rich CARD summarising one item (a product, a place, a person, a recommendation) "
        "with an optional image or video and action buttons. Do not use for tables of numbers "
        "(use a chart) or for code.",
    ),
)


class SearchNotesArgs(ToolArgs):
    query: str = Field(min_length=1, max_length=500, description="Words to look for.")
    limit: int = Field(default=5, ge=1, le=10, description="How many notes to return.")


class AnalyzeComplexityArgs(ToolArgs):
    code: str = Field(min_length=1, max_length=100_000, description="The source code.")
    language: str = Field(default="python", max_length=40, description="e.g. python, javascript")


async def search_notes(args: ToolArgs) -> Json:
    assert isinstance(args, SearchNotesArgs)
    try:
        results = await notes_search(query=args.query, limit=args.limit)
    except DatabaseUnavailable:
        raise ToolError("The notes are unavailable right now.") from None
    return {"query": args.query, "count": len(results), "results": results}


async def analyze_complexity(args: ToolArgs) -> Json:
    assert isinstance(args, AnalyzeComplexityArgs)
    try:
        # Parsing is CPU work: off the event loop, so other streams keep flowing.
        return await asyncio.to_thread(analyze, args.code, args.language)
    except CodeError as error:
        raise ToolError(str(error)) from None


SERVER_TOOLS = (
    Tool(
        name="search_notes",
        description="Search the team's notes (title, body, tags, source URL) by keywords. "
        "Returns the best matches with snippets; cite note titles and URLs in your answer.",
        args=SearchNotesArgs,
        kind="server",
        execute=search_notes,
    ),
    Tool(
        name="analyze_complexity",
        description="Measure a code snippet. For Python: per-function cyclomatic complexity, "
        "length and nesting depth from the syntax tree. For other languages: line, comment "
        "and longest-block measures only. Use its figures; do not invent others.",
        args=AnalyzeComplexityArgs,
        kind="server",
        execute=analyze_complexity,
    ),
)

REGISTRY: dict[str, Tool] = {tool.name: tool for tool in (*DISPLAY_TOOLS, *SERVER_TOOLS)}


def tool_get(*, name: str) -> Tool | None:
    return REGISTRY.get(name)

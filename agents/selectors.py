"""Reads of agents for other apps. Until agents live in the database, the default is in code."""

from dataclasses import dataclass

from agents.tools import DISPLAY_TOOLS
from mamba_site.errors import AgentNotFound

DEFAULT_AGENT_SLUG = "main"

MAIN_PROMPT = """\
You are Mamba, a helpful assistant in a chat application that can show rich content.

Answer in clear, well-structured Markdown. Besides text you have four display tools; the \
application renders their output, so never repeat a tool's content in your text.
- generateChart: numbers to compare or a trend over time (line, bar, pie, area).
- generateForm: when the user must enter or choose data (a sign-up, a booking, a survey).
- generateCode: when the answer is source code, a script, a config file or shell commands.
- generateCard: a summary of one item (a product, a place, a person) with optional media \
and actions.
Use at most the tools the request needs, fill every required field, and after a tool call \
add one short sentence of context rather than a restatement. When a plain answer is enough, \
just answer."""


@dataclass(frozen=True, slots=True)
class AgentSpec:
    slug: str
    name: str
    description: str
    system_prompt: str
    tools: tuple[str, ...]
    model: str = ""
    temperature: float | None = None
    max_output_tokens: int | None = None
    max_steps: int | None = None


DEFAULT_AGENT = AgentSpec(
    slug=DEFAULT_AGENT_SLUG,
    name="Mamba",
    description="A general assistant that can show charts, forms, code and cards.",
    system_prompt=MAIN_PROMPT,
    tools=tuple(tool.name for tool in DISPLAY_TOOLS),
)


async def agent_get(*, slug: str | None) -> AgentSpec:
    """The agent named `slug`, or the default agent; raises `AgentNotFound`."""
    if slug is None or slug == DEFAULT_AGENT.slug:
        return DEFAULT_AGENT
    raise AgentNotFound(
        f"Agent {slug!r} does not exist. Available agents: {DEFAULT_AGENT.slug}.",
        extra={"available_agents": [DEFAULT_AGENT.slug]},
    )


async def agent_list() -> list[AgentSpec]:
    return [DEFAULT_AGENT]

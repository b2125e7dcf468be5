"""Reads of agents for other apps, from an in-process cache with a bounded staleness."""

import logging
from dataclasses import dataclass

from django.conf import settings

from agents.models import Agent
from agents.tools import REGISTRY
from mamba_site.db import DatabaseUnavailable
from mamba_site.errors import AgentNotFound, AgentsUnavailable
from mamba_site.tables import CachedTable

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """An immutable copy of an enabled agent, safe to share between requests."""

    slug: str
    name: str
    description: str
    system_prompt: str
    tools: tuple[str, ...]
    model: str = ""
    temperature: float | None = None
    max_output_tokens: int | None = None
    max_steps: int | None = None
    accept_client_system_messages: bool = False

    @classmethod
    def of(cls, agent: Agent) -> "AgentSpec":
        unknown = [name for name in agent.tools if name not in REGISTRY]
        if unknown:
            logger.warning("Agent %s names unknown tools %s: left out", agent.slug, unknown)
        return cls(
            slug=agent.slug,
            name=agent.name,
            description=agent.description,
            system_prompt=agent.system_prompt,
            tools=tuple(name for name in agent.tools if name in REGISTRY),
            model=agent.model,
            temperature=agent.temperature,
            max_output_tokens=agent.max_output_tokens,
            max_steps=agent.max_steps,
            accept_client_system_messages=agent.accept_client_system_messages,
        )


@dataclass(frozen=True, slots=True)
class _Agents:
    by_slug: dict[str, AgentSpec]
    default: str | None


def _agents_load() -> _Agents:
    rows = list(Agent.objects.enabled())
    return _Agents(
        by_slug={agent.slug: AgentSpec.of(agent) for agent in rows},
        default=next((agent.slug for agent in rows if agent.is_default), None),
    )


# Read again by one task at a time; served as it is while the database fails (stale-if-error).
agent_table: CachedTable[_Agents] = CachedTable("agents", _agents_load, _Agents({}, None))


def agents_invalidate(**kwargs: object) -> None:
    """Forget the cached agents (connected to Agent's save and delete signals)."""
    agent_table.invalidate()


async def _agents() -> _Agents:
    bound = settings.AGENTS_CACHE_SECONDS
    try:
        snapshot = await agent_table.get(max_age=bound, refresh_after=bound / 2)
    except DatabaseUnavailable:
        raise AgentsUnavailable() from None
    return snapshot.value


async def agent_get(*, slug: str | None) -> AgentSpec:
    """The enabled agent `slug`, or the default agent; raises `AgentNotFound`, or
    `AgentsUnavailable` (503) when the agents can neither be read nor served stale."""
    agents = await _agents()
    key = slug if slug is not None else agents.default
    agent = agents.by_slug.get(key) if key is not None else None
    if agent is None:
        # No list of the others: this look-up does not know which the caller may use, and
        # naming agents outside its scope would reveal them. GET /models lists its own.
        if slug:
            raise AgentNotFound(
                f"Agent {slug!r} does not exist or is disabled. GET /models lists the agents "
                "these credentials may use."
            )
        raise AgentNotFound("No default agent is configured: name one with `agent`.")
    return agent


async def agent_list() -> list[AgentSpec]:
    agents = await _agents()
    return [agents.by_slug[slug] for slug in sorted(agents.by_slug)]

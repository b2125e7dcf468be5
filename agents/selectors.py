"""Reads of agents for other apps, from an in-process cache with a bounded staleness."""

import logging
import math
import time
from dataclasses import dataclass, field

from django.conf import settings

from agents.models import Agent
from agents.tools import REGISTRY
from mamba_site.errors import AgentNotFound

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


@dataclass(slots=True)
class _Cache:
    agents: dict[str, AgentSpec] = field(default_factory=dict)
    default: str | None = None
    loaded_at: float = -math.inf
    generation: int = 0


_cache = _Cache()


def agents_invalidate(**kwargs: object) -> None:
    """Forget the cached agents (connected to Agent's save and delete signals)."""
    _cache.generation += 1
    _cache.loaded_at = -math.inf


async def _agents() -> _Cache:
    if time.monotonic() - _cache.loaded_at < settings.AGENTS_CACHE_SECONDS:
        return _cache
    generation = _cache.generation
    rows = [agent async for agent in Agent.objects.enabled()]
    _cache.agents = {agent.slug: AgentSpec.of(agent) for agent in rows}
    _cache.default = next((agent.slug for agent in rows if agent.is_default), None)
    # A save during the query may not be in `rows`: then stay stale-marked and read again.
    if generation == _cache.generation:
        _cache.loaded_at = time.monotonic()
    return _cache


async def agent_get(*, slug: str | None) -> AgentSpec:
    """The enabled agent `slug`, or the default agent; raises `AgentNotFound`."""
    cache = await _agents()
    key = slug if slug is not None else cache.default
    agent = cache.agents.get(key) if key is not None else None
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
    cache = await _agents()
    return [cache.agents[slug] for slug in sorted(cache.agents)]

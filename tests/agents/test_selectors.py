import asyncio

import pytest
from prometheus_client import REGISTRY

from agents.models import Agent
from agents.selectors import agent_get, agent_list
from mamba_site.errors import AgentNotFound

pytestmark = pytest.mark.django_db(transaction=True)


async def test_agent_get_returns_default_without_slug(seeded_agents):
    agent = await agent_get(slug=None)
    assert agent.slug == "main"
    assert agent.tools == ("generateForm", "generateChart", "generateCode", "generateCard")


async def test_agent_get_unknown_slug_names_no_other_agent(seeded_agents):
    # The caller may not be allowed to see them: GET /models lists those it may use.
    with pytest.raises(AgentNotFound) as caught:
        await agent_get(slug="nope")
    assert caught.value.detail == (
        "Agent 'nope' does not exist or is disabled. GET /models lists the agents these "
        "credentials may use."
    )
    assert caught.value.extra == {}


async def test_agent_get_hides_disabled_agents(seeded_agents):
    await Agent.objects.filter(slug="research").aupdate(enabled=False)
    with pytest.raises(AgentNotFound):
        await agent_get(slug="research")
    assert [a.slug for a in await agent_list()] == ["code_review", "main"]


async def test_agent_cache_serves_stale_rows_at_most_for_the_bound(seeded_agents, settings):
    settings.AGENTS_CACHE_SECONDS = 0.3
    assert (await agent_get(slug="research")).temperature == 0.2
    # A write another replica made: no signal reaches this process.
    await Agent.objects.filter(slug="research").aupdate(temperature=0.7)
    assert (await agent_get(slug="research")).temperature == 0.2
    await asyncio.sleep(0.35)
    assert (await agent_get(slug="research")).temperature == 0.7


async def test_agent_cache_is_invalidated_at_once_by_a_save_here(seeded_agents, settings):
    settings.AGENTS_CACHE_SECONDS = 3600
    assert (await agent_get(slug="research")).temperature == 0.2
    research = await Agent.objects.aget(slug="research")
    research.temperature = 0.9
    await research.asave()
    assert (await agent_get(slug="research")).temperature == 0.9


def agent_table_reads():
    # The agents are read on the database threads (mamba_site/db.py), each read counted.
    return (
        REGISTRY.get_sample_value(
            "mamba_database_calls_total", {"operation": "agents", "outcome": "ok"}
        )
        or 0
    )


async def test_agent_cache_does_not_query_within_the_bound(seeded_agents, settings):
    settings.AGENTS_CACHE_SECONDS = 3600
    await agent_get(slug="main")
    before = agent_table_reads()
    for _ in range(20):
        await agent_get(slug="main")
    assert agent_table_reads() == before
    settings.AGENTS_CACHE_SECONDS = 0
    await agent_get(slug="main")
    assert agent_table_reads() == before + 1


async def test_agent_spec_drops_unknown_tool_names(seeded_agents):
    await Agent.objects.filter(slug="research").aupdate(tools=["search_notes", "gone_tool"])
    assert (await agent_get(slug="research")).tools == ("search_notes",)


async def test_agent_spec_carries_the_client_system_messages_setting(seeded_agents):
    await Agent.objects.filter(slug="research").aupdate(accept_client_system_messages=True)
    assert (await agent_get(slug="research")).accept_client_system_messages is True
    assert (await agent_get(slug="main")).accept_client_system_messages is False

import pytest
from django.core.exceptions import ValidationError

from agents.admin import AgentForm
from agents.models import Agent
from tests.agents.conftest import make_agent

pytestmark = pytest.mark.django_db


def test_seed_migration_creates_three_agents_with_main_default():
    agents = {a.slug: a for a in Agent.objects.all()}
    assert set(agents) == {"main", "research", "code_review"}
    assert [a.slug for a in agents.values() if a.is_default] == ["main"]
    assert agents["main"].tools == ["generateForm", "generateChart", "generateCode", "generateCard"]
    assert "search_notes" in agents["research"].tools
    assert "analyze_complexity" in agents["code_review"].tools
    for agent in agents.values():
        assert agent.enabled
        assert len(agent.system_prompt) > 200


def test_agent_clean_rejects_second_default():
    agent = Agent(slug="other", name="Other", system_prompt="x", is_default=True)
    with pytest.raises(ValidationError) as caught:
        agent.full_clean()
    assert "is_default" in caught.value.message_dict


def test_agent_clean_keeps_the_only_default():
    main = Agent.objects.get(slug="main")
    main.is_default = False
    with pytest.raises(ValidationError) as caught:
        main.full_clean()
    assert "another one the default" in caught.value.message_dict["is_default"][0]


def test_agent_clean_rejects_disabled_default():
    main = Agent.objects.get(slug="main")
    main.enabled = False
    with pytest.raises(ValidationError) as caught:
        main.full_clean()
    assert "enabled" in caught.value.message_dict


def test_agent_clean_rejects_unknown_model(settings):
    agent = Agent(slug="x", name="X", system_prompt="x", model="gpt-nope")
    with pytest.raises(ValidationError) as caught:
        agent.full_clean()
    assert "Unknown model 'gpt-nope'" in caught.value.message_dict["model"][0]


def test_agent_clean_accepts_catalog_and_allowlisted_models(settings):
    Agent(slug="x", name="X", system_prompt="x", model="gpt-4o-mini").full_clean()
    settings.MODELS_ALLOWED = ["llama-3"]
    Agent(slug="y", name="Y", system_prompt="x", model="llama-3").full_clean()


def test_database_allows_only_one_default():
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        make_agent(slug="second", is_default=True)


def form_data(**overrides):
    data = {
        "slug": "helper",
        "name": "Helper",
        "description": "",
        "system_prompt": "Be helpful.",
        "tools": ["generateChart", "search_notes"],
        "enabled": "on",
    }
    return {**data, **overrides}


def test_agent_form_offers_registered_tools_and_keeps_registry_order():
    form = AgentForm(data=form_data(tools=["search_notes", "generateChart"]))
    assert form.is_valid(), form.errors
    assert form.cleaned_data["tools"] == ["generateChart", "search_notes"]
    choices = [value for value, _ in form.fields["tools"].choices]
    assert "analyze_complexity" in choices


def test_agent_form_rejects_unknown_tool():
    form = AgentForm(data=form_data(tools=["launchMissiles"]))
    assert not form.is_valid()
    assert "tools" in form.errors


def test_agent_form_shows_two_defaults_error():
    form = AgentForm(data=form_data(is_default="on"))
    assert not form.is_valid()
    assert "Another agent is the default" in form.errors["is_default"][0]

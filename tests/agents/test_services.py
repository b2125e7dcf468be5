import pytest
from django.core.exceptions import ValidationError

from agents.models import Agent
from agents.services import agent_make_default, agent_revision_restore, agent_save

pytestmark = pytest.mark.django_db


def test_agent_save_records_revisions_with_author_and_changes(admin_user):
    agent = Agent.objects.get(slug="research")
    first = agent_save(agent=agent, author=admin_user)
    agent.system_prompt = "Version two"
    agent.temperature = 0.9
    second = agent_save(agent=agent, author=admin_user, comment="tuning")
    assert (first.version, second.version) == (1, 2)
    assert first.changed_fields == []
    assert second.changed_fields == ["system_prompt", "temperature"]
    assert second.author == admin_user
    assert second.comment == "tuning"
    assert second.snapshot["system_prompt"] == "Version two"


def test_agent_save_of_new_agent_marks_every_field_changed():
    agent = Agent(slug="fresh", name="Fresh", system_prompt="x")
    revision = agent_save(agent=agent, author=None)
    assert revision.version == 1
    assert "system_prompt" in revision.changed_fields
    assert revision.author is None


def test_agent_revision_restore_puts_back_content_as_new_revision(admin_user):
    agent = Agent.objects.get(slug="research")
    original = agent_save(agent=agent, author=admin_user)
    agent.system_prompt = "Broken prompt"
    agent.tools = []
    agent_save(agent=agent, author=admin_user)
    restored = agent_revision_restore(revision=original, author=admin_user)
    agent.refresh_from_db()
    assert agent.system_prompt == original.snapshot["system_prompt"]
    assert agent.tools == original.snapshot["tools"]
    assert restored.version == 3
    assert restored.comment == "Restored version 1"
    assert restored.changed_fields == ["system_prompt", "tools"]


def test_agent_revision_restore_does_not_move_the_default(admin_user):
    main = Agent.objects.get(slug="main")
    old = agent_save(agent=main, author=admin_user)
    agent_make_default(agent=Agent.objects.get(slug="research"), author=admin_user)
    agent_revision_restore(revision=old, author=admin_user)
    assert Agent.objects.get(is_default=True).slug == "research"


def test_agent_revision_restore_refuses_invalid_snapshot(admin_user, settings):
    agent = Agent.objects.get(slug="research")
    agent.model = "gpt-4o"
    revision = agent_save(agent=agent, author=admin_user)
    settings.MODELS_ALLOWED = ["other-model"]
    with pytest.raises(ValidationError):
        agent_revision_restore(revision=revision, author=admin_user)


def test_agent_make_default_moves_the_default_and_enables(admin_user):
    research = Agent.objects.get(slug="research")
    research.enabled = False
    research.save()
    agent_make_default(agent=research, author=admin_user)
    assert list(Agent.objects.filter(is_default=True).values_list("slug", flat=True)) == [
        "research"
    ]
    research.refresh_from_db()
    assert research.enabled
    assert Agent.objects.get(slug="main").revisions.get().comment == "Default moved to research"

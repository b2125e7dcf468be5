import pytest
from django.test import AsyncClient
from django.urls import reverse

from agents.models import Agent, AgentRevision, Note
from tests.chat.conftest import API_APPS, UPSTREAM_URL, parse_sse, read_stream, streaming
from tests.chat.conftest import text_reply as upstream_text


def change_data(agent, **overrides):
    data = {
        "slug": agent.slug,
        "name": agent.name,
        "description": agent.description,
        "system_prompt": agent.system_prompt,
        "model": agent.model,
        "tools": agent.tools,
        "temperature": "" if agent.temperature is None else agent.temperature,
        "max_output_tokens": "",
        "max_steps": "",
        "revisions-TOTAL_FORMS": "0",
        "revisions-INITIAL_FORMS": "0",
        "revisions-MIN_NUM_FORMS": "0",
        "revisions-MAX_NUM_FORMS": "1000",
    }
    if agent.enabled:
        data["enabled"] = "on"
    if agent.is_default:
        data["is_default"] = "on"
    return {**data, **overrides}


@pytest.mark.django_db
def test_admin_agent_list_shows_slug_model_tools_and_flags(admin_client):
    response = admin_client.get(reverse("admin:agents_agent_changelist"))
    content = response.content.decode()
    assert response.status_code == 200
    for text in ("code_review", "research", "search_notes, generateCard, generateChart"):
        assert text in content


@pytest.mark.django_db
def test_admin_agent_search_finds_by_prompt(admin_client):
    response = admin_client.get(reverse("admin:agents_agent_changelist"), {"q": "senior engineer"})
    assert response.context["cl"].result_count == 1


@pytest.mark.django_db
def test_admin_agent_edit_saves_and_records_revision(admin_client, admin_user):
    agent = Agent.objects.get(slug="research")
    url = reverse("admin:agents_agent_change", args=(agent.pk,))
    response = admin_client.post(url, change_data(agent, system_prompt="New prompt"))
    assert response.status_code == 302
    agent.refresh_from_db()
    assert agent.system_prompt == "New prompt"
    revision = agent.revisions.get()
    assert revision.author == admin_user
    assert revision.changed_fields == ["system_prompt"]
    page = admin_client.get(url).content.decode()
    assert "Restore version 1" in page
    assert "system_prompt" in page


@pytest.mark.django_db
def test_admin_agent_edit_sets_accept_client_system_messages(admin_client):
    agent = Agent.objects.get(slug="research")
    url = reverse("admin:agents_agent_change", args=(agent.pk,))
    page = admin_client.get(url).content.decode()
    assert "Accept client system messages" in page
    assert 'name="accept_client_system_messages"' in page
    data = change_data(agent, accept_client_system_messages="on")
    assert admin_client.post(url, data).status_code == 302
    agent.refresh_from_db()
    assert agent.accept_client_system_messages is True
    assert agent.revisions.get().changed_fields == ["accept_client_system_messages"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"model": "gpt-nope"}, "model", "Unknown model"),
        ({"tools": ["launchMissiles"]}, "tools", "Select a valid choice"),
        ({"is_default": "on"}, "is_default", "Another agent is the default"),
    ],
)
def test_admin_agent_form_shows_validation_errors(admin_client, overrides, field, message):
    agent = Agent.objects.get(slug="research")
    url = reverse("admin:agents_agent_change", args=(agent.pk,))
    response = admin_client.post(url, change_data(agent, **overrides))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert message in " ".join(errors[field])


@pytest.mark.django_db
def test_admin_restore_puts_back_an_old_version(admin_client):
    agent = Agent.objects.get(slug="research")
    url = reverse("admin:agents_agent_change", args=(agent.pk,))
    original_prompt = agent.system_prompt
    admin_client.post(url, change_data(agent, temperature="0.5"))
    admin_client.post(url, change_data(agent, system_prompt="Broken", temperature="0.5"))
    first = agent.revisions.get(version=1)
    restore = reverse("admin:agents_agent_restore", args=(agent.pk, first.pk))
    assert admin_client.get(restore).status_code == 405
    response = admin_client.post(restore, follow=True)
    assert "Restored version 1 of research" in response.content.decode()
    agent.refresh_from_db()
    assert agent.system_prompt == original_prompt
    assert agent.revisions.get(version=3).comment == "Restored version 1"


@pytest.mark.django_db
def test_admin_make_default_action_moves_the_default(admin_client):
    research = Agent.objects.get(slug="research")
    response = admin_client.post(
        reverse("admin:agents_agent_changelist"),
        {
            "action": "make_default",
            "_selected_action": [research.pk],
            "index": 0,
            "select_across": 0,
        },
        follow=True,
    )
    assert "Research is now the default agent." in response.content.decode()
    assert Agent.objects.get(is_default=True) == research


@pytest.mark.django_db
def test_admin_playground_is_for_staff_only(client, admin_client, django_user_model):
    agent = Agent.objects.get(slug="main")
    url = reverse("admin:agents_agent_playground", args=(agent.pk,))
    assert client.get(url).status_code == 302
    user = django_user_model.objects.create_user("plain", password="x")
    client.force_login(user)
    assert client.get(url).status_code == 302
    page = admin_client.get(url)
    assert page.status_code == 200
    assert 'data-agent="main"' in page.content.decode()
    assert reverse("admin-playground-chat") in page.content.decode()


@pytest.mark.django_db
def test_admin_notes_list_and_search(admin_client):
    Note.objects.create(title="Probe policy", body="never call the provider", tags="ops")
    Note.objects.create(title="Lunch", body="pasta")
    response = admin_client.get(reverse("admin:agents_note_changelist"), {"q": "provider"})
    assert response.context["cl"].result_count == 1


@pytest.mark.django_db
def test_admin_revisions_cannot_be_added_inline(admin_client):
    assert AgentRevision.objects.count() == 0
    agent = Agent.objects.get(slug="main")
    page = admin_client.get(reverse("admin:agents_agent_change", args=(agent.pk,)))
    assert page.context["inline_admin_formsets"][0].has_add_permission is False


@pytest.mark.django_db(transaction=True, available_apps=[*API_APPS, "django.contrib.sessions"])
class TestPlaygroundChat:
    url = "/admin/playground/chat"
    body = {"agent": "main", "messages": [{"id": "u", "role": "user", "content": "hi"}]}

    @pytest.fixture(autouse=True)
    def _agents(self, seeded_agents):
        pass

    async def test_streams_for_staff_session(self, admin_user, respx_mock):
        respx_mock.post(UPSTREAM_URL).mock(return_value=streaming(upstream_text("Hello")))
        client = AsyncClient()
        await client.aforce_login(admin_user)
        response = await client.post(self.url, self.body, content_type="application/json")
        events = parse_sse(await read_stream(response))
        assert events[-2]["type"] == "finish"
        assert events[-2]["messageMetadata"]["agent"] == "main"

    async def test_refuses_non_staff(self, django_user_model):
        user = await django_user_model.objects.acreate_user("plain", password="x")
        client = AsyncClient()
        await client.aforce_login(user)
        response = await client.post(self.url, self.body, content_type="application/json")
        assert response.status_code == 403
        assert response.json()["code"] == "FORBIDDEN"

    async def test_requires_csrf_token(self, admin_user):
        client = AsyncClient(enforce_csrf_checks=True)
        await client.aforce_login(admin_user)
        response = await client.post(self.url, self.body, content_type="application/json")
        assert response.status_code == 403


@pytest.mark.django_db
def test_admin_keeps_the_default_agent_from_deletion(admin_client):
    main = Agent.objects.get(slug="main")
    assert (
        admin_client.get(reverse("admin:agents_agent_delete", args=(main.pk,))).status_code == 403
    )
    research = Agent.objects.get(slug="research")

    def bulk_delete(*agents):
        data = {"action": "delete_selected", "post": "yes", "index": 0, "select_across": 0}
        data["_selected_action"] = [agent.pk for agent in agents]
        return admin_client.post(reverse("admin:agents_agent_changelist"), data)

    assert bulk_delete(main, research).status_code == 403
    assert Agent.objects.count() == 3
    assert bulk_delete(research).status_code == 302
    assert list(Agent.objects.values_list("slug", flat=True)) == ["code_review", "main"]

"""The admin's Providers page: staff only, every target's state on this replica, no secrets."""

import re

import pytest
from django.contrib.auth import get_user_model

from tests.chat.conftest import parse_sse, read_stream, user
from tests.fake_upstream import FakeUpstream

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("main_agent")]

PRIMARY_KEY = "sk-primary-key-value-never-shown"
PROVIDERS = """
[providers.primary]
base_url = "{primary}"
api_key_env = "TEST_PRIMARY_KEY"
first_byte_timeout_seconds = 1
max_retries = 0
cooldown_failures = 2
cooldown_seconds = 30
headers = {{ "X-Team-Token" = "team-header-value-never-shown" }}

[providers.backup]
base_url = "{backup}"
api_key_env = "TEST_BACKUP_KEY"
first_byte_timeout_seconds = 1
max_retries = 0
stream_usage = false
max_tokens_param = "max_completion_tokens"

[models."gpt-4o-mini"]
targets = ["primary/gpt-4o-mini", "backup/gpt-4o-mini"]
fallbacks = ["gpt-4o"]

[models."gpt-4o"]
targets = ["backup/gpt-4o"]
"""


@pytest.fixture
async def upstreams(tmp_path, settings, monkeypatch):
    primary, backup = FakeUpstream(), FakeUpstream()
    await primary.start()
    await backup.start()
    monkeypatch.setenv("TEST_PRIMARY_KEY", PRIMARY_KEY)
    monkeypatch.setenv("TEST_BACKUP_KEY", "sk-backup-key-value-never-shown")
    path = tmp_path / "providers.toml"
    path.write_text(PROVIDERS.format(primary=primary.base_url, backup=backup.base_url))
    settings.PROVIDERS_FILE = str(path)
    settings.REDIS_URL = ""
    yield primary, backup
    await primary.stop()
    await backup.stop()


@pytest.fixture
async def staff_client(async_client, admin_user):
    await async_client.aforce_login(admin_user)
    return async_client


async def chat(async_client):
    body = {"messages": [user("hello")], "model": "gpt-4o-mini"}
    response = await async_client.post("/chat", body, content_type="application/json")
    events = parse_sse(await read_stream(response))
    assert events[-2]["messageMetadata"]["provider"] == "backup"


async def rest_primary(async_client, upstreams):
    primary, _ = upstreams
    primary.set_fault("status:500")
    for _ in range(2):
        await chat(async_client)


def states(html):
    return dict(re.findall(r'data-target="([^"]+)" data-state="([^"]+)"', html))


async def test_providers_page_lists_every_target_and_its_state(staff_client, upstreams):
    await rest_primary(staff_client, upstreams)

    response = await staff_client.get("/admin/providers/")

    assert response.status_code == 200
    html = response.content.decode()
    assert states(html) == {
        "primary/gpt-4o-mini": "cooling down",
        "backup/gpt-4o-mini": "healthy",
        "backup/gpt-4o": "healthy",
    }
    row = html[html.index('data-target="primary/gpt-4o-mini"') :].split("</tr>")[0]
    assert re.search(r"cooling down, (29|30)\.\d s left", row)
    assert re.findall(r"<td>(\d+)</td>", row) == ["2", "2", "2", "1"]
    assert row.count("status_500 at ") == 2


async def test_providers_page_shows_the_configuration_and_its_source(
    staff_client, upstreams, settings
):
    response = await staff_client.get("/admin/providers/")

    html = response.content.decode()
    assert settings.PROVIDERS_FILE in html
    assert "this replica" in html.lower()
    assert "cooldowns are not shared (REDIS_URL is not set)" in html
    assert "<code>TEST_PRIMARY_KEY</code>" in html
    assert "(set)" in html
    assert "30.0 s after 2 failures in a row" in html
    assert "max_completion_tokens" in html
    assert "fallbacks: gpt-4o" in html
    assert "X-Team-Token" in html


async def test_providers_page_never_shows_a_key_nor_a_header_value(staff_client, upstreams):
    await rest_primary(staff_client, upstreams)

    response = await staff_client.get("/admin/providers/")

    html = response.content.decode()
    assert PRIMARY_KEY not in html
    assert "sk-backup-key-value-never-shown" not in html
    assert "team-header-value-never-shown" not in html


async def test_providers_page_redirects_non_staff_to_the_login(async_client, upstreams):
    member = await get_user_model().objects.acreate_user("member", password="pw")
    await async_client.aforce_login(member)

    response = await async_client.get("/admin/providers/")

    assert response.status_code == 302
    assert response["Location"] == "/admin/login/?next=/admin/providers/"


async def test_providers_page_redirects_anonymous_users_to_the_login(async_client, upstreams):
    response = await async_client.get("/admin/providers/")

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


async def test_providers_page_from_settings_names_their_key_variable(staff_client, settings):
    settings.PROVIDERS_FILE = ""
    settings.REDIS_URL = ""

    response = await staff_client.get("/admin/providers/")

    html = response.content.decode()
    assert "MAMBA_OPENAI__* settings" in html
    assert "MAMBA_OPENAI__API_KEY (or OPENAI_API_KEY)" in html
    assert "Other model names: passed to openai" in html
    assert settings.OPENAI_API_KEY not in html


async def test_admin_index_links_to_the_providers_page(staff_client):
    response = await staff_client.get("/admin/")

    assert response.status_code == 200
    assert b'href="/admin/providers/"' in response.content
    assert b"Site administration" in response.content

import io
import re

import pytest
from django.core.management import call_command
from django.urls import reverse

from mamba_site.keys import key_digest
from mamba_site.models import ApiKey, ApiKeyUsage

pytestmark = pytest.mark.django_db

SECRET = re.compile(r"mamba_[A-Za-z0-9_-]{32,}")


def add_key(admin_client, **overrides):
    data = {
        "name": "frontend",
        "allowed_agents": "main, research",
        "allowed_models": "",
        "requests_per_minute": "60",
        "usage-TOTAL_FORMS": "0",
        "usage-INITIAL_FORMS": "0",
        **overrides,
    }
    return admin_client.post(reverse("admin:mamba_site_apikey_add"), data)


def test_admin_add_key_shows_the_secret_once(admin_client):
    response = add_key(admin_client)
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    page = response.content.decode()
    [secret] = set(SECRET.findall(page))
    assert "only time the key is shown" in page
    assert 'id="copy-api-key"' in page
    api_key = ApiKey.objects.get()
    assert api_key.digest == key_digest(secret)
    assert api_key.allowed_agents == ["main", "research"]
    assert api_key.requests_per_minute == 60
    change = admin_client.get(reverse("admin:mamba_site_apikey_change", args=(api_key.pk,)))
    assert secret not in change.content.decode()
    assert api_key.prefix in change.content.decode()
    listing = admin_client.get(reverse("admin:mamba_site_apikey_changelist"))
    assert secret not in listing.content.decode()


def test_admin_rejects_bad_scope_names(admin_client):
    response = add_key(admin_client, allowed_agents="main, <script>")
    assert response.status_code == 200
    assert "Not a name: &lt;script&gt;" in response.content.decode()
    assert not ApiKey.objects.exists()


def test_admin_revoke_action(admin_client, admin_user):
    add_key(admin_client)
    api_key = ApiKey.objects.get()
    response = admin_client.post(
        reverse("admin:mamba_site_apikey_changelist"),
        {"action": "revoke", "_selected_action": [api_key.pk], "index": 0, "select_across": 0},
        follow=True,
    )
    assert (
        "Revoked 1 key(s). They stop working at once on this replica and within 5 s on the others."
        in response.content.decode()
    )
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None
    assert api_key.revoked_by == admin_user
    assert api_key.state() == "revoked"


def test_admin_shows_usage_on_the_key_page_and_in_a_list(admin_client):
    add_key(admin_client)
    api_key = ApiKey.objects.get()
    ApiKeyUsage.objects.create(api_key=api_key, day="2026-11-28", requests=7, input_tokens=1234)
    page = admin_client.get(reverse("admin:mamba_site_apikey_change", args=(api_key.pk,)))
    assert "1234" in page.content.decode()
    listing = admin_client.get(reverse("admin:mamba_site_apikeyusage_changelist"))
    assert "1234" in listing.content.decode()


def test_admin_keys_are_for_staff_only(client, django_user_model):
    url = reverse("admin:mamba_site_apikey_changelist")
    assert client.get(url).status_code == 302
    client.force_login(django_user_model.objects.create_user("plain", password="x"))
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_createapikey_prints_the_secret_alone_on_the_last_line():
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "createapikey",
        "ci",
        "--agents",
        "main,research",
        "--models",
        "gpt-4o",
        "--rpm",
        "30",
        "--expires",
        "7",
        stdout=out,
        stderr=err,
    )
    secret = out.getvalue().strip().splitlines()[-1]
    assert SECRET.fullmatch(secret)
    api_key = ApiKey.objects.get()
    assert api_key.digest == key_digest(secret)
    assert api_key.allowed_agents == ["main", "research"]
    assert api_key.allowed_models == ["gpt-4o"]
    assert api_key.requests_per_minute == 30
    assert api_key.expires_at is not None
    assert "cannot be shown again" in err.getvalue()
    assert secret not in err.getvalue()


def test_admin_revoke_message_states_the_cache_period(admin_client, settings):
    settings.AUTH_KEY_CACHE_SECONDS = 2.5
    add_key(admin_client)
    api_key = ApiKey.objects.get()
    response = admin_client.post(
        reverse("admin:mamba_site_apikey_changelist"),
        {"action": "revoke", "_selected_action": [api_key.pk], "index": 0, "select_across": 0},
        follow=True,
    )
    assert "within 2.5 s on the others" in response.content.decode()

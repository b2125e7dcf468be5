import io

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from mamba_site.models import Frontend, FrontendUsage

pytestmark = pytest.mark.django_db


def add_frontend(admin_client, **overrides):
    data = {
        "name": "public-chat",
        "origins": "https://chat.example.com\nhttps://www.example.com:443/",
        "enabled": "on",
        "allowed_agents": "main",
        "allowed_models": "",
        "requests_per_minute": "10",
        "concurrent_streams": "1",
        "tokens_per_day": "20000",
        "total_tokens_per_day": "500000",
        "usage-TOTAL_FORMS": "0",
        "usage-INITIAL_FORMS": "0",
        **overrides,
    }
    return admin_client.post(reverse("admin:mamba_site_frontend_add"), data)


def test_admin_registers_a_frontend_with_origins_as_browsers_send_them(admin_client):
    response = add_frontend(admin_client)
    assert response.status_code == 302
    frontend = Frontend.objects.get()
    assert frontend.origins == ["https://chat.example.com", "https://www.example.com"]
    assert frontend.allowed_agents == ["main"]
    assert (frontend.requests_per_minute, frontend.total_tokens_per_day) == (10, 500000)


@pytest.mark.parametrize(
    "origins",
    ["https://*.example.com", "null", "https://chat.example.com/app", "chat.example.com", ""],
)
def test_admin_refuses_what_is_not_an_origin(admin_client, origins):
    response = add_frontend(admin_client, origins=origins)
    assert response.status_code == 200
    assert "errorlist" in response.content.decode()
    assert not Frontend.objects.exists()


def test_admin_refuses_an_origin_another_frontend_has(admin_client):
    add_frontend(admin_client)
    response = add_frontend(admin_client, name="other", origins="https://chat.example.com")
    assert response.status_code == 200
    assert "Already registered by another frontend: https://chat.example.com (public-chat)" in (
        response.content.decode()
    )


def test_admin_shows_a_frontends_usage_by_day(admin_client):
    add_frontend(admin_client)
    frontend = Frontend.objects.get()
    FrontendUsage.objects.create(frontend=frontend, day="2026-01-02", requests=3, output_tokens=77)
    page = admin_client.get(reverse("admin:mamba_site_frontend_change", args=(frontend.pk,)))
    assert "Usage by day (UTC), all clients together" in page.content.decode()
    assert "77" in page.content.decode()


def test_admin_disable_action(admin_client):
    add_frontend(admin_client)
    frontend = Frontend.objects.get()
    response = admin_client.post(
        reverse("admin:mamba_site_frontend_changelist"),
        {"action": "disable", "_selected_action": [frontend.pk], "index": 0, "select_across": 0},
        follow=True,
    )
    assert "within 5 s on the others" in response.content.decode()
    frontend.refresh_from_db()
    assert frontend.enabled is False


def test_createfrontend_registers_with_its_limits():
    out = io.StringIO()
    call_command(
        "createfrontend",
        "public-chat",
        "--origins",
        "https://chat.example.com,http://localhost:3000",
        "--agents",
        "main",
        "--models",
        "gpt-4o-mini",
        "--rpm",
        "10",
        "--streams",
        "1",
        "--tokens-per-day",
        "20000",
        "--total-tokens-per-day",
        "0",
        stdout=out,
    )
    frontend = Frontend.objects.get()
    assert frontend.origins == ["https://chat.example.com", "http://localhost:3000"]
    assert (frontend.allowed_agents, frontend.allowed_models) == (["main"], ["gpt-4o-mini"])
    limits = (
        frontend.requests_per_minute,
        frontend.concurrent_streams,
        frontend.tokens_per_day,
        frontend.total_tokens_per_day,
    )
    assert limits == (10, 1, 20000, None)
    assert "all clients: no limit tokens/day" in out.getvalue()


def test_createfrontend_without_limits_takes_the_defaults():
    call_command(
        "createfrontend", "site", "--origins", "https://chat.example.com", stdout=io.StringIO()
    )
    frontend = Frontend.objects.get()
    limits = (
        frontend.requests_per_minute,
        frontend.concurrent_streams,
        frontend.tokens_per_day,
        frontend.total_tokens_per_day,
    )
    assert limits == (20, 2, 50_000, 1_000_000)


@pytest.mark.parametrize(
    "origins", ["https://chat.example.com/app", "null", "*", "ftp://a.example"]
)
def test_createfrontend_refuses_a_bad_origin(origins):
    with pytest.raises(CommandError, match="is not an origin"):
        call_command("createfrontend", "site", "--origins", origins, stdout=io.StringIO())
    assert not Frontend.objects.exists()


def test_createfrontend_refuses_a_taken_name():
    call_command("createfrontend", "site", "--origins", "https://a.example", stdout=io.StringIO())
    with pytest.raises(CommandError, match="already exists"):
        call_command(
            "createfrontend", "site", "--origins", "https://b.example", stdout=io.StringIO()
        )

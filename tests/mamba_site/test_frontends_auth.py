import asyncio

import pytest
from asgiref.sync import SyncToAsync
from django.db import connection
from django.test.utils import CaptureQueriesContext

from mamba_site.models import Frontend
from tests.chat.conftest import user

pytestmark = pytest.mark.django_db(transaction=True)

SITE = "https://chat.example.com"
ACAO = "Access-Control-Allow-Origin"


async def get_models(async_client, origin=SITE, **headers):
    if origin is not None:
        headers["Origin"] = origin
    return await async_client.get("/models", headers=headers)


async def preflight(async_client, origin):
    return await async_client.options(
        "/chat",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )


def assert_401(response, code="AUTH_REQUIRED"):
    assert response.status_code == 401
    assert response.json()["code"] == code
    assert response["WWW-Authenticate"].startswith('Bearer realm="mamba"')


async def test_origin_admits_a_registered_origin_without_credentials(
    async_client, origin_mode, register_frontend
):
    await register_frontend()
    response = await get_models(async_client)
    assert response.status_code == 200
    assert response[ACAO] == SITE


async def test_origin_refuses_a_request_without_origin_or_credentials(
    async_client, origin_mode, register_frontend
):
    await register_frontend()
    assert_401(await get_models(async_client, origin=None))


@pytest.mark.parametrize(
    "origin",
    [
        "https://chat.example.com.evil.example",
        "https://evil.chat.example.com",
        "https://chat.example.co",
        "https://chat.example.com:8443",
        "http://chat.example.com",
        "https://chat.example.com/",
        "https://CHAT.example.com",
        "https://chat.example.com:443",
        "null",
        "",
    ],
)
async def test_origin_matches_exact_origins_only(
    async_client, origin_mode, register_frontend, origin
):
    await register_frontend()
    response = await get_models(async_client, origin=origin)
    assert_401(response)
    assert ACAO not in response


async def test_origin_registered_with_its_default_port_matches_what_browsers_send(
    async_client, origin_mode, register_frontend
):
    await register_frontend(origins=["https://chat.example.com:443"])
    assert (await get_models(async_client, origin="https://chat.example.com")).status_code == 200
    assert_401(await get_models(async_client, origin="https://chat.example.com:443"))
    assert_401(await get_models(async_client, origin="http://chat.example.com"))


async def test_origin_of_a_disabled_frontend_is_refused(
    async_client, origin_mode, register_frontend
):
    await register_frontend(enabled=False)
    response = await get_models(async_client)
    assert_401(response)
    assert ACAO not in response


async def test_origin_is_not_admitted_without_the_origin_mode(
    async_client, api_key_mode, register_frontend
):
    await register_frontend()
    response = await get_models(async_client)
    assert_401(response)
    # CORS follows the registry in every mode, so the page can read why.
    assert response[ACAO] == SITE


async def test_origin_bad_key_from_a_registered_origin_is_401(
    async_client, origin_mode, register_frontend
):
    await register_frontend()
    response = await get_models(async_client, **{"X-API-Key": "mamba_" + "A" * 43})
    assert_401(response, "AUTH_INVALID")
    assert response[ACAO] == SITE


@pytest.mark.parametrize(
    "headers", [{"X-API-Key": ""}, {"Authorization": "Bearer "}, {"Authorization": "Basic eDp5"}]
)
async def test_origin_empty_or_unusable_credentials_are_judged_alone(
    async_client, origin_mode, register_frontend, headers
):
    await register_frontend()
    assert_401(await get_models(async_client, **headers))


async def test_origin_valid_key_from_a_registered_origin_is_the_key(
    async_client, origin_mode, register_frontend, issue_key, seeded_agents
):
    await register_frontend(allowed_agents=["main"])
    _, secret = await issue_key(allowed_agents=["research"])
    response = await get_models(async_client, **{"X-API-Key": secret})
    assert [a["slug"] for a in response.json()["agents"]] == ["research"]


async def test_origin_alone_refuses_credentials(async_client, settings, register_frontend):
    settings.AUTH_MODE = "origin"
    await register_frontend()
    assert (await get_models(async_client)).status_code == 200
    assert_401(await get_models(async_client, Authorization="Bearer x.y.z"), "AUTH_INVALID")


async def test_origin_with_jwt_mode_admits_the_origin(async_client, settings, register_frontend):
    settings.AUTH_MODE = "jwt,origin"
    settings.AUTH_JWT_SECRET = "s" * 40
    settings.AUTH_JWT_ALGORITHMS = ["HS256"]
    await register_frontend()
    assert (await get_models(async_client)).status_code == 200
    assert_401(await get_models(async_client, Authorization="Bearer x.y.z"), "AUTH_INVALID")


async def test_origin_models_lists_what_the_frontend_may_use(
    async_client, origin_mode, register_frontend, settings, seeded_agents
):
    settings.MODELS_CATALOG = [{"id": "gpt-4o"}, {"id": "gpt-4o-mini"}]
    await register_frontend(allowed_agents=["research"], allowed_models=["gpt-4o-mini"])
    listing = (await get_models(async_client)).json()
    assert [m["id"] for m in listing["models"]] == ["gpt-4o-mini"]
    assert [a["slug"] for a in listing["agents"]] == ["research"]


async def test_origin_chat_outside_the_frontend_scope_is_403(
    async_client, origin_mode, register_frontend, seeded_agents
):
    await register_frontend(allowed_agents=["research"])
    response = await async_client.post(
        "/chat",
        {"messages": [user("hi")], "agent": "main"},
        content_type="application/json",
        headers={"Origin": SITE},
    )
    assert response.status_code == 403
    assert response.json()["detail"].startswith("This site may not use agent 'main'.")


async def test_cors_preflight_allows_a_registered_origin(
    async_client, origin_mode, register_frontend
):
    await register_frontend()
    response = await preflight(async_client, SITE)
    assert response.status_code == 200
    assert response[ACAO] == SITE
    assert "content-type" in response["Access-Control-Allow-Headers"]


async def test_cors_preflight_does_not_allow_an_unregistered_origin(
    async_client, origin_mode, register_frontend
):
    await register_frontend()
    assert ACAO not in await preflight(async_client, "http://evil.example")


async def test_cors_exposes_the_rate_limit_headers(async_client, origin_mode, register_frontend):
    await register_frontend(requests_per_minute=5)
    response = await get_models(async_client)
    exposed = response["Access-Control-Expose-Headers"].split(", ")
    assert {"retry-after", "ratelimit-remaining", "x-request-id"} <= set(exposed)


async def test_cors_follows_a_frontend_registered_on_this_replica_at_once(
    async_client, origin_mode, register_frontend, settings
):
    settings.AUTH_KEY_CACHE_SECONDS = 3600
    assert ACAO not in await preflight(async_client, "https://new.example")  # snapshot read
    await register_frontend(origins=["https://new.example"])
    assert (await preflight(async_client, "https://new.example"))[ACAO] == "https://new.example"


async def test_cors_follows_a_frontend_registered_elsewhere_within_the_bound(
    async_client, origin_mode, settings
):
    settings.AUTH_KEY_CACHE_SECONDS = 0.3
    assert ACAO not in await preflight(async_client, "https://new.example")
    # Another replica registers it: bulk_create sends no signal to this process.
    await Frontend.objects.abulk_create([Frontend(name="new", origins=["https://new.example"])])
    await asyncio.sleep(0.35)
    assert (await preflight(async_client, "https://new.example"))[ACAO] == "https://new.example"
    assert (await get_models(async_client, origin="https://new.example")).status_code == 200


async def test_cors_drops_a_frontend_disabled_elsewhere_within_the_bound(
    async_client, origin_mode, register_frontend, settings
):
    settings.AUTH_KEY_CACHE_SECONDS = 0.3
    frontend = await register_frontend()
    assert (await preflight(async_client, SITE))[ACAO] == SITE
    await Frontend.objects.filter(pk=frontend.pk).aupdate(enabled=False)  # no signal here
    await asyncio.sleep(0.35)
    assert ACAO not in await preflight(async_client, SITE)
    assert_401(await get_models(async_client))


async def test_cors_drops_a_frontend_disabled_on_this_replica_at_once(
    async_client, origin_mode, register_frontend, settings
):
    settings.AUTH_KEY_CACHE_SECONDS = 3600
    frontend = await register_frontend()
    assert (await preflight(async_client, SITE))[ACAO] == SITE
    frontend.enabled = False
    await frontend.asave()
    assert ACAO not in await preflight(async_client, SITE)


async def test_origin_flood_of_unknown_origins_does_not_reach_the_database(
    async_client, origin_mode, register_frontend, settings
):
    settings.AUTH_KEY_CACHE_SECONDS = 3600
    await register_frontend()
    await get_models(async_client)
    queries = CaptureQueriesContext(connection)
    await SyncToAsync(queries.__enter__)()
    for index in range(100):
        assert_401(await get_models(async_client, origin=f"https://site{index}.example"))
    assert (await get_models(async_client)).status_code == 200
    await SyncToAsync(queries.__exit__)(None, None, None)
    assert queries.final_queries == queries.initial_queries


async def test_origin_registry_keeps_its_last_copy_when_the_database_fails(
    async_client, origin_mode, register_frontend, settings, caplog
):
    settings.AUTH_KEY_CACHE_SECONDS = 0.2
    await register_frontend()
    assert (await get_models(async_client)).status_code == 200
    rename = "ALTER TABLE {} RENAME TO {}"
    await SyncToAsync(execute)(rename.format("mamba_site_frontend", "mamba_site_frontend_away"))
    try:
        await asyncio.sleep(0.25)
        caplog.set_level("ERROR", logger="mamba_site.frontends")
        for _ in range(5):  # the failed read is tried again a second later, not per request
            assert (await get_models(async_client)).status_code == 200
    finally:
        await SyncToAsync(execute)(rename.format("mamba_site_frontend_away", "mamba_site_frontend"))
    failures = [r for r in caplog.records if "Reading the frontend registry failed" in r.message]
    assert len(failures) == 1


def execute(sql):
    with connection.cursor() as cursor:
        cursor.execute(sql)

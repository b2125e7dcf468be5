import asyncio
import logging
import time
from datetime import timedelta

import pytest
from asgiref.sync import SyncToAsync
from django.utils import timezone
from prometheus_client import REGISTRY

from mamba_site.models import ApiKey
from mamba_site.services import api_key_prepare, api_key_revoke

pytestmark = pytest.mark.django_db(transaction=True)


async def get_models(async_client, **headers):
    return await async_client.get("/models", headers=headers)


def key_table_reads():
    return (
        REGISTRY.get_sample_value(
            "mamba_database_calls_total", {"operation": "api_keys", "outcome": "ok"}
        )
        or 0
    )


def assert_401(response, code):
    assert response.status_code == 401
    assert response.json()["code"] == code
    assert response["WWW-Authenticate"].startswith('Bearer realm="mamba"')


async def test_auth_requires_credentials(async_client, api_key_mode):
    assert_401(await get_models(async_client), "AUTH_REQUIRED")
    assert_401(await get_models(async_client, **{"X-API-Key": ""}), "AUTH_REQUIRED")


async def test_auth_accepts_x_api_key_and_bearer(async_client, api_key_mode, issue_key):
    _, secret = await issue_key()
    assert (await get_models(async_client, **{"X-API-Key": secret})).status_code == 200
    response = await get_models(async_client, Authorization=f"Bearer {secret}")
    assert response.status_code == 200


@pytest.mark.parametrize(
    "credentials",
    [
        "mamba_" + "A" * 43,
        "not-a-key",
        "mamba_short",
        "mamba_" + "a" * 500,
        "mamba_ space" + "a" * 40,
    ],
)
async def test_auth_rejects_wrong_and_malformed_keys(
    async_client, api_key_mode, issue_key, credentials
):
    await issue_key()
    assert_401(await get_models(async_client, **{"X-API-Key": credentials}), "AUTH_INVALID")


async def test_auth_rejects_key_with_right_prefix_and_wrong_secret(
    async_client, api_key_mode, issue_key
):
    _, secret = await issue_key()
    forged = secret[:14] + ("B" if secret[14] != "B" else "C") + secret[15:]
    assert_401(await get_models(async_client, **{"X-API-Key": forged}), "AUTH_INVALID")


async def test_auth_revoked_key_stops_at_once_on_this_replica(
    async_client, api_key_mode, issue_key, settings
):
    settings.AUTH_KEY_CACHE_SECONDS = 3600
    api_key, secret = await issue_key()
    assert (await get_models(async_client, **{"X-API-Key": secret})).status_code == 200
    await SyncToAsync(api_key_revoke)(api_key=api_key, by=None)
    assert_401(await get_models(async_client, **{"X-API-Key": secret}), "AUTH_INVALID")


async def test_auth_revocation_elsewhere_applies_within_the_bound(
    async_client, api_key_mode, issue_key, settings
):
    settings.AUTH_KEY_CACHE_SECONDS = 0.3
    api_key, secret = await issue_key()
    assert (await get_models(async_client, **{"X-API-Key": secret})).status_code == 200
    # Another replica revoked it: no signal reaches this process.
    await ApiKey.objects.filter(pk=api_key.pk).aupdate(revoked_at=timezone.now())
    assert (await get_models(async_client, **{"X-API-Key": secret})).status_code == 200
    await asyncio.sleep(0.35)
    assert_401(await get_models(async_client, **{"X-API-Key": secret}), "AUTH_INVALID")


async def test_auth_expired_key(async_client, api_key_mode, issue_key):
    _, secret = await issue_key(expires_at=timezone.now() - timedelta(seconds=1))
    assert_401(await get_models(async_client, **{"X-API-Key": secret}), "AUTH_EXPIRED")


async def test_auth_flood_of_unknown_keys_does_not_reach_the_database(
    async_client, api_key_mode, issue_key, settings
):
    settings.AUTH_KEY_CACHE_SECONDS = 3600
    _, secret = await issue_key()
    await get_models(async_client, **{"X-API-Key": secret})
    # The key table is read on the database threads (mamba_site/db.py), each read counted.
    reads_before = key_table_reads()
    started = time.monotonic()
    for index in range(100):
        bogus = f"mamba_{index:08d}" + "x" * 40
        assert_401(await get_models(async_client, **{"X-API-Key": bogus}), "AUTH_INVALID")
    elapsed = time.monotonic() - started
    # At most one read of the key table a second, however many unknown keys arrive.
    assert key_table_reads() - reads_before <= 1 + int(elapsed)


async def test_auth_key_issued_elsewhere_works_within_a_second(
    async_client, api_key_mode, issue_key, settings
):
    settings.AUTH_KEY_CACHE_SECONDS = 3600
    _, first = await issue_key()
    await get_models(async_client, **{"X-API-Key": first})
    # Another replica issues a key: bulk_create sends no signal to this process.
    api_key = ApiKey(name="elsewhere")
    second = await SyncToAsync(api_key_prepare)(api_key)
    await ApiKey.objects.abulk_create([api_key])
    await asyncio.sleep(1.05)
    assert (await get_models(async_client, **{"X-API-Key": second})).status_code == 200


async def test_auth_secret_is_never_stored_or_logged(async_client, api_key_mode, issue_key, caplog):
    api_key, secret = await issue_key()
    caplog.set_level(logging.DEBUG)
    await get_models(async_client, **{"X-API-Key": secret})
    await get_models(async_client, **{"X-API-Key": secret[:-1] + "?"})
    assert secret not in caplog.text
    stored = await ApiKey.objects.values().aget(pk=api_key.pk)
    assert secret not in str(stored)
    assert stored["digest"] != secret


async def test_auth_updates_last_used_in_the_background(async_client, api_key_mode, issue_key):
    api_key, secret = await issue_key()
    assert api_key.last_used_at is None
    await get_models(async_client, **{"X-API-Key": secret})
    for _ in range(50):
        refreshed = await ApiKey.objects.aget(pk=api_key.pk)
        if refreshed.last_used_at is not None:
            break
        await asyncio.sleep(0.02)
    assert refreshed.last_used_at is not None


async def test_auth_public_routes_need_no_credentials(async_client, api_key_mode):
    response = await async_client.get("/admin/login/")
    assert response.status_code == 200


async def test_auth_cors_preflight_needs_no_credentials(async_client, api_key_mode):
    response = await async_client.options(
        "/chat",
        headers={
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status_code == 200
    assert "authorization" in response["Access-Control-Allow-Headers"]

import asyncio
import contextlib
import logging

import pytest
from django.db import connection
from prometheus_client import REGISTRY

from mamba_site.db import DatabaseUnavailable, db_call
from mamba_site.models import ApiKeyUsage
from tests.chat.conftest import parse_sse, read_stream
from tests.outages.conftest import (
    DATABASE_TIMEOUT,
    HEALTH_TIMEOUT,
    SLACK,
    get_models,
    post_chat,
    timed,
)


def metric(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0


async def expire_key_table():
    await asyncio.sleep(0.55)  # past AUTH_KEY_CACHE_SECONDS (0.5)


def usage_of(api_key_id):
    return list(
        ApiKeyUsage.objects.filter(api_key_id=api_key_id).values_list(
            "requests", "input_tokens", "output_tokens", "errors"
        )
    )


async def wait_for_usage(api_key_id, requests, within):
    deadline = asyncio.get_running_loop().time() + within
    rows = []
    while asyncio.get_running_loop().time() < deadline:
        with contextlib.suppress(DatabaseUnavailable):  # the pool reconnecting
            rows = await db_call(usage_of, api_key_id)
        if rows and rows[0][0] >= requests:
            break
        await asyncio.sleep(0.05)
    return rows


async def test_database_refusing_a_key_issued_just_before_is_503_auth_unavailable(
    async_client, postgres, issue, record_property
):
    _, known = await issue()
    assert (await get_models(async_client, known)).status_code == 200
    _, new = await issue()  # saved here: the key table is read again on its next use
    postgres.refuse()

    response, seconds = await timed(get_models(async_client, new))
    record_property("seconds", seconds)

    assert response.status_code == 503
    assert response.json()["code"] == "AUTH_UNAVAILABLE"
    assert int(response["Retry-After"]) >= 1
    assert seconds < DATABASE_TIMEOUT + SLACK
    # The key the last good table knows still works.
    assert (await get_models(async_client, known)).status_code == 200


async def test_database_refusing_known_keys_work_from_the_last_table_without_queueing(
    async_client, postgres, issue, caplog, record_property
):
    _, secret = await issue()
    assert (await get_models(async_client, secret)).status_code == 200
    postgres.refuse()
    await expire_key_table()
    caplog.set_level(logging.WARNING, logger="mamba.dependencies")

    results = await asyncio.gather(*(timed(get_models(async_client, secret)) for _ in range(20)))

    assert [response.status_code for response, _ in results] == [200] * 20
    # One read of each table at a time: the request that starts it waits for it (at most the
    # database timeout each: the keys, then the agents); the others use the last copy. No
    # n-th request waits n timeouts.
    seconds = sorted(seconds for _, seconds in results)
    record_property("seconds", seconds)
    assert seconds[-1] < 2 * DATABASE_TIMEOUT + SLACK
    assert seconds[-2] < DATABASE_TIMEOUT + SLACK
    warnings = [r for r in caplog.records if r.name == "mamba.dependencies"]
    assert len(warnings) == 1
    assert "serving the copy of api_keys" in warnings[0].getMessage()
    assert metric("mamba_dependency_up", dependency="database") == 0


async def test_database_blackholed_chats_after_the_cache_expired_answer_within_the_bound(
    async_client, postgres, issue, upstream, record_property
):
    _, secret = await issue()
    assert (await get_models(async_client, secret)).status_code == 200
    postgres.blackhole()
    await asyncio.sleep(0.6)  # past the key and agent bounds (0.5 s)

    first, first_seconds = await timed(post_chat(async_client, secret))
    events = parse_sse(await read_stream(first))
    second, second_seconds = await timed(post_chat(async_client, secret))
    await read_stream(second)
    record_property("seconds", [first_seconds, second_seconds])

    assert (first.status_code, second.status_code) == (200, 200)
    assert events[-1] == "[DONE]"
    assert any(event["type"] == "text-delta" for event in events[:-1])
    # The first waits for one read of the tables (the database timeout), later ones do not.
    assert first_seconds < 2 * DATABASE_TIMEOUT + SLACK
    assert second_seconds < SLACK


async def test_database_blackholed_ready_answers_within_its_timeout(
    async_client, postgres, issue, record_property
):
    _, secret = await issue()
    assert (await get_models(async_client, secret)).status_code == 200
    postgres.blackhole()

    response, seconds = await timed(async_client.get("/health/ready"))
    record_property("seconds", seconds)

    assert seconds < HEALTH_TIMEOUT + SLACK
    # The tables read before serve requests: degraded, not out of the Service.
    assert response.status_code == 200
    database = response.json()["checks"]["database"]
    assert database["status"] == "degraded"
    assert database["error"] == f"database did not answer within {HEALTH_TIMEOUT:g} s"


async def test_database_down_in_a_process_that_read_nothing_is_not_ready(async_client, postgres):
    # A pod starting during an outage has no copy of the tables to serve from.
    postgres.refuse()

    response = await async_client.get("/health/ready")

    assert response.status_code == 503
    assert response.json()["checks"]["database"]["status"] == "unhealthy"


async def test_database_hung_connection_is_cut_and_the_pool_heals(async_client, postgres, issue):
    _, secret = await issue()
    assert (await get_models(async_client, secret)).status_code == 200
    cut_before = metric("mamba_database_connections_cut_total")
    postgres.blackhole()  # the pooled connection freezes mid-conversation

    (await timed(async_client.get("/health/ready")))[0]
    await asyncio.sleep(0.3)  # the watchdog cuts the frozen query at its deadline
    postgres.heal()

    response, seconds = await timed(async_client.get("/health/ready"))

    assert metric("mamba_database_connections_cut_total") > cut_before
    assert response.status_code == 200
    assert response.json()["checks"]["database"]["status"] == "healthy"
    assert seconds < SLACK


def hold_a_connection():
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(0.1)")


async def test_database_reset_connections_fail_no_request(async_client, postgres):
    await asyncio.gather(*(db_call(hold_a_connection) for _ in range(4)))  # 4 in the pool
    postgres.drop()  # a restart: every pooled connection is reset
    errors_before = metric(
        "mamba_database_calls_total", operation="health_database", outcome="error"
    )

    response, seconds = await timed(async_client.get("/health/ready"))

    assert response.json()["checks"]["database"]["status"] == "healthy"
    errors = metric("mamba_database_calls_total", operation="health_database", outcome="error")
    assert errors == errors_before
    assert seconds < SLACK


async def test_database_usage_written_during_an_outage_is_complete_after_it(
    async_client, postgres, issue, upstream, record_property
):
    api_key, secret = await issue()
    assert (await get_models(async_client, secret)).status_code == 200
    postgres.refuse()

    responses = await asyncio.gather(*(post_chat(async_client, secret) for _ in range(20)))
    bodies = [parse_sse(await read_stream(response)) for response in responses]
    assert all(events[-1] == "[DONE]" for events in bodies)
    assert metric("mamba_usage_records_pending") == 20
    postgres.heal()

    rows, seconds = await timed(wait_for_usage(api_key.pk, 20, within=3.0))
    record_property("seconds", seconds)

    assert rows == [(20, 200, 100, 0)]
    assert metric("mamba_usage_records_pending") == 0


async def test_database_usage_beyond_the_buffer_is_dropped_counted_and_logged(
    async_client, postgres, issue, upstream, settings, caplog
):
    settings.USAGE_BUFFER_RECORDS = 3
    api_key, secret = await issue()
    assert (await get_models(async_client, secret)).status_code == 200
    postgres.refuse()
    dropped_before = metric("mamba_usage_records_dropped_total")
    caplog.set_level(logging.WARNING, logger="mamba_site.usage")

    for _ in range(5):
        await read_stream(await post_chat(async_client, secret))
    postgres.heal()
    rows = await wait_for_usage(api_key.pk, 3, within=3.0)

    assert metric("mamba_usage_records_dropped_total") - dropped_before == 2
    assert [r.getMessage() for r in caplog.records if r.name == "mamba_site.usage"] == [
        "1 usage records dropped: the buffer of 3 records is full"
    ]
    assert rows[0][0] == 3


async def test_database_down_admin_answers_an_html_503_page(
    async_client, postgres, record_property
):
    from django.contrib.auth.models import User

    staff = await db_call(
        lambda: User.objects.create_user("ops", password="x", is_staff=True, is_superuser=True)
    )
    await async_client.aforce_login(staff)
    postgres.refuse()
    async_client.raise_request_exception = False  # the test client would re-raise it

    response, seconds = await timed(async_client.get("/admin/"))
    record_property("seconds", seconds)

    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/html")
    assert b"Service unavailable" in response.content
    assert int(response["Retry-After"]) >= 1
    assert seconds < DATABASE_TIMEOUT + SLACK


@pytest.mark.parametrize("path", ["/models", "/chat"])
async def test_database_down_before_anything_was_read_is_503_never_500(
    async_client, postgres, issue, path
):
    _, secret = await issue()
    postgres.refuse()

    if path == "/models":
        response = await get_models(async_client, secret)
    else:
        response = await post_chat(async_client, secret)

    assert response.status_code == 503
    assert response.json()["code"] == "AUTH_UNAVAILABLE"

import asyncio
import logging
import statistics
import time
from unittest.mock import ANY

import httpx
import pytest
from django.db.backends import utils as db_utils
from django.db.migrations.recorder import MigrationRecorder

from health.monitor import upstream_monitor
from tests.health.conftest import asgi_get, wait_for_upstream

API_KEY = "sk-test-key-that-must-never-be-shown"


# -- /health/live ----------------------------------------------------------------------------


async def test_live_answers_alive_without_database_access(async_client):
    # No django_db mark: pytest-django refuses any connection, so a query would be a 500.
    response = await async_client.get("/health/live")

    assert response.status_code == 200
    assert response.json() == {"status": "alive"}
    assert response["Cache-Control"] == "no-store"


@pytest.mark.django_db(transaction=True)
async def test_live_runs_no_query(async_client, monkeypatch):
    executed = []
    original = db_utils.CursorWrapper._execute_with_wrappers

    def counting(self, sql, *args, **kwargs):
        executed.append(sql)
        return original(self, sql, *args, **kwargs)

    # Counted on the cursor class, so queries from any thread (sync_to_async) are seen.
    monkeypatch.setattr(db_utils.CursorWrapper, "_execute_with_wrappers", counting)

    response = await async_client.get("/health/live")

    assert response.status_code == 200
    assert executed == []


async def test_live_answers_within_10_ms(async_client):
    await async_client.get("/health/live")
    durations = []
    for _ in range(20):
        started = time.perf_counter()
        response = await async_client.get("/health/live")
        durations.append(time.perf_counter() - started)
        assert response.status_code == 200

    assert statistics.median(durations) < 0.010


# Django answers 400 to a Host that is not in ALLOWED_HOSTS, so probes must send an allowed one.
@pytest.mark.parametrize("path", ["/health/live", "/health/ready", "/health"])
async def test_probe_refuses_a_host_not_in_allowed_hosts(settings, path):
    # What a probe without an explicit Host sends: the pod's IP, unless that is allowed too.
    settings.ALLOWED_HOSTS = ["mamba.example.com", "localhost"]

    assert await asgi_get(path, host="10.1.2.3:8000") == 400


async def test_live_answers_a_host_in_allowed_hosts(settings):
    settings.ALLOWED_HOSTS = ["mamba.example.com", "localhost"]

    assert await asgi_get("/health/live", host="localhost") == 200


async def test_live_answers_the_pod_ip_once_it_is_allowed(settings):
    settings.ALLOWED_HOSTS = ["localhost", "10.1.2.3"]  # what MAMBA_POD_IP adds

    assert await asgi_get("/health/live", host="10.1.2.3:8000") == 200


async def test_live_needs_no_credentials_when_auth_is_required(async_client, settings):
    settings.AUTH_MODE = "api_key"

    response = await async_client.get("/health/live")

    assert response.status_code == 200


async def test_live_refuses_post_with_405(async_client):
    response = await async_client.post("/health/live")

    assert response.status_code == 405
    assert response.json()["code"] == "METHOD_NOT_ALLOWED"


# -- /health/ready ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.respx(assert_all_called=False)
async def test_ready_answers_200_when_database_and_migrations_are_fine(
    upstream_models_url, async_client, respx_mock
):
    respx_mock.get(upstream_models_url).mock(return_value=httpx.Response(200, json={"data": []}))

    response = await async_client.get("/health/ready")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert body["checks"]["database"]["status"] == "healthy"
    assert body["checks"]["migrations"]["status"] == "healthy"
    assert body["checks"]["upstream"]["status"] in ("pending", "healthy")
    assert "redis" not in body["checks"]


async def test_ready_returns_503_naming_a_database_that_is_down(async_client, unreachable_database):
    response = await async_client.get("/health/ready")

    assert response.status_code == 503
    body = response.json()
    name = f"database.{unreachable_database}"
    assert body["status"] == "unhealthy"
    assert body["failing"] == [name]
    assert body["checks"][name] == {
        "status": "unhealthy",
        "latency_ms": body["checks"][name]["latency_ms"],
        "error": "database check failed (OperationalError)",
    }


@pytest.mark.django_db(transaction=True)
async def test_ready_returns_503_naming_unapplied_migrations(async_client):
    recorder = MigrationRecorder.Migration.objects
    row = await recorder.filter(app="sessions").alatest("id")
    await row.adelete()
    try:
        response = await async_client.get("/health/ready")
    finally:
        await recorder.acreate(app=row.app, name=row.name)

    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["migrations"]
    assert body["checks"]["migrations"]["error"].startswith("1 migration(s) not applied")


@pytest.mark.django_db(transaction=True)
async def test_ready_checks_migrations_again_until_they_are_applied(async_client):
    recorder = MigrationRecorder.Migration.objects
    row = await recorder.filter(app="sessions").alatest("id")
    await row.adelete()
    try:
        first = await async_client.get("/health/ready")
    finally:
        await recorder.acreate(app=row.app, name=row.name)

    second = await async_client.get("/health/ready")

    assert (first.status_code, second.status_code) == (503, 200)


@pytest.mark.django_db(transaction=True)
async def test_ready_checks_redis_when_redis_url_is_set(async_client, settings, local_redis_url):
    settings.REDIS_URL = local_redis_url

    response = await async_client.get("/health/ready")

    assert response.status_code == 200
    assert response.json()["checks"]["redis"]["status"] == "healthy"


@pytest.mark.django_db(transaction=True)
async def test_ready_stays_200_and_degraded_naming_redis_when_it_is_down(
    async_client, settings, closed_port, caplog
):
    # Limits are then counted per process (or refused, closed): the pod keeps serving.
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port}/0"

    response = await async_client.get("/health/ready")
    await async_client.get("/health/ready")

    assert response.status_code == 200
    body = response.json()
    assert "failing" not in body
    assert body["checks"]["redis"]["status"] == "degraded"
    assert body["checks"]["redis"]["error"] == "redis check failed (ConnectionError)"
    # Logged once when it changes, not as an ERROR per failing probe.
    changes = [r for r in caplog.records if r.name == "health.reports"]
    assert [r.levelno for r in changes if "redis" in r.getMessage()] == [logging.WARNING]
    assert not [r for r in caplog.records if r.name == "django.request"]


@pytest.mark.django_db(transaction=True)
async def test_ready_stays_200_and_degraded_when_the_upstream_is_down(
    async_client, settings, closed_port
):
    settings.OPENAI_BASE_URL = f"http://127.0.0.1:{closed_port}/v1"

    response = await wait_for_upstream(async_client)

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["upstream"]["status"] == "degraded"
    assert body["checks"]["upstream"]["error"] == "upstream check failed (ConnectError)"
    assert "failing" not in body


@pytest.mark.django_db(transaction=True)
async def test_ready_reads_the_upstream_result_without_calling_it(
    upstream_models_url, async_client, respx_mock
):
    route = respx_mock.get(upstream_models_url).mock(
        return_value=httpx.Response(200, json={"data": []})
    )
    await wait_for_upstream(async_client)

    for _ in range(5):
        await async_client.get("/health/ready")

    assert route.call_count == 1


@pytest.mark.django_db(transaction=True)
async def test_ready_skips_the_upstream_when_the_offline_model_answers(
    async_client, settings, respx_mock
):
    settings.OPENAI_API_KEY = ""
    settings.MOCK_MODEL_ENABLED = True

    response = await async_client.get("/health/ready")

    assert response.status_code == 200
    assert response.json()["checks"]["upstream"] == {"status": "skipped", "latency_ms": 0.0}
    assert not respx_mock.calls


@pytest.mark.django_db(transaction=True)
@pytest.mark.respx(assert_all_called=False)
async def test_ready_runs_one_upstream_task_per_event_loop(
    upstream_models_url, async_client, respx_mock
):
    respx_mock.get(upstream_models_url).mock(return_value=httpx.Response(200, json={"data": []}))

    await asyncio.gather(*(async_client.get("/health/ready") for _ in range(5)))
    await async_client.get("/health")

    tasks = [t for t in asyncio.all_tasks() if t.get_name() == "mamba-health-upstream"]
    assert len(tasks) == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.respx(assert_all_called=False)
async def test_ready_restarts_an_upstream_task_that_stopped(
    upstream_models_url, async_client, respx_mock
):
    respx_mock.get(upstream_models_url).mock(return_value=httpx.Response(200, json={"data": []}))
    await async_client.get("/health/ready")
    monitor = upstream_monitor()
    await monitor.stop()

    await async_client.get("/health/ready")

    assert monitor.running


# -- /health ---------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_health_reports_status_version_timestamp_and_checks(
    upstream_models_url, async_client, respx_mock, settings
):
    settings.HEALTH_DETAILS = True
    respx_mock.get(upstream_models_url).mock(return_value=httpx.Response(200, json={"data": []}))

    response = await async_client.get("/health")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"status", "version", "timestamp", "checks"}
    assert body["status"] == "healthy"
    assert body["version"] == "0.1.0"
    assert body["timestamp"].endswith("+00:00")
    assert set(body["checks"]) == {"database", "migrations", "upstream", "providers"}
    for check in body["checks"].values():
        assert check["status"] == "healthy"
        assert isinstance(check["latency_ms"], float)
        assert "error" not in check


async def test_health_returns_503_when_a_database_is_down(async_client, unreachable_database):
    response = await async_client.get("/health")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    assert body["checks"][f"database.{unreachable_database}"]["status"] == "unhealthy"


@pytest.mark.django_db(transaction=True)
async def test_health_is_degraded_not_503_when_the_upstream_refuses_the_key(
    upstream_models_url, async_client, respx_mock
):
    respx_mock.get(upstream_models_url).mock(return_value=httpx.Response(401))

    response = await async_client.get("/health")

    assert response.status_code == 200
    assert response.json()["status"] == "degraded"


async def test_health_shows_no_secret_nor_provider_body(
    upstream_models_url, async_client, settings, respx_mock, unreachable_database
):
    settings.HEALTH_DETAILS = True  # even with the errors shown
    settings.OPENAI_API_KEY = API_KEY
    settings.REDIS_URL = "redis://:redis-password@127.0.0.1:1/0"
    provider_body = {"error": {"message": f"Incorrect API key provided: {API_KEY} PROVIDER-TEXT"}}
    route = respx_mock.get(upstream_models_url).mock(
        return_value=httpx.Response(401, json=provider_body)
    )

    response = await async_client.get("/health")

    assert route.calls.last.request.headers["Authorization"] == f"Bearer {API_KEY}"
    text = response.content.decode()
    for secret in (API_KEY, "PROVIDER-TEXT", "redis-password", "Traceback", "127.0.0.1"):
        assert secret not in text
    upstream = response.json()["checks"]["upstream"]
    assert upstream["error"] == "the provider refused the gateway's credentials (HTTP 401)"


@pytest.mark.django_db(transaction=True)
async def test_health_shows_no_version_nor_errors_by_default(
    upstream_models_url, async_client, respx_mock
):
    respx_mock.get(upstream_models_url).mock(return_value=httpx.Response(401))

    response = await async_client.get("/health")

    body = response.json()
    assert set(body) == {"status", "timestamp", "checks"}
    assert body["status"] == "degraded"
    assert body["checks"]["upstream"] == {"status": "degraded", "latency_ms": ANY}
    assert "credentials" not in response.content.decode()


@pytest.mark.django_db(transaction=True)
async def test_ready_keeps_its_errors_without_details(async_client, settings, closed_port):
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port}/0"

    response = await async_client.get("/health/ready")

    assert response.json()["checks"]["redis"]["error"] == "redis check failed (ConnectionError)"


@pytest.mark.django_db(transaction=True)
async def test_probes_reuse_one_redis_connection(async_client, settings, redis_proxy):
    settings.REDIS_URL = redis_proxy.url

    for path in ["/health/ready"] * 5 + ["/health"] * 2:
        response = await async_client.get(path)
        assert response.json()["checks"]["redis"]["status"] == "healthy"

    assert redis_proxy.connections == 1


@pytest.mark.django_db(transaction=True)
async def test_probes_are_not_logged_at_info(async_client, caplog):
    caplog.set_level(logging.DEBUG)

    for path in ("/health/live", "/health/ready", "/health", "/models"):
        await async_client.get(path)

    access = {
        r.getMessage().split()[1]: r.levelno for r in caplog.records if r.name == "mamba.access"
    }
    assert access == {
        "/health/live": logging.DEBUG,
        "/health/ready": logging.DEBUG,
        "/health": logging.DEBUG,
        "/models": logging.INFO,  # the contrast: other requests are logged at INFO
    }
    assert not [r for r in caplog.records if r.name == "django.request"]

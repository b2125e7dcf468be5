import asyncio
import socket

import httpx
import pytest

from health import checks, monitor, probe, reports
from health.checks import ComponentResult, Status


async def upstream_result():
    async with httpx.AsyncClient() as client:
        return await checks.check_upstream(client)


async def test_check_upstream_is_healthy_when_models_answers_200(upstream_models_url, respx_mock):
    route = respx_mock.get(upstream_models_url).mock(return_value=httpx.Response(200, json={}))

    result = await upstream_result()

    assert result.status == Status.HEALTHY
    assert route.calls.last.request.headers["Authorization"] == "Bearer sk-test-key"


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, "the provider refused the gateway's credentials (HTTP 401)"),
        (403, "the provider refused the gateway's credentials (HTTP 403)"),
        (500, "the provider answered HTTP 500"),
        (404, "the provider answered HTTP 404"),
    ],
)
async def test_check_upstream_is_degraded_by_an_error_status(
    upstream_models_url, respx_mock, status, error
):
    respx_mock.get(upstream_models_url).mock(
        return_value=httpx.Response(status, text="provider detail sk-test-key")
    )

    result = await upstream_result()

    assert (result.status, result.error) == (Status.DEGRADED, error)


async def test_check_upstream_is_degraded_after_the_timeout(
    upstream_models_url, respx_mock, settings
):
    settings.HEALTH_TIMEOUT_SECONDS = 0.05
    respx_mock.get(upstream_models_url).mock(side_effect=httpx.ReadTimeout("slow"))

    result = await upstream_result()

    assert result.status == Status.DEGRADED
    assert result.error == "upstream check failed (ReadTimeout)"


async def test_check_upstream_is_degraded_without_a_key_and_offline_model(settings, respx_mock):
    settings.OPENAI_API_KEY = ""
    settings.MOCK_MODEL_ENABLED = False

    result = await upstream_result()

    assert result.status == Status.DEGRADED
    assert "MAMBA_OPENAI__API_KEY" in result.error
    assert not respx_mock.calls


async def test_check_upstream_is_skipped_when_disabled(settings, respx_mock):
    settings.HEALTH_OPENAI_CHECK_ENABLED = False

    result = await upstream_result()

    assert result.status == Status.SKIPPED
    assert not respx_mock.calls


async def test_check_redis_reports_a_server_that_does_not_answer_as_degraded(settings):
    # A local socket that accepts connections (its backlog) but never answers a command.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        settings.REDIS_URL = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        settings.HEALTH_TIMEOUT_SECONDS = 0.2

        result = await checks.check_redis()

    assert result.status == Status.DEGRADED
    assert result.error == "redis did not answer within 0.2 s"


def test_component_result_leaves_out_an_empty_error():
    assert ComponentResult(Status.HEALTHY, 1.234).as_dict() == {
        "status": "healthy",
        "latency_ms": 1.2,
    }


@pytest.mark.parametrize(
    ("statuses", "overall", "http_status"),
    [
        ([Status.HEALTHY, Status.SKIPPED, Status.PENDING], Status.HEALTHY, 200),
        ([Status.HEALTHY, Status.DEGRADED], Status.DEGRADED, 200),
        ([Status.DEGRADED, Status.UNHEALTHY], Status.UNHEALTHY, 503),
    ],
)
def test_report_status_is_the_worst_component(statuses, overall, http_status):
    report = reports.Report({str(i): ComponentResult(s) for i, s in enumerate(statuses)})

    assert (report.status, report.http_status) == (overall, http_status)


def test_service_version_comes_from_pyproject_unless_set(settings):
    reports.service_version.cache_clear()
    try:
        assert reports.service_version() == "0.1.0"
        reports.service_version.cache_clear()
        settings.VERSION = "2.3.4"
        assert reports.service_version() == "2.3.4"
    finally:
        reports.service_version.cache_clear()


async def test_monitor_first_result_is_pending_until_a_check_finishes(
    upstream_models_url, respx_mock
):
    respx_mock.get(upstream_models_url).mock(side_effect=httpx.ConnectError("down"))
    upstream = monitor.UpstreamMonitor()

    assert upstream.result.status == Status.PENDING
    assert (await upstream.first_result(within=0.01)).status == Status.PENDING
    upstream.ensure_running()
    assert (await upstream.first_result(within=2.0)).status == Status.DEGRADED
    await upstream.stop()
    assert not upstream.running


def test_probe_fails_when_nothing_listens(closed_port):
    assert probe.main(["--port", str(closed_port), "--timeout", "1"]) == 1


async def test_check_redis_replaces_its_client_when_the_settings_change(settings, redis_proxy):
    settings.REDIS_URL = redis_proxy.url
    assert (await checks.check_redis()).status == Status.HEALTHY
    settings.HEALTH_TIMEOUT_SECONDS = 2.5

    assert (await checks.check_redis()).status == Status.HEALTHY
    async with asyncio.timeout(2):
        await redis_proxy.closed_by_client.wait()  # the old client, closed in the background

    assert redis_proxy.connections == 2

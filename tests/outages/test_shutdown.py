"""Usage records kept through a database outage, at the server's shutdown (a real process)."""

import asyncio
import os
import signal
import sys
import time

import httpx
import pytest
from django.db import connections

from mamba_site.db import db_call
from mamba_site.models import ApiKeyUsage
from tests.deploy.conftest import start_server
from tests.fake_upstream import FakeUpstream


@pytest.fixture(scope="module")
def fake_upstream():
    with FakeUpstream.running_in_thread() as upstream:
        yield upstream


@pytest.fixture
def serve(postgres, fake_upstream, tmp_path):
    """Start `python -m mamba_site.serve` with a shutdown grace on this test's database,
    through the forwarder; killed at the end if still running."""
    servers = []

    def start(grace):
        name = connections.settings["default"]["NAME"]
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "MAMBA_DATABASE_URL": f"postgres://postgres@127.0.0.1:{postgres.port}/{name}",
            "MAMBA_AUTH__MODE": "api_key",
            "MAMBA_OPENAI__BASE_URL": fake_upstream.base_url,
            "MAMBA_OPENAI__API_KEY": "sk-fake",
            "MAMBA_OPENAI__HTTP_CLIENT": "aiohttp",
            "MAMBA_HEALTH__OPENAI_CHECK_ENABLED": "false",
            "MAMBA_DATABASE__TIMEOUT_SECONDS": "1",
            # Long retries: after the outage, only the shutdown's flush writes what was kept.
            "MAMBA_USAGE__RETRY_MAX_SECONDS": "60",
            "MAMBA_SERVER__SHUTDOWN_GRACE_SECONDS": str(grace),
            "PYTHONUNBUFFERED": "1",
        }
        command = [sys.executable, "-m", "mamba_site.serve", "--bind", "127.0.0.1", "--port", "0"]
        server = start_server(command, env, tmp_path / "serve.log")
        server.grace = grace
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def models(server, secret):
    return httpx.get(server.url + "/models", headers={"X-API-Key": secret}, timeout=10)


def chat_through(server, secret, count):
    with httpx.Client(timeout=10, headers={"X-API-Key": secret}) as client:
        return [
            client.post(
                server.url + "/chat", json={"messages": [{"role": "user", "content": "hi"}]}
            )
            for _ in range(count)
        ]


def stop(server):
    """SIGTERM; the seconds until the process exited."""
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(timeout=server.grace + 5)
    return time.monotonic() - started


def usage_requests():
    return sum(ApiKeyUsage.objects.values_list("requests", flat=True))


async def test_shutdown_writes_usage_kept_through_an_outage(
    serve, postgres, issue, record_property
):
    server = serve(grace=3)
    _, secret = await issue()
    assert (await asyncio.to_thread(models, server, secret)).status_code == 200  # tables read
    postgres.refuse()
    responses = await asyncio.to_thread(chat_through, server, secret, 5)
    assert [response.status_code for response in responses] == [200] * 5
    assert all(response.text.endswith("data: [DONE]\n\n") for response in responses)
    await asyncio.sleep(1.0)  # failed writes: the next retry is a second or more away
    postgres.heal()

    seconds = stop(server)
    record_property("seconds", seconds)

    assert server.process.returncode == 0
    assert seconds < server.grace
    assert "Shutdown: writing 5 usage records kept" in server.log()
    assert "Shutdown: usage records written" in server.log()
    assert await db_call(usage_requests) == 5


async def test_shutdown_counts_and_logs_usage_the_database_never_took(
    serve, postgres, issue, record_property
):
    server = serve(grace=1)
    _, secret = await issue()
    assert (await asyncio.to_thread(models, server, secret)).status_code == 200  # tables read
    postgres.refuse()
    responses = await asyncio.to_thread(chat_through, server, secret, 3)
    assert [response.status_code for response in responses] == [200] * 3

    seconds = stop(server)
    record_property("seconds", seconds)

    # The grace, one last try of 1 s, and a database call still running (1 s) at exit.
    assert seconds < server.grace + 3
    assert "3 usage records lost: the database did not take them" in server.log()

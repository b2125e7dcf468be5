"""The AI SDK's client against a key-protected Mamba: the key goes in the transport's headers
(as a frontend would configure `DefaultChatTransport`), and a missing or revoked key surfaces
as the SDK's error with Mamba's JSON body."""

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import (
    REPO_ROOT,
    ChatClient,
    FakeUpstreamProcess,
    Service,
    daphne_env,
    running_service,
)

SDKS = ["7", "6"]


@pytest.fixture(scope="module")
def keyed_service(
    fake_upstream: FakeUpstreamProcess,
    e2e_database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Service]:
    env = daphne_env(
        e2e_database_url,
        {"MAMBA_AUTH__MODE": "api_key", "MAMBA_OPENAI__BASE_URL": fake_upstream.base_url},
    )
    log_path = tmp_path_factory.mktemp("keyed-daphne") / "daphne.log"
    # A keyed service answers /models only with a key: it is probed at /health/live.
    with running_service(env, log_path, probe="/health/live") as service:
        yield service


def create_key(service: Service, name: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", "createapikey", name, "--agents", "main"],
        cwd=REPO_ROOT,
        env=service.env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def api_key(keyed_service: Service) -> str:
    secret = create_key(keyed_service, "e2e frontend")
    time.sleep(1.1)  # issued by another process: the server reads the key table within 1 s
    return secret


@pytest.fixture
def keyed_chat(node_client: Path, keyed_service: Service, fake_upstream) -> ChatClient:
    fake_upstream.reset()
    return ChatClient(node_client, keyed_service)


@pytest.mark.parametrize("sdk", SDKS)
def test_sdk_streams_with_the_key_in_transport_headers(sdk, keyed_chat, api_key):
    report = keyed_chat(sdk=sdk, text="hello with a key", headers={"X-API-Key": api_key})
    assert report["ok"], report.get("error")
    [text] = [p for p in report["message"]["parts"] if p["type"] == "text"]
    assert text["text"] == "Echo: hello with a key"
    bearer = keyed_chat(sdk=sdk, text="bearer", headers={"Authorization": f"Bearer {api_key}"})
    assert bearer["ok"], bearer.get("error")


@pytest.mark.parametrize("sdk", SDKS)
def test_sdk_surfaces_missing_key_as_json_401(sdk, keyed_chat, fake_upstream):
    report = keyed_chat(sdk=sdk, text="no key")
    assert not report["ok"]
    assert report["status"] == 401
    body = json.loads(report["error"])
    assert body["code"] == "AUTH_REQUIRED"
    assert fake_upstream.requests() == []


def test_sdk_surfaces_scope_refusal_as_json_403(keyed_chat, api_key):
    report = keyed_chat(
        sdk="7", text="x", headers={"X-API-Key": api_key}, body={"agent": "research"}
    )
    assert report["status"] == 403
    assert json.loads(report["error"])["code"] == "FORBIDDEN"


def test_sdk_revoked_key_stops_working(keyed_chat, keyed_service):
    secret = create_key(keyed_service, "to revoke")
    time.sleep(1.1)  # issued by another process: this server reads the key table within 1 s
    assert keyed_chat(sdk="7", text="before", headers={"X-API-Key": secret})["ok"]
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c",
         "from mamba_site.models import ApiKey; from mamba_site.services import api_key_revoke; "
         "api_key_revoke(api_key=ApiKey.objects.get(name='to revoke'), by=None)"],
        cwd=REPO_ROOT, env=keyed_service.env, check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    # Another process revoked it: this server sees it within MAMBA_AUTH__KEY_CACHE_SECONDS.
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        report = keyed_chat(sdk="7", text="after", headers={"X-API-Key": secret})
        if report["status"] == 401:
            break
        time.sleep(0.5)
    assert report["status"] == 401
    assert json.loads(report["error"])["code"] == "AUTH_INVALID"

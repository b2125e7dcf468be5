import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def settings_env_names():
    source = (ROOT / "mamba_site" / "settings.py").read_text()
    names = {f"MAMBA_{name}" for name in re.findall(r'env\.\w+\(\s*"([A-Z_]+)"', source)}
    return names | set(re.findall(r'os\.environ\.get\("([A-Z_]+)"', source))


def test_env_example_lists_every_setting():
    example = (ROOT / ".env.example").read_text()
    listed = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", example, flags=re.MULTILINE))
    assert settings_env_names() - listed == set()
    assert listed - settings_env_names() == set()


@pytest.mark.django_db
def test_api_refuses_a_host_outside_allowed_hosts(client):
    response = client.get("/models", HTTP_HOST="evil.example")
    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_REQUEST"
    assert client.get("/models", HTTP_HOST="localhost").status_code == 200


async def test_api_refuses_a_host_outside_allowed_hosts_under_asgi(async_client):
    response = await async_client.get("/openapi.json", headers={"Host": "evil.example"})
    assert response.status_code == 400
    assert response.json()["detail"] == "The Host header is not one this service answers to."


def test_settings_use_no_redis_cache_when_redis_url_is_set():
    # Nothing uses Django's cache: Redis holds the rate-limit counters only.
    env = {**os.environ, "REDIS_URL": "redis://127.0.0.1:6379/9"}
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    code = "import django; django.setup(); from django.core.cache import caches; "
    code += "print(type(caches['default']).__name__)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "LocMemCache"

import re
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

import json
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


# -- The .env file ---------------------------------------------------------------------------

DUMP_SETTINGS = (
    "import json, importlib, sys; "
    "module = importlib.import_module(sys.argv[1]); "
    "print(json.dumps({k: v for k, v in vars(module).items() if k.isupper()}, default=str))"
)


def load_settings(env, module="mamba_site.settings"):
    """The settings `module` computes in a fresh process with only `env` (and PATH) set."""
    result = subprocess.run(
        [sys.executable, "-c", DUMP_SETTINGS, module],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_settings_read_a_dotenv_file(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("# development\nMAMBA_DEBUG=true\nMAMBA_TITLE__MAX_LENGTH=7\n")

    loaded = load_settings({"MAMBA_DOTENV": str(dotenv)})

    assert (loaded["DEBUG"], loaded["TITLE_MAX_LENGTH"]) == (True, 7)


def test_settings_prefer_the_environment_to_the_dotenv_file(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "MAMBA_DEBUG=true\nMAMBA_TITLE__MAX_LENGTH=7\nREDIS_URL=redis://file:6379/0\n"
    )

    loaded = load_settings(
        {"MAMBA_DOTENV": str(dotenv), "MAMBA_TITLE__MAX_LENGTH": "9", "REDIS_URL": ""}
    )

    assert (loaded["TITLE_MAX_LENGTH"], loaded["REDIS_URL"]) == (9, "")


def test_settings_refuse_a_dotenv_file_that_does_not_exist(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", "import mamba_site.settings"],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], "MAMBA_DOTENV": str(tmp_path / "missing.env")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode != 0
    assert f"MAMBA_DOTENV={tmp_path / 'missing.env'}: there is no such file." in result.stderr


@pytest.mark.parametrize(
    "env",
    [{"MAMBA_DEBUG": "true"}, {"MAMBA_SECRET_KEY": "production-" + "x" * 40}],
    ids=["debug", "production"],
)
def test_env_example_copied_to_dotenv_changes_no_setting(env):
    defaults = load_settings({**env, "MAMBA_DOTENV": ""})
    copied = load_settings({**env, "MAMBA_DOTENV": str(ROOT / ".env.example")})

    assert {k: v for k, v in copied.items() if k != "DOTENV"} == {
        k: v for k, v in defaults.items() if k != "DOTENV"
    }


def test_test_settings_ignore_a_dotenv_file(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("MAMBA_TITLE__MAX_LENGTH=7\n")

    loaded = load_settings(
        {"MAMBA_DOTENV": str(dotenv), "MAMBA_DATABASE_URL": "sqlite:///:memory:"},
        module="tests.settings",
    )

    assert loaded["TITLE_MAX_LENGTH"] == 50


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

"""What a server process loads: a driver only for what is configured (memory per process)."""

import json
import os
import subprocess
import sys

from tests.deploy.conftest import REPO_ROOT

PROBE = """
import asyncio, json, sys
from mamba_site.serve import load_server
load_server("uvloop")  # daphne and Twisted, as `python -m mamba_site.serve` loads them
from daphne.utils import import_by_path
import_by_path("mamba_site.asgi:application")
print(json.dumps(sorted({name.split(".")[0] for name, m in sys.modules.items() if m is not None})))
"""


def loaded(tmp_path, **env):
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("MAMBA_") and key != "REDIS_URL"
    }
    environment |= {
        "DJANGO_SETTINGS_MODULE": "mamba_site.settings",
        "MAMBA_SECRET_KEY": "x" * 50,
        "MAMBA_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "MAMBA_DOTENV": "",
        **env,
    }
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def test_the_embedded_default_loads_neither_postgresql_nor_redis_drivers(tmp_path):
    modules = loaded(tmp_path)
    assert "django" in modules
    assert "daphne" in modules
    assert not {"psycopg", "psycopg_pool", "redis"} & modules


def test_the_server_does_not_load_twisted_tls(tmp_path):
    """TLS ends at the ingress; Twisted's TLS (pyOpenSSL, service_identity) is never used."""
    modules = loaded(tmp_path)
    assert "twisted" in modules
    assert not {"OpenSSL", "service_identity"} & modules

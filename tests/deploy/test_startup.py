"""What a developer sees when the service starts: each configuration warning once, nothing else
alarming (no Python warnings), with `make run`'s server and with `manage.py runserver`."""

import os
import socket
import subprocess
import sys
import time

import pytest

from tests.deploy.conftest import REPO_ROOT, start_server

WARNINGS = ("No OpenAI API key is configured", "the API answers without authentication")


@pytest.fixture
def development_env(deploy_database_url):
    """`make run`'s defaults: the real settings with MAMBA_DEBUG on, no key, no .env."""
    return {
        "PATH": os.environ["PATH"],
        "MAMBA_DOTENV": "",
        "MAMBA_DEBUG": "true",
        "MAMBA_DATABASE_URL": deploy_database_url,
        "PYTHONUNBUFFERED": "1",
    }


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_listening(port, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def test_serve_logs_each_startup_warning_once(development_env, tmp_path):
    command = [sys.executable, "-m", "mamba_site.serve", "--bind", "127.0.0.1", "--port", "0"]
    server = start_server(command, development_env, tmp_path / "serve.log")
    try:
        log = server.log()
    finally:
        server.stop()

    assert [log.count(warning) for warning in WARNINGS] == [1, 1], log
    assert "Warning:" not in log


def test_runserver_logs_each_startup_warning_once(development_env, tmp_path):
    port = free_port()
    log_path = tmp_path / "runserver.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
            cwd=REPO_ROOT,
            env=development_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        # Listening means the application (mamba_site.asgi) is imported.
        assert wait_until_listening(port, timeout=30), log_path.read_text()
    finally:
        process.kill()
        process.wait(timeout=10)
    log = log_path.read_text()

    assert [log.count(warning) for warning in WARNINGS] == [1, 1], log
    assert "Warning:" not in log

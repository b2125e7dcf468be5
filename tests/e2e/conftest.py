"""End-to-end fixtures: the fake OpenAI upstream and daphne as real processes, and the AI SDK
client (tests/e2e/node/client.mjs) as the browser.

Session fixtures start, once per test session:
- `npm ci` in tests/e2e/node when its node_modules is missing (a fresh CI machine);
- `python -m tests.fake_upstream --port 0` (the OpenAI stand-in; `READY <port>` on stdout);
- a database of its own for the service (agents live in the database): a fresh
  `<name>_e2e_<pid>` on the server of MAMBA_DATABASE_URL (as tests/settings.py resolves it),
  migrated (which seeds the agents) and dropped at the end; or MAMBA_E2E_DATABASE_URL as is
  (then only migrated, never dropped);
- `python -m mamba_site.serve` (daphne, as the image runs it) on a free port, pointed at the
  fake upstream and that database, with its log captured to a file the tests read.

A module that needs another fake or a differently configured service starts its own with
`running_fake_upstream()` and `running_service(daphne_env(...), log_path)`.

The tests themselves use no database (no `db` fixture). Node and npm are required: without
them the tests fail with an explanation rather than skip. Browser tests use `browser`: Debian's
chromium driven by Playwright (skipped where it is not installed, required in CI).
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.databases import migrate, migrated_database
from tests.services import missing

E2E_DIR = Path(__file__).resolve().parent
NODE_DIR = E2E_DIR / "node"
CLIENT = NODE_DIR / "client.mjs"
REPO_ROOT = E2E_DIR.parent.parent
START_TIMEOUT = 30.0
CLIENT_TIMEOUT = 60.0
CHROMIUM = os.environ.get("MAMBA_CHROMIUM", "/usr/bin/chromium")
# Chromium on a machine without network or display: no sandbox (root), no background traffic.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).resolve().is_relative_to(E2E_DIR):
            item.add_marker(pytest.mark.e2e)


def _require(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        pytest.fail(
            f"The end-to-end tests need `{program}` on PATH (Node.js 20+ with npm): they drive "
            "the real AI SDK client in tests/e2e/node. Install Node.js and run them again.",
            pytrace=False,
        )
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def _http_json(
    url: str, method: str = "GET", timeout: float = 5.0, payload: dict[str, Any] | None = None
) -> Any:
    data = json.dumps(payload).encode() if payload is not None else b""
    request = urllib.request.Request(url, method=method, data=data if method == "POST" else None)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


# -- Node client ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def node_client() -> Path:
    """tests/e2e/node with its dependencies installed (`npm ci` on a fresh checkout)."""
    _require("node")
    installed = all(
        (NODE_DIR / "node_modules" / name / "package.json").exists()
        for name in ("ai", "ai6", "ai606", "zod")
    )
    if not installed:
        npm = _require("npm")
        command = [npm, "ci"] if (NODE_DIR / "package-lock.json").exists() else [npm, "install"]
        result = subprocess.run(
            [*command, "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode != 0:
            pytest.fail(
                f"`{' '.join(command)}` failed in {NODE_DIR}:\n{result.stdout}\n{result.stderr}",
                pytrace=False,
            )
    return CLIENT


# -- The fake upstream ---------------------------------------------------------------------


@dataclass
class FakeUpstreamProcess:
    process: subprocess.Popen[bytes]
    port: int

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    def state(self) -> dict[str, Any]:
        return _http_json(f"{self.origin}/_fake/state")  # type: ignore[no-any-return]

    def reset(self) -> None:
        _http_json(f"{self.origin}/_fake/reset", method="POST")

    def requests(self) -> list[dict[str, Any]]:
        return self.state()["requests"]  # type: ignore[no-any-return]

    def set_fault(self, fault: str | None, times: int | None = None) -> None:
        """Misbehave on the next `times` chat requests (tests/fake_upstream.py FAULTS)."""
        payload = {"fault": fault, "times": times}
        _http_json(f"{self.origin}/_fake/fault", method="POST", payload=payload)

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float
    ) -> tuple[bool, dict[str, Any], float]:
        """Poll the state until `predicate` holds: (held, last state, seconds waited)."""
        started = time.monotonic()
        while True:
            state = self.state()
            waited = time.monotonic() - started
            if predicate(state):
                return True, state, waited
            if waited >= timeout:
                return False, state, waited
            time.sleep(0.02)


@pytest.fixture(scope="session")
def fake_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeUpstreamProcess]:
    with running_fake_upstream(tmp_path_factory.mktemp("fake-upstream")) as upstream:
        yield upstream


@contextlib.contextmanager
def running_fake_upstream(log_dir: Path) -> Iterator[FakeUpstreamProcess]:
    """`python -m tests.fake_upstream` on a free port (its output in `log_dir`), stopped after."""
    stdout_path, stderr_path = log_dir / "stdout.log", log_dir / "stderr.log"
    with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.fake_upstream", "--host", "127.0.0.1", "--port", "0"],
            cwd=REPO_ROOT,
            stdout=stdout,
            stderr=stderr,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        port = None
        while port is None:
            for line in stdout_path.read_text().splitlines():
                if line.startswith("READY "):
                    port = int(line.split()[1])
            if port is None:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        "The fake upstream did not start:\n" + stderr_path.read_text(),
                        pytrace=False,
                    )
                time.sleep(0.05)
        yield FakeUpstreamProcess(process, port)
    finally:
        _stop(process)


# -- The service's database ----------------------------------------------------------------


@pytest.fixture(scope="session")
def e2e_database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database for the service under test (MAMBA_E2E_DATABASE_URL: as is)."""
    given = os.environ.get("MAMBA_E2E_DATABASE_URL")
    if given:
        migrate(given)
        yield given
        return
    with migrated_database("e2e", tmp_path_factory.mktemp("e2e-db")) as url:
        yield url


# -- The service under test ----------------------------------------------------------------


@dataclass
class Service:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    env: dict[str, str] = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def chat_url(self) -> str:
        return f"{self.url}/chat"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, *needles: str, timeout: float = 3.0) -> str:
        """The log once one line contains every needle (or the whole log after the timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.log()
            if any(all(n in line for n in needles) for line in text.splitlines()):
                return text
            if time.monotonic() > deadline:
                return text
            time.sleep(0.05)


DAPHNE_ENV = {
    "DJANGO_SETTINGS_MODULE": "tests.settings",
    "MAMBA_OPENAI__API_KEY": "sk-fake",
    "MAMBA_OPENAI__MAX_RETRIES": "0",
    # The image's default connection pool (tests/settings.py picks httpx's, which respx mocks).
    "MAMBA_OPENAI__HTTP_CLIENT": "aiohttp",
    "MAMBA_CHAT__KEEPALIVE_SECONDS": "0.5",
    "MAMBA_CHAT__IDLE_TIMEOUT_SECONDS": "5",
    "MAMBA_MOCK_MODEL__ENABLED": "true",
    "PYTHONUNBUFFERED": "1",
}


def daphne_env(database_url: str, settings: dict[str, str]) -> dict[str, str]:
    """The environment of a daphne under test: this one, DAPHNE_ENV, then `settings`."""
    return {**os.environ, **DAPHNE_ENV, "MAMBA_DATABASE_URL": database_url, **settings}


def _start_daphne(
    env: dict[str, str], log_path: Path, probe: str = "/models"
) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            # The image's server: daphne with Mamba's receive queue, writes, body cap, drain.
            [sys.executable, "-m", "mamba_site.serve", "--bind", "127.0.0.1", "--port", str(port)],
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return process, port
        try:
            _http_json(f"http://127.0.0.1:{port}{probe}", timeout=2)
            return process, port
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            time.sleep(0.1)
    return process, port


@pytest.fixture(scope="session")
def service(
    fake_upstream: FakeUpstreamProcess,
    e2e_database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Service]:
    env = daphne_env(e2e_database_url, {"MAMBA_OPENAI__BASE_URL": fake_upstream.base_url})
    with running_service(env, tmp_path_factory.mktemp("daphne") / "daphne.log") as started:
        yield started


@contextlib.contextmanager
def running_service(
    env: dict[str, str], log_path: Path, probe: str = "/models"
) -> Iterator[Service]:
    """daphne with `env` on a free port, once it answers `probe` (its log in `log_path`); a
    service that needs credentials is probed at /health/live."""
    process = None
    for _attempt in range(3):  # the free port may be taken between probe and bind
        process, port = _start_daphne(env, log_path, probe)
        if process.poll() is None:
            break
    assert process is not None
    if process.poll() is not None:
        pytest.fail(f"daphne did not start; its log:\n{log_path.read_text()}", pytrace=False)
    try:
        _http_json(f"http://127.0.0.1:{port}{probe}", timeout=5)
    except Exception as error:
        _stop(process)
        pytest.fail(
            f"daphne does not answer {probe} ({error}); log:\n{log_path.read_text()}",
            pytrace=False,
        )
    try:
        yield Service(process, port, log_path, env)
    finally:
        _stop(process)


# -- The browser ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless chromium, one per test module."""
    if not shutil.which(CHROMIUM):
        # Skipped where it could not be installed (no root or sudo); CI requires it.
        missing(
            f"no chromium at {CHROMIUM} for the browser tests (`make test` installs Debian's "
            "with apt-get as root or via sudo; or set MAMBA_CHROMIUM)"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


# -- Running the client --------------------------------------------------------------------


@dataclass
class ChatClient:
    client: Path
    service: Service

    def __call__(
        self,
        *,
        sdk: str,
        text: str | None = None,
        body: dict[str, Any] | None = None,
        messages: list[dict[str, Any]] | None = None,
        abort_after_ms: int | None = None,
        timeout_ms: int = 30000,
        url: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        args = [
            "node",
            str(self.client),
            "--sdk",
            sdk,
            "--url",
            url or self.service.chat_url,
            "--body",
            json.dumps(body if body is not None else {"model": "gpt-4o"}),
            "--messages",
            json.dumps(messages or []),
            "--timeout-ms",
            str(timeout_ms),
            "--headers",
            json.dumps(headers or {}),
        ]
        if text is not None:
            args += ["--text", text]
        if abort_after_ms is not None:
            args += ["--abort-after-ms", str(abort_after_ms)]
        result = subprocess.run(
            args, cwd=NODE_DIR, capture_output=True, text=True, timeout=CLIENT_TIMEOUT, check=False
        )
        if result.returncode != 0:
            pytest.fail(
                f"client.mjs failed (exit {result.returncode}), a harness bug:\n{result.stderr}",
                pytrace=False,
            )
        try:
            report: dict[str, Any] = json.loads(result.stdout)
        except json.JSONDecodeError:
            pytest.fail(f"client.mjs printed no JSON:\n{result.stdout}\n{result.stderr}")
        report["_stdout"] = result.stdout
        return report


@pytest.fixture
def chat(node_client: Path, service: Service, fake_upstream: FakeUpstreamProcess) -> ChatClient:
    """Send one chat turn through the AI SDK client; the fake upstream starts empty."""
    fake_upstream.reset()
    return ChatClient(node_client, service)

"""Deployment fixtures: Dockerfile, Makefile, k8s/ and settings parsed; the server as a process."""

# The server's database is a fresh, migrated `<name>_deploy_<pid>` on the server of
# MAMBA_DATABASE_URL (as tests/settings.py resolves it), dropped at the end, or a temporary
# SQLite file; its upstream is tests/fake_upstream.py on a thread of this process.

import ast
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.databases import migrated_database
from tests.fake_upstream import FakeUpstream

REPO_ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = REPO_ROOT / "k8s"
SETTINGS_PY = REPO_ROOT / "mamba_site" / "settings.py"
START_TIMEOUT = 30.0
LISTENING = re.compile(r"Listening on 127\.0\.0\.1:(\d+)")


# -- What the settings read ------------------------------------------------------------------


@dataclass(frozen=True)
class EnvName:
    name: str
    required: bool


def _string_arg(call: ast.Call) -> str | None:
    if call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str):
        return call.args[0].value
    return None


def _is_required(call: ast.Call) -> bool:
    # No default, or one that is `environ.Env.NOTSET` in some case (SECRET_KEY without DEBUG).
    defaults = [kw.value for kw in call.keywords if kw.arg == "default"]
    return not defaults or "NOTSET" in ast.unparse(defaults[0])


def settings_env_names() -> dict[str, EnvName]:
    """Every environment variable mamba_site/settings.py reads, derived from its source."""
    tree = ast.parse(SETTINGS_PY.read_text())
    prefix = ""
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "env.prefix":
            prefix = ast.literal_eval(node.value)
    names: dict[str, EnvName] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or (name := _string_arg(node)) is None:
            continue
        func = ast.unparse(node.func)
        if func == "env" or (func.startswith("env.") and func.count(".") == 1):
            names[prefix + name] = EnvName(prefix + name, _is_required(node))
        elif func in ("os.environ.get", "os.getenv"):
            names[name] = EnvName(name, False)
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            name = ast.literal_eval(node.slice)
            names[name] = EnvName(name, True)
    return names


# -- Dockerfile and Makefile -----------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    stage: int

    def exec_form(self) -> list[str]:
        """The JSON (exec) form of CMD/ENTRYPOINT/HEALTHCHECK's command."""
        text = self.arguments
        if self.keyword == "HEALTHCHECK":
            text = text.split(" CMD ", 1)[1]
        return json.loads(text)


def dockerfile_instructions(path: Path = REPO_ROOT / "Dockerfile") -> list[Instruction]:
    instructions: list[Instruction] = []
    stage = -1
    logical = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not logical and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            logical += line[:-1].strip() + " "
            continue
        logical += line
        keyword, _, arguments = logical.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(keyword, arguments.strip(), stage))
        logical = ""
    return instructions


def env_assignments(command: str) -> tuple[dict[str, str], list[str]]:
    """`A=1 B=2 prog args` -> ({A: 1, B: 2}, [prog, args])."""
    words = shlex.split(command)
    env: dict[str, str] = {}
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    return env, words


def makefile_recipe(target: str, path: Path = REPO_ROOT / "Makefile") -> list[str]:
    """The recipe lines of `target`, continuation lines joined."""
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"^{re.escape(target)}:", line))
    recipe: list[str] = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        if recipe and recipe[-1].endswith("\\"):
            recipe[-1] = recipe[-1][:-1].rstrip() + " " + line.strip()
        else:
            recipe.append(line.strip())
    return recipe


# -- Kubernetes manifests --------------------------------------------------------------------


def k8s_documents() -> list[tuple[Path, dict[str, Any]]]:
    documents = []
    for path in sorted(K8S_DIR.glob("*.yaml")):
        documents.extend((path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc)
    return documents


def k8s_resource(kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [
        doc
        for _path, doc in k8s_documents()
        if doc.get("kind") == kind and (name is None or doc["metadata"]["name"] == name)
    ]
    assert len(matches) == 1, f"expected one {kind} {name or ''} in k8s/, found {len(matches)}"
    return matches[0]


# -- A database for the server ---------------------------------------------------------------


@pytest.fixture(scope="session")
def deploy_database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with migrated_database("deploy", tmp_path_factory.mktemp("deploy-db")) as url:
        yield url


@pytest.fixture(scope="session")
def fake_upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream.running_in_thread() as upstream:
        yield upstream


# -- The server as a process -----------------------------------------------------------------


def wait_until(predicate, timeout):
    """Whether `predicate()` becomes true within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str, host: str = "localhost", timeout: float = 5.0) -> tuple[int, bytes]:
        request = urllib.request.Request(self.url + path, headers={"Host": host})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)


def start_server(command: list[str], env: dict[str, str], log_path: Path) -> ServerProcess:
    """Start `command` (a server printing `Listening on 127.0.0.1:<port>`) and wait for it."""
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if match := LISTENING.search(log_path.read_text(errors="replace")):
            server = ServerProcess(process, int(match.group(1)), log_path)
            break
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the server did not start; its log:\n{log_path.read_text()}")
        time.sleep(0.05)
    status, _ = server.get("/health/live")
    assert status == 200, server.log()
    return server


@pytest.fixture
def serve(deploy_database_url, fake_upstream, tmp_path):
    """Start `python -m mamba_site.serve` with the given shutdown grace; killed at the end."""
    servers = []

    def start(grace_seconds, *options):
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "MAMBA_DATABASE_URL": deploy_database_url,
            "MAMBA_OPENAI__BASE_URL": fake_upstream.base_url,
            "MAMBA_OPENAI__API_KEY": "sk-fake",
            "MAMBA_SERVER__SHUTDOWN_GRACE_SECONDS": str(grace_seconds),
            "PYTHONUNBUFFERED": "1",
        }
        command = [sys.executable, "-m", "mamba_site.serve", "--bind", "127.0.0.1", "--port", "0"]
        server = start_server([*command, *options], env, tmp_path / f"serve-{len(servers)}.log")
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()

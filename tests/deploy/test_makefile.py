import re
import subprocess

import pytest

from tests.deploy.conftest import REPO_ROOT

MAKEFILE = REPO_ROOT / "Makefile"


def make(*args, env=None):
    """`make` in the checkout: its output (dry runs with -n execute nothing)."""
    result = subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


def makefile_targets():
    """Every target the Makefile defines by name (not files, not variable assignments)."""
    return re.findall(r"^([a-z][a-z-]*):(?!=)", MAKEFILE.read_text(), flags=re.MULTILINE)


@pytest.fixture
def venv(tmp_path):
    """A virtualenv directory for dry runs: made by nothing, so nothing is installed."""
    path = tmp_path / "venv"
    path.mkdir()
    return path


def pip_lines(output):
    return [line for line in output.splitlines() if "pip install" in line]


def test_make_help_lists_every_target():
    listed = re.findall(r"^  make (\S+)", make("help"), flags=re.MULTILINE)

    assert len(makefile_targets()) >= 15
    assert sorted(listed) == sorted(makefile_targets())


def test_make_run_installs_only_the_service_requirements(venv):
    (line,) = pip_lines(make("-n", f"VENV={venv}", "run"))

    assert line.endswith("-r requirements.txt")


def test_make_test_installs_the_tools_requirements(venv):
    (line,) = pip_lines(make("-n", f"VENV={venv}", "test-fast"))

    assert line.endswith("-r requirements-dev.txt")


def test_make_run_installs_nothing_after_the_tools_were_installed(venv):
    (venv / ".installed-dev").touch()
    (venv / ".installed-run").touch()

    assert pip_lines(make("-n", f"VENV={venv}", "run")) == []


def test_make_test_installs_the_tools_after_make_run(venv):
    (venv / ".installed-run").touch()

    assert len(pip_lines(make("-n", f"VENV={venv}", "test-fast"))) == 1


def test_make_run_turns_debug_on_by_default(venv, tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("MAMBA_TITLE__MAX_LENGTH=7\n")

    output = make("-n", f"VENV={venv}", f"MAMBA_DOTENV={dotenv}", "run")

    assert "MAMBA_DEBUG=${MAMBA_DEBUG:-true} " in output.splitlines()[-1]


def test_make_run_leaves_debug_to_the_dotenv_file_that_sets_it(venv, tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("MAMBA_DEBUG=false\n")

    output = make("-n", f"VENV={venv}", f"MAMBA_DOTENV={dotenv}", "run")

    assert "MAMBA_DEBUG" not in output

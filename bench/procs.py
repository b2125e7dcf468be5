"""The two servers as subprocesses (fake upstream, Mamba on daphne) and their /proc figures."""

import contextlib
import ctypes
import http.client
import os
import resource
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

REPO_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PR_SET_PDEATHSIG = 1
# How Mamba is served: plain daphne (the default), or the image's `mamba_site.serve`
# (daphne with a graceful drain on SIGTERM; `--workers N` pre-forks N processes).
SERVERS = {
    "daphne": "-m daphne --access-log /dev/null -b 127.0.0.1 -p {port} mamba_site.asgi:application",
    "serve": "-m mamba_site.serve --bind 127.0.0.1 --port {port}",
    # For comparison only (not what the image runs): uvicorn with httptools and uvloop, from
    # requirements-dev.txt.
    "uvicorn": "-m uvicorn --host 127.0.0.1 --port {port} --no-access-log --lifespan off "
    "--loop uvloop --http httptools mamba_site.asgi:application",
}
API_KEY_NAME = "bench"


class SetupError(RuntimeError):
    """The bench cannot run as asked (an option the checkout does not support, a limit)."""


@dataclass(frozen=True, slots=True)
class ProcSample:
    """One reading of a process: CPU seconds (user+system, all threads) and memory in KiB."""

    cpu_s: float
    rss_kib: int
    hwm_kib: int


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


def sample(pid: int) -> ProcSample:
    """CPU time from /proc/<pid>/stat (utime+stime) and VmRSS/VmHWM from /proc/<pid>/status."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "; fields[0] is field 3
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # fields 14 and 15 of proc(5)
    memory = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            memory[key] = int(value.split()[0])
    return ProcSample(cpu, memory.get("VmRSS", 0), memory.get("VmHWM", 0))


def tree_pids(pid: int) -> list[int]:
    """`pid` and every process below it (the workers a pre-forking server started)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue  # gone meanwhile
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


def sample_tree(pid: int) -> ProcSample:
    """`sample()` summed over `pid` and its descendants. A worker that exited takes its CPU
    time with it; RSS of forked workers counts their shared pages once per process."""
    samples = []
    for member in tree_pids(pid):
        with contextlib.suppress(OSError, ValueError, IndexError):
            samples.append(sample(member))
    return ProcSample(
        sum(s.cpu_s for s in samples),
        sum(s.rss_kib for s in samples),
        sum(s.hwm_kib for s in samples),
    )


def system_cpu() -> dict[str, float]:
    """CPU seconds of all CPUs since boot from /proc/stat: in tasks (user, nice, system), in
    interrupts (irq, softirq: loopback TCP is processed there), and stolen by the hypervisor."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks
    return {
        "tasks": (user + nice + system) / CLOCK_TICKS,
        "interrupts": (irq + softirq) / CLOCK_TICKS,
        "steal": steal / CLOCK_TICKS,
    }


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (`echo 5 > clear_refs`) of `pid` and its descendants;
    False when not permitted."""
    try:
        for member in tree_pids(pid):
            Path(f"/proc/{member}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def raise_fd_limit(needed: int) -> int:
    """Raise this process's open-file limit (inherited by the servers it starts) to the hard
    limit; raises `SetupError` when even that is below `needed`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, needed)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < needed:
        raise SetupError(
            f"The open-file limit is {target} (hard limit); this run needs about {needed} "
            "(raise it with `ulimit -n`, or open fewer streams)."
        )
    return target


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _child_setup() -> None:
    """In the child: own session (a terminal's Ctrl-C reaches only the bench, which stops us
    in order), and SIGTERM if the bench dies without cleaning up."""
    os.setsid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _spawn(
    args: list[str], env: dict[str, str], log_path: Path, root: Path = REPO_ROOT
) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, *args],
            cwd=root,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_child_setup,
        )


@contextlib.contextmanager
def upstream(workdir: Path, chunk_delay: float = 0.0) -> Iterator[Server]:
    """`python -m tests.fake_upstream --port 0`; the port comes from its `READY <port>` line."""
    log_path = workdir / "fake_upstream.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    args = ["-m", "tests.fake_upstream", "--host", "127.0.0.1", "--port", "0"]
    server = Server(
        "fake-upstream",
        _spawn([*args, "--chunk-delay", str(chunk_delay)], env, log_path),
        0,
        log_path,
    )
    try:
        server.port = _wait_for_ready_line(server)
        yield server
    finally:
        stop(server)


class Floor(NamedTuple):
    short: str  # its name beside a figure
    options: tuple[str, ...]
    kind: str  # the `load.Target` kind of its replies


# The floor proxies (`bench.floor`, whose docstring says what each is), by process name.
FLOORS = {
    "floor": Floor("floor", (), "direct"),
    "push-floor": Floor("push", ("--push",), "direct"),
    "push-translator": Floor("push tr", ("--push", "--translate"), "translator"),
}


@contextlib.contextmanager
def floor(workdir: Path, upstream_origin: str, name: str = "floor") -> Iterator[Server]:
    """`python -m bench.floor` as the floor proxy `name` (one of `FLOORS`) in front of the
    upstream at `upstream_origin`; the port comes from its `READY <port>` line."""
    log_path = workdir / f"{name}.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    args = ["-m", "bench.floor", "--upstream", f"{upstream_origin}/v1", "--port", "0"]
    server = Server(name, _spawn([*args, *FLOORS[name].options], env, log_path), 0, log_path)
    try:
        server.port = _wait_for_ready_line(server)
        yield server
    finally:
        stop(server)


def _wait_for_ready_line(server: Server) -> int:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and server.process.poll() is None:
        for line in server.log_path.read_text(errors="replace").splitlines():
            if line.startswith("READY "):
                return int(line.split()[1])
        time.sleep(0.05)
    raise RuntimeError(f"The {server.name} did not start:\n{server.log_tail()}")


def mamba_env(
    upstream: Server,
    workdir: Path,
    max_connections: int,
    auth_mode: str = "none",
    overrides: dict[str, str] | None = None,
) -> dict[str, str]:
    """The settings Mamba runs with (recorded in the results, except the secret key).

    `auth_mode` "none" measures the proxy path only; "api_key" puts authentication (a key sent
    with every request, see `create_api_key`) and its usage record on the measured path.
    `overrides` (`--set NAME=VALUE`) come last."""
    settings = {
        "DJANGO_SETTINGS_MODULE": "mamba_site.settings",
        # These settings and no others: a .env in the checkout is not read.
        "MAMBA_DOTENV": "",
        "MAMBA_DEBUG": "false",
        "MAMBA_DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",
        "MAMBA_LOGGING__LEVEL": "WARNING",
        "MAMBA_OPENAI__BASE_URL": f"{upstream.origin}/v1",
        "MAMBA_OPENAI__API_KEY": "sk-bench",
        "MAMBA_OPENAI__MAX_CONNECTIONS": str(max_connections),
        # A failure must show up as an error, not as a slower success.
        "MAMBA_OPENAI__MAX_RETRIES": "0",
        "MAMBA_MOCK_MODEL__ENABLED": "false",
        "MAMBA_AUTH__MODE": auth_mode,
        "MAMBA_AUTH__ALLOW_NONE_IN_PRODUCTION": "true",
        "PYTHONUNBUFFERED": "1",
    }
    return settings | (overrides or {})


def _manage(
    args: list[str], env: dict[str, str], log_path: Path, root: Path = REPO_ROOT
) -> subprocess.Popen[bytes]:
    """`manage.py ARGS` with the bench's settings, in the checkout at `root`; output to
    `log_path`."""
    return _spawn(["manage.py", *args], env, log_path, root)


def migrate(settings: dict[str, str], workdir: Path, root: Path = REPO_ROOT) -> None:
    """`manage.py migrate` on the throwaway database."""
    env = {**os.environ, **settings, "MAMBA_SECRET_KEY": secrets.token_urlsafe(40)}
    log_path = workdir / "migrate.log"
    migrating = _manage(["migrate", "--noinput"], env, log_path, root)
    command = Server("migrate", migrating, 0, log_path)
    try:
        if command.process.wait(timeout=120) != 0:
            raise RuntimeError(f"manage.py migrate failed:\n{command.log_tail(60)}")
    finally:
        stop(command)


def create_api_key(settings: dict[str, str], workdir: Path, root: Path = REPO_ROOT) -> str:
    """`manage.py createapikey bench` (no limits, every agent and model) in the throwaway
    database; the secret, which the command prints alone on its last line."""
    env = {**os.environ, **settings, "MAMBA_SECRET_KEY": secrets.token_urlsafe(40)}
    completed = subprocess.run(
        [sys.executable, "manage.py", "createapikey", API_KEY_NAME],
        cwd=root,
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    lines = completed.stdout.decode(errors="replace").strip().splitlines()
    if completed.returncode != 0 or not lines:
        detail = completed.stderr.decode(errors="replace")[-2000:]
        raise RuntimeError(f"manage.py createapikey failed:\n{detail}")
    return lines[-1].strip()


def check_server_options(server_kind: str, workers: int) -> None:
    """Raise `SetupError` unless the chosen server takes `--workers` when it is asked for."""
    if workers == 1:
        return
    if server_kind != "serve":
        raise SetupError("--workers needs --server serve (plain daphne runs one process).")
    completed = subprocess.run(
        [sys.executable, "-m", "mamba_site.serve", "--help"],
        cwd=REPO_ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "mamba_site.settings"},
        capture_output=True,
        timeout=60,
        check=False,
    )
    if "--workers" not in completed.stdout.decode(errors="replace"):
        raise SetupError(
            "`python -m mamba_site.serve` in this checkout does not accept --workers "
            f"(its --help does not list it; exit status {completed.returncode}): run with "
            "--workers 1, or on a checkout whose serve pre-forks workers."
        )


def server_argv(server_kind: str, port: int, workers: int = 1) -> list[str]:
    args = SERVERS[server_kind].format(port=port).split()
    return [*args, "--workers", str(workers)] if workers != 1 else args


@contextlib.contextmanager
def mamba(
    settings: dict[str, str],
    workdir: Path,
    server_kind: str = "daphne",
    *,
    workers: int = 1,
    migrated: bool = False,
    log_name: str = "mamba.log",
    root: Path = REPO_ROOT,
) -> Iterator[Server]:
    """Migrate the throwaway SQLite database (unless `migrated`), then serve
    (`SERVERS[server_kind]`, with `workers` processes) the code of the checkout at `root`
    until it answers HTTP; its output goes to `workdir / log_name`."""
    if not migrated:
        migrate(settings, workdir, root)
    env = {**os.environ, **settings, "MAMBA_SECRET_KEY": secrets.token_urlsafe(40)}
    log_path = workdir / log_name
    port = _free_port()
    args = server_argv(server_kind, port, workers)
    server = Server("mamba", _spawn(args, env, log_path, root), port, log_path)
    try:
        _wait_for_http(server)
        yield server
    finally:
        stop(server)


def _wait_for_http(server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and server.process.poll() is None:
        if _answers(server.port):
            return
        time.sleep(0.1)
    command = " ".join(describe(server)["argv"][1:3])
    raise RuntimeError(f"Mamba ({command} ...) did not start:\n{server.log_tail()}")


def _answers(port: int) -> bool:
    """Whether an HTTP server answers on `port`, whatever the status (no redirect followed)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", "/health/live")
        connection.getresponse().read()
    except OSError:
        return False
    finally:
        connection.close()
    return True


def stop(server: Server) -> int | None:
    """SIGTERM, wait, SIGKILL as a last resort; the exit code."""
    process = server.process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)
    return process.returncode


def describe(server: Server) -> dict[str, Any]:
    # The interpreter by name only: a report should not carry this machine's paths.
    args = server.process.args
    argv = ["python", *(str(arg) for arg in args[1:])] if isinstance(args, list) else ["python"]
    return {"pid": server.pid, "port": server.port, "argv": argv}

"""The two servers as subprocesses (fake upstream, Mamba on daphne) and their /proc figures."""

import contextlib
import ctypes
import http.client
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PR_SET_PDEATHSIG = 1
# How Mamba is served: plain daphne (the default), or the image's `mamba_site.serve`
# (daphne with a graceful drain on SIGTERM).
SERVERS = {
    "daphne": "-m daphne --access-log /dev/null -b 127.0.0.1 -p {port} mamba_site.asgi:application",
    "serve": "-m mamba_site.serve --bind 127.0.0.1 --port {port}",
}


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
    """Reset VmHWM to the current RSS (`echo 5 > clear_refs`); False when not permitted."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


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


def _spawn(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, *args],
            cwd=REPO_ROOT,
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


def _wait_for_ready_line(server: Server) -> int:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and server.process.poll() is None:
        for line in server.log_path.read_text(errors="replace").splitlines():
            if line.startswith("READY "):
                return int(line.split()[1])
        time.sleep(0.05)
    raise RuntimeError(f"The fake upstream did not start:\n{server.log_tail()}")


def mamba_env(upstream: Server, workdir: Path, max_connections: int) -> dict[str, str]:
    """The settings Mamba runs with (recorded in the results, except the secret key)."""
    return {
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
        # The proxy path only: no client authentication, so no API key to provision.
        "MAMBA_AUTH__MODE": "none",
        "MAMBA_AUTH__ALLOW_NONE_IN_PRODUCTION": "true",
        "PYTHONUNBUFFERED": "1",
    }


@contextlib.contextmanager
def mamba(settings: dict[str, str], workdir: Path, server_kind: str = "daphne") -> Iterator[Server]:
    """Migrate the throwaway SQLite database, then serve (`SERVERS[server_kind]`) until it
    answers HTTP."""
    env = {**os.environ, **settings, "MAMBA_SECRET_KEY": secrets.token_urlsafe(40)}
    log_path = workdir / "mamba.log"
    migrate = Server(
        "migrate", _spawn(["manage.py", "migrate", "--noinput"], env, log_path), 0, log_path
    )
    try:
        if migrate.process.wait(timeout=120) != 0:
            raise RuntimeError(f"manage.py migrate failed:\n{migrate.log_tail(60)}")
    finally:
        stop(migrate)
    port = _free_port()
    args = SERVERS[server_kind].format(port=port).split()
    server = Server("mamba", _spawn(args, env, log_path), port, log_path)
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
    raise RuntimeError(f"Mamba (daphne) did not start:\n{server.log_tail()}")


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

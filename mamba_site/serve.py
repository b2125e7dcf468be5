"""Production entry point: `python -m mamba_site.serve [--workers N] [--loop uvloop|asyncio]`.

One process serves on one core. With `--workers N` this process only supervises: it binds the
listening socket once and starts N server processes that share it (each `mamba_site.server`,
draining on SIGTERM as one process does); it forwards SIGTERM/SIGINT to them, restarts one that
dies unexpectedly, and exits once all have stopped. Workers are fresh interpreters (not forks):
daphne makes its event loop at import, and a loop must not be shared across a fork.
"""

import argparse
import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

logger = logging.getLogger("mamba.serve")

# A worker that dies this soon after its start is not restarted (a broken configuration).
RESTART_MIN_UPTIME_SECONDS = 5.0


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m mamba_site.serve",
        description="Serve Mamba with daphne; on SIGTERM, drain before exiting.",
    )
    parser.add_argument("--bind", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="0: any free port")
    parser.add_argument(
        "--proxy-headers",
        action="store_true",
        help="take the client address and scheme from X-Forwarded-For/-Port/-Proto",
    )
    parser.add_argument(
        "--workers",
        type=int,
        help="server processes sharing the socket, one core each (default MAMBA_SERVER__WORKERS)",
    )
    parser.add_argument(
        "--loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="the event loop under daphne's reactor (uvloop: less CPU per request and chunk)",
    )
    parser.add_argument("--fd", type=int, help=argparse.SUPPRESS)  # a worker's inherited socket
    args = parser.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        parser.error("--workers must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    if args.workers is None:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mamba_site.settings")
        from django.conf import settings

        args.workers = settings.SERVER_WORKERS
    if args.workers > 1 and args.fd is None:
        return Supervisor(args).run()
    load_server(args.loop)
    from mamba_site.server import run

    return run(bind=args.bind, port=args.port, fd=args.fd, proxy_headers=args.proxy_headers)


def load_server(loop: str) -> None:
    """`mamba_site.server`, imported as a server process needs it: after the event loop
    policy is chosen (daphne makes its loop at import), and without pyOpenSSL. TLS ends before
    this server (at the ingress), so Twisted's TLS is never used; without pyOpenSSL Twisted
    loads neither it nor service_identity: 5 MiB less per process."""
    if loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    sys.modules.setdefault("OpenSSL", None)  # type: ignore[arg-type]
    import mamba_site.server  # noqa: F401


class Supervisor:
    """Binds the socket and keeps `--workers` server processes on it."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.stopping = False
        self.workers: dict[int, tuple[subprocess.Popen[bytes], float]] = {}

    def run(self) -> int:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        family = socket.AF_INET6 if ":" in self.args.bind else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.args.bind, self.args.port))
        listener.listen(1024)
        listener.set_inheritable(True)
        host, port = listener.getsockname()[:2]
        logger.info("Supervising %s workers on %s:%s", self.args.workers, host, port)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop)
        for index in range(self.args.workers):
            self._start(index, listener.fileno())
        status = 0
        while self.workers:
            for index, (process, started) in list(self.workers.items()):
                code = process.poll()
                if code is None:
                    continue
                del self.workers[index]
                if self.stopping:
                    status = status or code
                elif time.monotonic() - started < RESTART_MIN_UPTIME_SECONDS:
                    logger.error("Worker %s exited with %s at start; stopping", index, code)
                    self._stop(signal.SIGTERM, None)
                    status = code or 1
                else:
                    logger.warning("Worker %s exited with %s; starting another", index, code)
                    self._start(index, listener.fileno())
            time.sleep(0.2)
        listener.close()
        return status

    def _start(self, index: int, fd: int) -> None:
        command = [sys.executable, "-m", "mamba_site.serve", "--fd", str(fd), "--workers", "1"]
        command += ["--loop", self.args.loop]
        if self.args.proxy_headers:
            command.append("--proxy-headers")
        process = subprocess.Popen(command, pass_fds=(fd,), env=os.environ.copy())
        self.workers[index] = (process, time.monotonic())

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        """Pass the signal on: each worker drains (a second signal stops them at once)."""
        self.stopping = True
        for process, _ in self.workers.values():
            if process.poll() is None:
                process.send_signal(signum)


if __name__ == "__main__":
    sys.exit(main())

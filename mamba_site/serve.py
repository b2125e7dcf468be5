"""Production server: daphne with a graceful drain on SIGTERM (`python -m mamba_site.serve`)."""

# Plain daphne stops its reactor on SIGTERM, and before the reactor stops it cancels every
# running application instance: streams in flight are cut at once. Here SIGTERM (or SIGINT)
# instead stops listening (new connections are refused), closes idle kept-alive connections,
# lets active requests finish for up to SERVER_SHUTDOWN_GRACE_SECONDS, then stops; a second
# signal stops at once. What is still running at the limit is cancelled, as daphne does.

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
import weakref
from collections.abc import Sequence
from typing import Any

# daphne.server installs the asyncio reactor: it comes before `twisted.internet.reactor`.
from daphne.endpoints import build_endpoint_description_strings
from daphne.server import Server
from daphne.utils import import_by_path
from django.conf import settings
from twisted.internet import defer, reactor

from mamba_site import lifecycle

logger = logging.getLogger("mamba.serve")

APPLICATION = "mamba_site.asgi:application"
DRAIN_POLL_SECONDS = 0.05
# The shutdown hooks get at least this long, also when the grace is already over.
HOOKS_MIN_SECONDS = 1.0


class DrainingServer(Server):  # type: ignore[misc]
    """daphne's `Server` with a graceful drain instead of daphne's immediate stop on SIGTERM."""

    def __init__(self, *args: Any, grace_seconds: float, **kwargs: Any) -> None:
        super().__init__(*args, signal_handlers=False, **kwargs)
        self.grace_seconds = grace_seconds
        self.ports: list[Any] = []
        self.channels: weakref.WeakSet[Any] = weakref.WeakSet()
        self.draining_since: float | None = None
        self.stopping = False

    def run(self) -> None:
        reactor.callWhenRunning(self._install_signal_handlers)
        super().run()

    def listen_success(self, port: Any) -> None:
        super().listen_success(port)
        self.ports.append(port)
        host = port.getHost()
        logger.info(
            "Listening on %s:%s (shutdown grace %g s)", host.host, host.port, self.grace_seconds
        )

    def protocol_connected(self, protocol: Any) -> None:
        super().protocol_connected(protocol)
        # Requests are tracked by daphne; their connections are kept here, to close idle ones.
        channel = getattr(protocol, "channel", None)
        if channel is not None:
            self.channels.add(channel)

    def stop(self) -> None:
        if not self.stopping:
            self.stopping = True
            super().stop()

    def _install_signal_handlers(self) -> None:
        # The reactor's loop (daphne made it current); it is not running yet at start-up. Its
        # callbacks run in the context they were scheduled from: here, no request's.
        loop = asyncio.get_event_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.drain, signum)

    def drain(self, signum: int = signal.SIGTERM) -> None:
        name = signal.Signals(signum).name
        if self.draining_since is not None:
            logger.warning("%s again: stopping now", name)
            self.stop()
            return
        self.draining_since = time.monotonic()
        lifecycle.drain_begin(self.grace_seconds)
        for port in self.ports:
            port.stopListening()
        for channel in list(self.channels):
            # Close each connection once its response is done; idle ones at once.
            channel.persistent = False
            if not getattr(channel, "requests", None) and channel.transport is not None:
                channel.loseConnection()
        logger.info(
            "%s: stopped accepting connections; waiting up to %g s for %d active request(s)",
            name,
            self.grace_seconds,
            self.active_requests(),
        )
        self._stop_when_drained()

    def active_requests(self) -> int:
        """Requests whose response is not finished, or whose application is still running."""
        return sum(1 for details in self.connections.values() if _busy(details))

    def _stop_when_drained(self) -> None:
        assert self.draining_since is not None
        active = self.active_requests()
        waited = time.monotonic() - self.draining_since
        if active == 0:
            logger.info("Drained in %.1f s; stopping", waited)
            self._stop_after_hooks()
        elif waited >= self.grace_seconds:
            logger.warning(
                "Grace of %g s is over; cancelling %d request(s)", self.grace_seconds, active
            )
            self._stop_after_hooks()
        else:
            asyncio.get_running_loop().call_later(DRAIN_POLL_SECONDS, self._stop_when_drained)

    def _stop_after_hooks(self) -> None:
        """Run the shutdown hooks (usage records still kept are written) within what is left
        of the grace, then stop."""
        assert self.draining_since is not None
        deadline = max(
            self.draining_since + self.grace_seconds, time.monotonic() + HOOKS_MIN_SECONDS
        )
        hooks = asyncio.get_running_loop().create_task(lifecycle.shutdown(deadline, final=False))
        hooks.add_done_callback(lambda _: self.stop())

    def kill_all_applications(self) -> defer.Deferred[Any]:
        """Before the reactor stops: cancel every task left on the loop and wait for them.

        daphne's own version cancels only application instances (and fails on a request
        whose application has not started); background tasks, such as the health monitor,
        would be destroyed while pending.
        """
        loop = asyncio.get_event_loop()
        tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            logger.info("Cancelled %d task(s) still running at shutdown", len(tasks))

        async def cancelled_then_hooks() -> None:
            await asyncio.gather(*tasks, return_exceptions=True)
            # Streams cancelled just now recorded their usage: one last, short chance.
            await lifecycle.shutdown(time.monotonic() + HOOKS_MIN_SECONDS, final=True)

        return defer.Deferred.fromFuture(asyncio.ensure_future(cancelled_then_hooks()))


def _busy(details: dict[str, Any]) -> bool:
    application = details.get("application_instance")
    running = application is not None and not application.done()
    return "disconnected" not in details or running


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
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mamba_site.settings")
    application = import_by_path(APPLICATION)  # sets Django up (and its logging)
    server = DrainingServer(
        application=application,
        endpoints=build_endpoint_description_strings(host=args.bind, port=args.port),
        grace_seconds=settings.SERVER_SHUTDOWN_GRACE_SECONDS,
        proxy_forwarded_address_header="X-Forwarded-For" if args.proxy_headers else None,
        proxy_forwarded_port_header="X-Forwarded-Port" if args.proxy_headers else None,
        proxy_forwarded_proto_header="X-Forwarded-Proto" if args.proxy_headers else None,
    )
    server.run()
    return 1 if server.abort_start else 0


if __name__ == "__main__":
    sys.exit(main())

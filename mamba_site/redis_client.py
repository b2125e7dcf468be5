"""The process's Redis connections (limits, stream leases): short timeouts, one retry on a fresh
connection when one broke, and pooled connections whose transport was lost reconnected before
they are written to.

Why the last: redis-py takes a pooled connection as connected while its stream reader and
writer exist. When the server or a proxy resets an idle connection, asyncio's transport is
closed under them (its loop and write callback set to None) but the reader has no EOF, so
the pool hands the connection out again, and `StreamWriter.writelines()` on it raises
`AttributeError: 'NoneType' object has no attribute '_add_writer'` (Python 3.12; a
`TypeError` on some versions): `_SelectorSocketTransport.writelines` lacks the lost-connection
guard that `write` has (CPython gh-136234, fixed in 3.13 and 3.14, not in 3.12). redis-py
neither maps that error to `ConnectionError` nor retries it, so each such pooled connection
failed one request. Here a connection whose transport is closing counts as disconnected: it
is reconnected before the command is written, so no request sees it.
"""

from typing import Any

import redis.asyncio as aioredis
from django.conf import settings
from redis.asyncio.connection import Connection, SSLConnection, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

# One retry, on a fresh connection, when a connection broke (not after a timeout: a server
# that does not answer would only make the caller wait twice).
RETRIES = 1
BACKOFF_BASE_SECONDS = 0.01
BACKOFF_CAP_SECONDS = 0.05


class _Reconnecting:
    """Mixed into redis-py's connection classes (see the module docstring)."""

    _reader: Any
    _writer: Any

    @property
    def is_connected(self) -> bool:
        writer = self._writer
        return self._reader is not None and writer is not None and not writer.transport.is_closing()

    async def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        if self._writer is not None and not self.is_connected:
            # Drop the lost transport and the parser's state before connecting again.
            await self.disconnect(nowait=True)  # type: ignore[attr-defined]
        await super().connect_check_health(  # type: ignore[misc]
            check_health=check_health, retry_socket_connect=retry_socket_connect
        )


class ReconnectingConnection(_Reconnecting, Connection):
    pass


class ReconnectingSSLConnection(_Reconnecting, SSLConnection):
    pass


def redis_pool(url: str, *, timeout: float | None = None) -> aioredis.ConnectionPool:
    """A connection pool for `url` (redis:// or rediss://; unix sockets keep redis-py's);
    `timeout` bounds each call (default `REDIS_TIMEOUT_SECONDS`)."""
    timeout = settings.REDIS_TIMEOUT_SECONDS if timeout is None else timeout
    options: dict[str, Any] = dict(parse_url(url))
    kind = options.get("connection_class", Connection)
    if kind is SSLConnection:
        options["connection_class"] = ReconnectingSSLConnection
    elif kind is Connection:
        options["connection_class"] = ReconnectingConnection
    return aioredis.ConnectionPool(
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        socket_keepalive=True,
        retry=Retry(
            ExponentialBackoff(cap=BACKOFF_CAP_SECONDS, base=BACKOFF_BASE_SECONDS),
            RETRIES,
            supported_errors=(RedisConnectionError,),
        ),
        **options,
    )

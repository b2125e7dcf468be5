"""The signing keys of JWTs, from a JWKS URL: one fetch at a time, never more often than a
minimum interval, and backing off after failures, so no traffic can hammer the issuer."""

import asyncio
import logging
import math
import time

import httpx
import jwt
from django.conf import settings

logger = logging.getLogger(__name__)

FETCH_TIMEOUT_SECONDS = 5.0
MAX_BACKOFF_SECONDS = 300.0


class JwksCache:
    """The key set at one URL. Fetches happen when there are no keys yet, when a token names
    a key the set does not have (a rotation), and in the background when the set is older
    than `AUTH_JWT_JWKS_REFRESH_SECONDS`; whatever asks, a new fetch starts only
    `AUTH_JWT_JWKS_MIN_INTERVAL_SECONDS` after the last one began (doubled after each failure
    in a row, up to `MAX_BACKOFF_SECONDS`), and callers share the one in flight."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = -math.inf
        self._started_at = -math.inf
        self._failures = 0
        self._task: asyncio.Task[None] | None = None

    async def key(self, kid: str) -> jwt.PyJWK | None:
        """The key `kid` names (a set of one key without an id serves any), or None."""
        key = self._lookup(kid)
        if key is not None:
            if time.monotonic() - self._fetched_at > settings.AUTH_JWT_JWKS_REFRESH_SECONDS:
                self._fetch_if_due()  # in the background: the current keys still verify
            return key
        fetch = self._fetch_if_due()
        if fetch is None:
            return None
        # Shielded: a caller that goes away must not cancel the fetch the others wait for.
        await asyncio.shield(fetch)
        return self._lookup(kid)

    @property
    def failing(self) -> bool:
        """The last fetch failed: a key the set lacks may be one the issuer has."""
        return self._failures > 0

    def retry_after(self) -> float:
        """Seconds until a new fetch may start."""
        return max(0.0, self._started_at + self._interval() - time.monotonic())

    def _lookup(self, kid: str) -> jwt.PyJWK | None:
        key = self._keys.get(kid)
        if key is None and len(self._keys) == 1:
            key = self._keys.get("")
        return key

    def _fetch_if_due(self) -> asyncio.Task[None] | None:
        """The fetch in flight on this loop, else a new one if the interval has passed."""
        loop = asyncio.get_running_loop()
        task = self._task
        if task is not None and not task.done() and task.get_loop() is loop:
            return task
        now = time.monotonic()
        if now - self._started_at < self._interval():
            return None
        self._started_at = now
        self._task = loop.create_task(self._fetch(), name="mamba-jwks-fetch")
        return self._task

    def _interval(self) -> float:
        interval = float(settings.AUTH_JWT_JWKS_MIN_INTERVAL_SECONDS)
        return min(math.ldexp(interval, min(self._failures, 16)), MAX_BACKOFF_SECONDS)

    async def _fetch(self) -> None:
        try:
            async with httpx.AsyncClient(timeout=FETCH_TIMEOUT_SECONDS) as client:
                response = await client.get(self.url)
                response.raise_for_status()
            key_set = jwt.PyJWKSet.from_dict(response.json())
        except Exception as error:  # the class name is safe to log; the message may hold a URL
            self._failures += 1
            logger.warning(
                "Fetching the JWKS failed (%s); next try in %g s at the earliest",
                type(error).__name__,
                self._interval(),
            )
            return
        self._keys = {key.key_id or "": key for key in key_set.keys}
        self._fetched_at = time.monotonic()
        self._failures = 0


# One cache per URL: settings name one; each test's JWKS server has its own.
_caches: dict[str, JwksCache] = {}


def jwks_cache(url: str) -> JwksCache:
    cache = _caches.get(url)
    if cache is None:
        cache = _caches[url] = JwksCache(url)
    return cache

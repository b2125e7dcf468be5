"""The frontend registry as requests see it: every enabled frontend by origin, from an
in-process snapshot no older than AUTH_KEY_CACHE_SECONDS (as the key table), so no request
queries the database; CORS and the `origin` auth mode both read it. And who a frontend's
request acts as: one client (by IP address) of that frontend."""

import asyncio
import logging
import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.http import HttpRequest

from mamba_site.background import run_in_background
from mamba_site.clients import client_address, client_group, trusted_proxies_parse
from mamba_site.models import Frontend
from mamba_site.principals import FRONTEND_PREFIX, Principal

logger = logging.getLogger(__name__)

# Past this share of its period the snapshot is read again in the background, so under steady
# traffic no request waits for the database; past the whole period a request waits.
REFRESH_AHEAD = 0.75
# After a failed read the last snapshot stays in use, and the next try comes this much later.
RETRY_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class FrontendRecord:
    id: int
    name: str
    allowed_agents: frozenset[str]
    allowed_models: frozenset[str]
    requests_per_minute: int | None
    concurrent_streams: int | None
    tokens_per_day: int | None
    total_tokens_per_day: int | None


def _record(frontend: Frontend) -> FrontendRecord:
    return FrontendRecord(
        id=frontend.pk,
        name=frontend.name,
        allowed_agents=frozenset(frontend.allowed_agents or ()),
        allowed_models=frozenset(frontend.allowed_models or ()),
        requests_per_minute=frontend.requests_per_minute,
        concurrent_streams=frontend.concurrent_streams,
        tokens_per_day=frontend.tokens_per_day,
        total_tokens_per_day=frontend.total_tokens_per_day,
    )


class FrontendRegistry:
    """The snapshot, read again when older than the period or when a save on this replica
    invalidates it (other replicas see changes within the period)."""

    def __init__(self) -> None:
        self._by_origin: dict[str, FrontendRecord] = {}
        self._loaded_at = -math.inf
        self._retry_at = -math.inf
        self._generation = 0
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    def invalidate(self, **kwargs: object) -> None:
        """Forget the snapshot (connected to Frontend's save and delete signals)."""
        self._generation += 1
        self._loaded_at = self._retry_at = -math.inf

    async def match(self, origin: str) -> FrontendRecord | None:
        """The enabled frontend registered for exactly this origin (no normalizing: browsers
        send the form the registry stores)."""
        period = settings.AUTH_KEY_CACHE_SECONDS
        now = time.monotonic()
        age = now - self._loaded_at
        if now >= self._retry_at:
            if age >= period:
                await self._reload()
            elif age >= period * REFRESH_AHEAD and not self._loop_lock().locked():
                run_in_background(self._reload())
        return self._by_origin.get(origin)

    def _loop_lock(self) -> asyncio.Lock:
        # A lock waits on the loop it first waited on; each loop (a test's) gets its own.
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    async def _reload(self) -> None:
        started = time.monotonic()
        async with self._loop_lock():  # one read at a time; the others wait for it
            if self._loaded_at >= started or self._retry_at > time.monotonic():
                return  # read meanwhile, or failed a moment ago
            generation = self._generation
            try:
                by_origin = await self._read()
            except Exception:
                logger.exception("Reading the frontend registry failed; the last one stays")
                self._retry_at = time.monotonic() + RETRY_SECONDS
                return
            self._by_origin = by_origin
            if generation == self._generation:
                self._loaded_at = time.monotonic()

    async def _read(self) -> dict[str, FrontendRecord]:
        by_origin: dict[str, FrontendRecord] = {}
        async for frontend in Frontend.objects.filter(enabled=True).order_by("pk"):
            record = _record(frontend)
            for origin in frontend.origins or ():
                if by_origin.setdefault(origin, record) is not record:
                    logger.warning(
                        "Origin %s is registered by frontends %s and %s; %s is used",
                        origin,
                        by_origin[origin].name,
                        record.name,
                        by_origin[origin].name,
                    )
        return by_origin


frontends = FrontendRegistry()


async def request_frontend(request: HttpRequest) -> FrontendRecord | None:
    """The enabled frontend the request's `Origin` names, looked up once per request."""
    try:
        return request.frontend  # type: ignore[attr-defined, no-any-return]
    except AttributeError:
        pass
    origin = request.headers.get("Origin")
    frontend = await frontends.match(origin) if origin else None
    request.frontend = frontend  # type: ignore[attr-defined]
    return frontend


def cors_allows_frontend(sender: object, request: HttpRequest, **kwargs: object) -> bool:
    """django-cors-headers' `check_request_enabled`: an enabled frontend's origin is allowed,
    as found by `FrontendOriginMiddleware` before CORS runs (this signal is synchronous)."""
    return getattr(request, "frontend", None) is not None


def client_of(request: HttpRequest) -> str:
    """The client's identity for per-client limits (MAMBA_TRUSTED_PROXIES)."""
    address = client_address(
        request.META.get("REMOTE_ADDR", ""),
        request.META.get("HTTP_X_FORWARDED_FOR"),
        trusted_proxies_parse(settings.TRUSTED_PROXIES),
    )
    return client_group(address)


def frontend_principal(frontend: FrontendRecord, *, client: str) -> Principal:
    """One client of a frontend: the frontend's scopes, its per-client limits under an id of
    the client's own, and the frontend's daily budget shared by all of its clients."""
    name = FRONTEND_PREFIX + frontend.name
    budget = None
    if frontend.total_tokens_per_day:
        budget = Principal(
            kind="frontend",
            id=f"frontend:{frontend.id}",
            name=name,
            tokens_per_day=frontend.total_tokens_per_day,
            frontend_id=frontend.id,
        )
    return Principal(
        kind="frontend",
        id=f"frontend:{frontend.id}:{client}",
        name=name,
        allowed_agents=frontend.allowed_agents,
        allowed_models=frontend.allowed_models,
        requests_per_minute=frontend.requests_per_minute,
        concurrent_streams=frontend.concurrent_streams,
        tokens_per_day=frontend.tokens_per_day,
        frontend_id=frontend.id,
        client=client,
        budget=budget,
    )

"""Routing: from a model name to the provider targets that serve it, tried in order within one
deadline (retries with backoff and jitter, failover, fallbacks), with per-target cooldowns."""

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from chat import mock
from chat.cooldowns import SharedCooldowns, shared_cooldowns
from chat.upstream import (
    Clients,
    Completion,
    Next,
    UpstreamFailure,
    UpstreamStream,
    complete,
    open_stream,
)
from mamba_site import metrics
from mamba_site.errors import ApiError, ModelNotFound, ProviderNotConfigured, UpstreamTimeout
from mamba_site.providers import (
    MOCK_MODEL,
    MOCK_PROVIDER,
    ModelRoute,
    Provider,
    ProvidersConfig,
    Target,
    providers_config,
)

logger = logging.getLogger(__name__)

OPENAI_PREFIX = "openai/"
BACKOFF_BASE_SECONDS = 0.2
BACKOFF_MAX_SECONDS = 2.0
MOCK = Provider(name=MOCK_PROVIDER, base_url=mock.BASE_URL, api_key="mock", max_retries=0)
# The abstract output limit of a plan; each provider names it its own way.
MAX_OUTPUT_TOKENS = "max_output_tokens"


@dataclass(slots=True)
class TargetHealth:
    """What this process has seen of one target: failures in a row, cooldown, recent errors."""

    target: Target
    failures_in_row: int = 0
    cooled_until: float = 0.0
    probe_until: float = 0.0
    requests: int = 0
    failures: int = 0
    cooldowns: int = 0
    last_errors: deque[tuple[float, str]] = field(default_factory=lambda: deque(maxlen=5))
    first_token_ms: deque[float] = field(default_factory=lambda: deque(maxlen=50))

    def state(self, now: float) -> str:
        if self.cooled_until > now:
            return "cooling down"
        if self.probe_until > now:
            return "probing"
        return "healthy" if self.failures_in_row == 0 else "failing"


# Client-chosen (passthrough) targets whose health this process keeps, at most.
PASSTHROUGH_HEALTH_ENTRIES = 256


@dataclass(frozen=True, slots=True)
class Opened:
    """A stream a target accepted."""

    target: Target
    model: str
    stream: UpstreamStream


@dataclass(slots=True)
class Attempts:
    """The candidates of one request and what it learnt on the way: tried targets, providers
    whose credentials failed, and the last failure (what the client sees if all fail)."""

    candidates: list[tuple[str, Target]]
    tries: dict[Target, int] = field(default_factory=dict)
    skipped_providers: set[str] = field(default_factory=set)
    last: UpstreamFailure | None = None
    rounds: int = 0

    def exclude(self, target: Target) -> None:
        self.tries[target] = 1_000_000


class Router:
    """Long-lived: one per process (per configuration), shared by every request."""

    def __init__(
        self,
        config: ProvidersConfig,
        *,
        clients: Clients | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        cooldowns: SharedCooldowns | None = None,
    ) -> None:
        self.config = config
        self.clients = clients or Clients()
        self.clock = clock
        self.rng = rng or random.Random()
        self.health: dict[Target, TargetHealth] = {}
        # Other replicas' rests (Redis); this process's own failures stay in `health`.
        self.cooldowns = cooldowns or SharedCooldowns(clock=clock)
        self._declared = tuple(
            dict.fromkeys(t for route in config.models.values() for t in route.targets)
        )
        self._declared_set = frozenset(self._declared)
        # Metric labels: declared names as they are; client-chosen (passthrough) ones as "other".
        self._labelled = {t.model for t in self._declared}
        self._labelled |= {str(entry["id"]) for entry in config.catalog}

    # -- resolving ---------------------------------------------------------------------------

    def resolve(self, name: str) -> ModelRoute:
        """The route of a client's model name; raises `ApiError` when nothing can serve it."""
        name = name.removeprefix(OPENAI_PREFIX)
        config = self.config
        if name == MOCK_MODEL:
            if not config.mock_enabled:
                raise ModelNotFound(
                    f"Model {name!r} is not available: the offline model is disabled."
                )
            return ModelRoute(name=name, targets=(Target(MOCK_PROVIDER, name),))
        if not config.providers:
            if config.mock_enabled:
                # Development without a key: every model answers offline, and says so.
                return ModelRoute(name=MOCK_MODEL, targets=(Target(MOCK_PROVIDER, name),))
            raise ProviderNotConfigured()
        route = config.route(name)
        if route is None:
            raise ModelNotFound(f"Model {name!r} is not available. GET /models lists the models.")
        return route

    def provider(self, target: Target) -> Provider:
        return MOCK if target.provider == MOCK_PROVIDER else self.config.providers[target.provider]

    def attempts(self, route: ModelRoute) -> Attempts:
        """This request's candidates, as (model name, target): the route's targets in its
        strategy's order, then its fallbacks'; targets cooling down go last, so a request is
        still tried somewhere when every target rests."""
        self.cooldowns.refresh_soon(self._shared_targets, self._recovered_elsewhere)
        now = self.clock()
        ready: list[tuple[str, Target]] = []
        resting: list[tuple[str, Target]] = []
        seen: set[Target] = set()
        for name, target in self._walk(route, set()):
            if target in seen:
                continue
            seen.add(target)
            (ready if self._available(target, now) else resting).append((name, target))
        return Attempts(candidates=ready + resting)

    def _walk(self, route: ModelRoute, visited: set[str]) -> Iterator[tuple[str, Target]]:
        visited.add(route.name)
        for target in self._ordered(route):
            yield route.name, target
        for fallback in route.fallbacks:
            if fallback not in visited and fallback in self.config.models:
                yield from self._walk(self.config.models[fallback], visited)

    def _ordered(self, route: ModelRoute) -> list[Target]:
        if route.strategy != "weighted" or len(route.targets) < 2:
            return list(route.targets)
        # Weighted: draw without replacement, so the weights spread load and every target
        # stays a failover candidate.
        pool = [(t, w) for t, w in zip(route.targets, route.weights, strict=True)]
        order = []
        while pool:
            total = sum(w for _, w in pool)
            if total <= 0:
                order += [t for t, _ in pool]
                break
            pick = self.rng.uniform(0, total)
            for index, (target, weight) in enumerate(pool):
                pick -= weight
                if pick <= 0 or index == len(pool) - 1:
                    order.append(target)
                    pool.pop(index)
                    break
        return order

    def _available(self, target: Target, now: float) -> bool:
        elsewhere = self.cooldowns.elsewhere(target)
        if elsewhere is not None and elsewhere.until > now:
            return False
        health = self.health.get(target)
        return health is None or (health.cooled_until <= now and health.probe_until <= now)

    def _claim(self, target: Target, provider: Provider) -> bool:
        """Whether this request may try the target now: after a rest, one request probes it
        (the claim is taken when it is tried, and lapses if the request goes away) and the
        others keep away until the probe has answered."""
        health = self.health.get(target)
        if health is None or health.failures_in_row < provider.cooldown_failures:
            return True
        now = self.clock()
        if health.probe_until > now:
            return False
        health.probe_until = now + provider.first_byte_timeout_seconds + 1
        return True

    # -- opening -----------------------------------------------------------------------------

    async def open_stream(
        self, attempts: Attempts, params: dict[str, Any], *, deadline: float
    ) -> Opened:
        """Open a stream on the first candidate that accepts, within `deadline` (monotonic);
        raises the `ApiError` of the last failure when none does."""

        async def attempt(target: Target, provider: Provider) -> UpstreamStream:
            body = self._body(target, provider, params, stream=True)
            return await open_stream(self.clients.get(provider), body=body)

        name, target, stream = await self._first(attempts, attempt, deadline=deadline)
        return Opened(target=target, model=name, stream=stream)

    async def complete(
        self, route: ModelRoute, params: dict[str, Any], *, deadline: float
    ) -> Completion:
        """A plain completion, with the same failover as streams."""

        async def attempt(target: Target, provider: Provider) -> Completion:
            body = self._body(target, provider, params, stream=False)
            result = await complete(self.clients.get(provider), body=body)
            self.succeeded(target)
            return result

        _, _, result = await self._first(self.attempts(route), attempt, deadline=deadline)
        return result

    async def _first[T](
        self,
        attempts: Attempts,
        attempt: Callable[[Target, Provider], Awaitable[T]],
        *,
        deadline: float,
    ) -> tuple[str, Target, T]:
        while True:
            progressed = False
            for name, target in attempts.candidates:
                provider = self.provider(target)
                if target.provider in attempts.skipped_providers:
                    continue
                if attempts.tries.get(target, 0) > min(attempts.rounds, provider.max_retries):
                    continue
                if not self._claim(target, provider):
                    continue
                remaining = deadline - self.clock()
                if remaining <= 0:
                    raise self._give_up(attempts, timed_out=True)
                progressed = True
                attempts.tries[target] = attempts.tries.get(target, 0) + 1
                self._count_request(target)
                try:
                    async with asyncio.timeout(min(remaining, provider.first_byte_timeout_seconds)):
                        result = await attempt(target, provider)
                except TimeoutError:
                    failure = UpstreamFailure("timeout", UpstreamTimeout())
                    logger.warning("Upstream %s did not answer in time", target.label)
                except UpstreamFailure as caught:
                    failure = caught
                else:
                    return name, target, result
                self.failed(target, failure)
                attempts.last = failure
                if failure.next_step is Next.ANSWER:
                    raise failure.error
                if failure.next_step is Next.SKIP_PROVIDER:
                    attempts.skipped_providers.add(target.provider)
            if not progressed:
                raise self._give_up(attempts, timed_out=False)
            await self._back_off(attempts, deadline)

    async def _back_off(self, attempts: Attempts, deadline: float) -> None:
        """Wait before the next round: exponential with full jitter, or the provider's
        `Retry-After` when it fits within the deadline (else the round is the last)."""
        ceiling = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2**attempts.rounds)
        wait = self.rng.uniform(0, ceiling)
        last = attempts.last
        if last is not None and last.retry_after is not None:
            wait = max(wait, last.retry_after)
        attempts.rounds += 1
        if self.clock() + wait >= deadline:
            raise self._give_up(attempts, timed_out=False)
        await asyncio.sleep(wait)

    def _give_up(self, attempts: Attempts, *, timed_out: bool) -> ApiError:
        if attempts.last is None:
            return UpstreamTimeout() if timed_out else ProviderNotConfigured()
        error = attempts.last.error
        metrics.upstream_errors.labels(str(error.code)).inc()
        return error

    def _body(
        self, target: Target, provider: Provider, params: dict[str, Any], *, stream: bool
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": target.model, **params}
        limit = body.pop(MAX_OUTPUT_TOKENS, None)
        if limit is not None:
            body[provider.max_tokens_param] = limit
        if stream:
            body["stream"] = True
            if provider.stream_usage:
                body["stream_options"] = {"include_usage": True}
        return body

    # -- health ------------------------------------------------------------------------------

    def _health(self, target: Target) -> TargetHealth:
        health = self.health.get(target)
        if health is None:
            if target not in self._declared_set and target.provider != MOCK_PROVIDER:
                self._forget_passthrough()
            health = self.health[target] = TargetHealth(target)
        return health

    def _forget_passthrough(self) -> None:
        """Keep at most `PASSTHROUGH_HEALTH_ENTRIES` client-chosen (passthrough) targets: each
        new model name a client makes up would otherwise stay for the life of the process.
        The oldest one that is not resting goes first (the oldest of all when every one is)."""
        others = [
            t for t in self.health if t not in self._declared_set and t.provider != MOCK_PROVIDER
        ]
        if len(others) < PASSTHROUGH_HEALTH_ENTRIES:
            return
        now = self.clock()
        idle = (t for t in others if self.health[t].cooled_until <= now)
        del self.health[next(idle, others[0])]

    def _count_request(self, target: Target) -> None:
        self._health(target).requests += 1
        metrics.upstream_requests.labels(target.provider, self.label(target)).inc()

    def label(self, target: Target) -> str:
        """The target as a metric label: client-chosen (passthrough) names are "other"."""
        if target.provider == MOCK_PROVIDER or target.model in self._labelled:
            return target.label
        return f"{target.provider}/other"

    def succeeded(self, target: Target, *, first_token_seconds: float | None = None) -> None:
        health = self._health(target)
        if health.cooled_until or self.cooldowns.elsewhere(target) is not None:
            # A rest ends (here or elsewhere): every replica may use the target again.
            self.cooldowns.withdraw(target)
        health.failures_in_row = 0
        health.cooled_until = 0.0
        health.probe_until = 0.0
        if first_token_seconds is not None:
            health.first_token_ms.append(first_token_seconds * 1000)
            metrics.upstream_first_token.labels(target.provider, self.label(target)).observe(
                first_token_seconds
            )

    def failed(self, target: Target, failure: UpstreamFailure) -> None:
        """Count a failure of the target; client errors say nothing about its health."""
        label = self.label(target)
        metrics.upstream_failures.labels(target.provider, label, failure.kind).inc()
        if failure.next_step is Next.ANSWER:
            return
        health = self._health(target)
        now = self.clock()
        health.failures += 1
        health.failures_in_row += 1
        health.last_errors.append((time.time(), failure.kind))
        provider = self.provider(target)
        if health.failures_in_row >= provider.cooldown_failures:
            health.probe_until = 0.0
            health.cooled_until = now + provider.cooldown_seconds
            health.cooldowns += 1
            self.cooldowns.rest(target, provider.cooldown_seconds, failure.kind)
            metrics.upstream_cooldowns.labels(target.provider, label).inc()
            logger.warning(
                "Target %s rests for %gs after %s failures in a row (last: %s)",
                target.label,
                provider.cooldown_seconds,
                health.failures_in_row,
                failure.kind,
            )

    def report(self) -> list[dict[str, Any]]:
        """Every declared target, and every other one this process tried (passthrough names),
        with what this process knows of it and the rests last read from other replicas."""
        now = self.clock()
        rows = [
            self._row(route.name, target, now)
            for route in self.config.models.values()
            for target in route.targets
        ]
        declared = set(self._declared)
        rows += [
            self._row(target.model, target, now, passthrough=True)
            for target in list(self.health)
            if target not in declared and target.provider != MOCK_PROVIDER
        ]
        return rows

    async def current_report(self) -> list[dict[str, Any]]:
        """`report()` with the shared rests read now (a second old at most; Redis failing,
        the last view): the admin's Providers page and /health."""
        await self.cooldowns.refresh(self._shared_targets(), self._recovered_elsewhere)
        return self.report()

    def _row(
        self, model: str, target: Target, now: float, *, passthrough: bool = False
    ) -> dict[str, Any]:
        health = self.health.get(target) or TargetHealth(target)
        latencies = sorted(health.first_token_ms)
        rest = self.cooldowns.elsewhere(target)
        elsewhere = rest is not None and rest.until > now
        state = health.state(now)
        if elsewhere and state in ("healthy", "failing"):
            state = "resting elsewhere"
        return {
            "model": model,
            "target": target.label,
            "provider": target.provider,
            "passthrough": passthrough,
            "state": state,
            "resting": health.cooled_until > now or elsewhere,
            "cooling_seconds": max(0.0, round(health.cooled_until - now, 1)),
            "elsewhere_seconds": round(rest.until - now, 1) if rest and elsewhere else 0.0,
            "elsewhere_error": rest.kind if rest and elsewhere else "",
            "failures_in_row": health.failures_in_row,
            "requests": health.requests,
            "failures": health.failures,
            "cooldowns": health.cooldowns,
            "last_errors": list(health.last_errors),
            "first_token_p50_ms": round(latencies[len(latencies) // 2]) if latencies else None,
        }

    def _shared_targets(self) -> list[Target]:
        """The targets whose shared rests are read: the declared ones, then others tried here."""
        declared = set(self._declared)
        others = [t for t in self.health if t not in declared and t.provider != MOCK_PROVIDER]
        return [*self._declared, *others]

    def _recovered_elsewhere(self, target: Target) -> None:
        """Another replica deleted the rest this one published: the target answered there."""
        health = self.health.get(target)
        if health is not None:
            health.failures_in_row = 0
            health.cooled_until = 0.0
            health.probe_until = 0.0


class Routers:
    """The process's router for the current providers configuration: a new configuration
    (a changed setting) gets a new router, with new clients and fresh target health."""

    def __init__(self) -> None:
        self._router: Router | None = None

    def get(self) -> Router:
        config = providers_config()
        router = self._router
        url = settings.REDIS_URL
        if router is None or router.config is not config or router.cooldowns.url != url:
            router = self._router = Router(config, cooldowns=shared_cooldowns(url))
        return router

    def clear(self) -> None:
        """Forget the router (its health and clients): a reloaded configuration, or a test."""
        self._router = None

    async def aclose(self) -> None:
        """Close the router's connection pools made on this loop (shutdown, tests)."""
        if self._router is not None:
            await self._router.clients.aclose()


routers = Routers()


async def routers_close_at_shutdown(deadline: float, final: bool) -> None:
    """Close the router's connection pools once the last streams have ended."""
    if final:
        await routers.aclose()

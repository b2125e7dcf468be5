"""A stream's bill: the caller's stream slot and token budgets (its own, and a frontend's shared
one), and its usage record."""

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from django.http import HttpRequest

from chat.translate import Usage
from mamba_site import metrics, quotas
from mamba_site.auth import ANONYMOUS, Principal
from mamba_site.errors import RateLimited
from mamba_site.usage import frontend_usage_record, usage_record

logger = logging.getLogger(__name__)


def request_principal(request: HttpRequest) -> Principal:
    """Who the auth middleware admitted (anonymous when authentication is off)."""
    return getattr(request, "principal", ANONYMOUS)


@dataclass(slots=True)
class Admission:
    """What a stream took from its caller's limits; `settle()` gives it back and bills it."""

    principal: Principal
    release: Callable[[], Awaitable[None]]
    settled: bool = False

    async def settle(self, usage: Usage, *, completed: bool) -> None:
        """Give the slot back, count the tokens, record the usage: each step on its own, so
        that one failing (Redis, the database) never skips the others."""
        if self.settled:
            return
        self.settled = True
        principal = self.principal
        try:
            await self.release()
        except Exception:
            logger.exception("Releasing the stream slot of %s failed", principal.name)
        try:
            await tokens_add(principal, usage.input_tokens + usage.output_tokens)
        except Exception:
            logger.exception("Counting the tokens of %s failed", principal.name)
        bill(principal, usage, completed=completed)


async def admit(principal: Principal) -> Admission:
    """Check the day's tokens and take a stream slot; raises `RateLimited` (429)."""
    await tokens_check(principal)
    return Admission(principal, await quotas.stream_acquire(principal))


async def tokens_check(principal: Principal) -> None:
    """Raises `RateLimited` when the caller's tokens for the day, or its frontend's, are used."""
    await quotas.tokens_check(principal)
    if principal.budget is not None:
        try:
            await quotas.tokens_check(principal.budget)
        except RateLimited as error:
            raise RateLimited(
                "This site's tokens for the day are used up; try again tomorrow (UTC).",
                headers=error.headers,
            ) from None


async def tokens_add(principal: Principal, tokens: int) -> None:
    await quotas.tokens_add(principal, tokens)
    if principal.budget is not None:
        await quotas.tokens_add(principal.budget, tokens)


def bill(principal: Principal, usage: Usage, *, completed: bool) -> None:
    """Record a key's and a frontend's usage off the request's path (kept and retried
    while the database is down: mamba_site/usage.py)."""
    if principal.frontend_name is not None:
        metrics.frontend_tokens.labels(principal.frontend_name, "input").inc(usage.input_tokens)
        metrics.frontend_tokens.labels(principal.frontend_name, "output").inc(usage.output_tokens)
    if principal.frontend_id is not None:
        frontend_usage_record(
            frontend_id=principal.frontend_id,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            error=not completed,
        )
    if principal.api_key_id is not None:
        usage_record(
            api_key_id=principal.api_key_id,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            error=not completed,
        )

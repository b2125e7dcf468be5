"""A stream's bill: the caller's stream slot and token budget, and its usage record."""

from collections.abc import Awaitable, Callable

from django.http import HttpRequest

from chat.steps import ChatRun
from chat.translate import Usage
from mamba_site import quotas
from mamba_site.auth import ANONYMOUS, Principal
from mamba_site.background import run_in_background
from mamba_site.services import usage_record


def principal_of(request: HttpRequest) -> Principal:
    return getattr(request, "principal", ANONYMOUS)


async def stream_admit(principal: Principal) -> Callable[[ChatRun | None], Awaitable[None]]:
    """Check the day's tokens and take a stream slot (or raise 429); returns the closing,
    to call with the run once its stream ended, or with None if it never started."""
    await quotas.tokens_check(principal)
    release = await quotas.stream_acquire(principal)

    async def close(run: ChatRun | None) -> None:
        await release()
        usage = run.usage if run is not None else Usage()
        await quotas.tokens_add(principal, usage.input_tokens + usage.output_tokens)
        if principal.api_key_id is not None:
            run_in_background(
                usage_record(
                    api_key_id=principal.api_key_id,
                    input_tokens=usage.input_tokens,
                    output_tokens=usage.output_tokens,
                    error=run is None or run.outcome != "finished",
                )
            )

    return close

"""One chat stream, one owner: admission (slot, token budget), the route's first upstream, the
step loop and cleanup, released at whatever point the client leaves."""

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Self

from django.http import StreamingHttpResponse

from chat import protocol
from chat.accounting import Admission, admit
from chat.routing import Router
from chat.steps import ChatPlan, StepLoop, StepPolicy, error_text
from chat.translate import Usage
from mamba_site import metrics
from mamba_site.auth import Principal
from mamba_site.providers import known_model_ids

logger = logging.getLogger(__name__)


class ChatStream:
    """Start it (`start()`: errors are still HTTP errors), then hand out `response()`. Its
    resources are released once, by `aclose()`: when the body ends, when the response is
    closed without ever being read, or when `start()` fails."""

    def __init__(
        self,
        *,
        plan: ChatPlan,
        principal: Principal,
        router: Router,
        policy: StepPolicy,
        limits: protocol.StreamLimits,
        drain_deadline: Callable[[], float],
        received_at: float | None = None,
    ) -> None:
        self.plan = plan
        self.received_at = plan.started if received_at is None else received_at
        self.timing: dict[str, float] = {}
        self.principal = principal
        self.router = router
        self.policy = policy
        self.limits = limits
        self.drain_deadline = drain_deadline
        self.steps: StepLoop | None = None
        self._admission: Admission | None = None
        self._closed = False
        self._closing: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Take a slot and open the first model call; raises `ApiError` (and releases what it
        took) when the caller is over a limit or no provider answers."""
        try:
            self._admission = await admit(self.principal)
            router = self.router
            attempts = router.attempts(self.plan.route)
            deadline = time.monotonic() + self.policy.first_byte_seconds
            params = self.plan.request_params()
            calling = time.perf_counter()
            first = await router.open_stream(attempts, params, deadline=deadline)
            self.timing = {
                "gateway": calling - self.received_at,
                "upstream": time.perf_counter() - calling,
            }
        except BaseException:
            await self.aclose()
            raise
        self.steps = StepLoop(self.plan, router, self.policy, first, attempts)

    def response(self) -> StreamingHttpResponse:
        response = ChatResponse(self)
        # Mamba's own time before it called the provider, and the provider's until it answered.
        response["Server-Timing"] = ", ".join(
            f"{name};dur={seconds * 1000:.2f}" for name, seconds in self.timing.items()
        )
        return response

    async def send_body(self, write: protocol.Write) -> None:
        """Write the whole body through `write`, then release everything."""
        assert self.steps is not None, "start() first"
        try:
            await protocol.pump(
                self.steps.events(),
                write,
                limits=self.limits,
                message_id=self.plan.message_id,
                safe_error=error_text,
                drain_deadline=self.drain_deadline,
            )
        finally:
            await self.aclose()

    async def body(self) -> AsyncIterator[bytes]:
        """The body as an iterator, for Django's own handling of a streamed response (its test
        client): `send_body` in a task of its own, through a queue. Served by Mamba's ASGI
        handler, the body is written by `send_body` directly (`ChatResponse.stream_to`)."""
        parts: asyncio.Queue[bytes | None] = asyncio.Queue()

        async def write(data: bytes) -> None:
            parts.put_nowait(data)

        async def send() -> None:
            try:
                await self.send_body(write)
            finally:
                parts.put_nowait(None)

        sender = asyncio.create_task(send())
        try:
            while (part := await parts.get()) is not None:
                yield part
            await sender  # its exception, if any
        finally:
            if not sender.done():
                sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)

    async def aclose(self) -> None:
        """Release everything, once; each release on its own, whatever another one does."""
        if self._closed:
            return
        self._closed = True
        steps = self.steps
        if steps is not None:
            try:
                await steps.aclose()
            except Exception:
                logger.exception("Closing the upstream failed")
            if steps.outcome == "running":  # never read: the client left before the body
                steps.outcome = "disconnected"
                metrics.client_disconnects.inc()
            self._record(steps)
        if self._admission is not None:
            usage = steps.usage if steps is not None else Usage()
            completed = steps is not None and steps.outcome == "finished"
            await self._admission.settle(usage, completed=completed)

    def close_soon(self, loop: asyncio.AbstractEventLoop) -> None:
        """`aclose()` from the response's synchronous `close()`, on the stream's loop."""
        if self._closed:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._closing = loop.create_task(self.aclose())
        else:
            asyncio.run_coroutine_threadsafe(self.aclose(), loop).result(timeout=30)

    def _record(self, steps: StepLoop) -> None:
        """The stream's metrics and its log line."""
        plan, usage, outcome = self.plan, steps.usage, steps.outcome
        meta = steps.metadata()
        # Model names come from clients: only the catalog's become label values.
        model = meta["model"] if meta["model"] in known_model_ids() else "other"
        if steps.first_token_at is not None:
            ttft = steps.first_token_at - plan.started
            metrics.time_to_first_token.labels(model, plan.agent).observe(ttft)
        elapsed = time.perf_counter() - plan.started
        metrics.stream_duration.labels(model, plan.agent, outcome).observe(elapsed)
        metrics.tokens.labels(model, plan.agent, "input").inc(usage.input_tokens)
        metrics.tokens.labels(model, plan.agent, "output").inc(usage.output_tokens)
        timings = meta["timings"]
        logger.info(
            "chat %s: model=%s provider=%s agent=%s steps=%s replays=%s finish=%s "
            "input_tokens=%s output_tokens=%s ttft_ms=%s total_ms=%s",
            outcome,
            meta["model"],
            meta["provider"],
            meta["agent"],
            steps.steps,
            steps.replays,
            steps.finish_reason or "-",
            usage.input_tokens,
            usage.output_tokens,
            timings.get("timeToFirstTokenMs", "-"),
            timings["totalMs"],
            extra={
                "model": meta["model"],
                "provider": meta["provider"],
                "target": steps.served.target.label,
                "agent": meta["agent"],
                "outcome": outcome,
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "ttft_ms": timings.get("timeToFirstTokenMs"),
                "total_ms": timings["totalMs"],
            },
        )


class _Parts:
    """`ChatStream.body()`, begun on the first read: served by Mamba's handler the body is
    written by `stream_to` and this is never read (nor is a generator made per stream)."""

    __slots__ = ("_chat", "_parts")

    def __init__(self, chat: ChatStream) -> None:
        self._chat = chat
        self._parts: AsyncIterator[bytes] | None = None

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> bytes:
        if self._parts is None:
            self._parts = self._chat.body()
        return await anext(self._parts)


class ChatResponse(StreamingHttpResponse):
    """The SSE response of a `ChatStream`; closing it releases the stream even when its body
    was never read (the client left between the view's return and the first byte)."""

    def __init__(self, chat: ChatStream) -> None:
        super().__init__(_Parts(chat), content_type=protocol.CONTENT_TYPE, headers=protocol.HEADERS)
        self._chat = chat
        self._loop = asyncio.get_running_loop()

    async def stream_to(self, write: protocol.Write) -> None:
        """Write the body through `write` (Mamba's ASGI handler: one call per batch)."""
        await self._chat.send_body(write)

    def close(self) -> None:
        super().close()
        self._chat.close_soon(self._loop)

"""The chat API: /chat, /title/generate, /models, /openapi.json."""

import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from agents.selectors import agent_get, agent_list
from chat import protocol
from chat.accounting import request_principal
from chat.openapi import openapi_document
from chat.plans import plan_chat
from chat.routing import OPENAI_PREFIX, routers
from chat.schemas import ChatRequest, TitleRequest
from chat.steps import StepPolicy
from chat.streams import ChatStream
from chat.titles import conversation_text, title_generate
from mamba_site import lifecycle
from mamba_site.auth import Principal
from mamba_site.bodies import parse_body
from mamba_site.errors import Forbidden, allow_methods, json_errors
from mamba_site.providers import model_catalog

logger = logging.getLogger(__name__)


@csrf_exempt
@allow_methods("POST")
@json_errors
async def chat(request: HttpRequest) -> HttpResponseBase:
    return await _chat(request)


@csrf_protect
@allow_methods("POST")
@json_errors
async def playground_chat(request: HttpRequest) -> HttpResponseBase:
    """/chat for the admin playground: a staff session (and its CSRF token) instead of a key."""
    user = await request.auser()
    if not (user.is_active and user.is_staff):
        raise Forbidden("The playground is for staff users.")
    request.principal = Principal(kind="staff", id=f"staff:{user.pk}", name=user.get_username())  # type: ignore[attr-defined]
    return await _chat(request)


async def _chat(request: HttpRequest) -> HttpResponseBase:
    body = await parse_body(request, ChatRequest)
    principal = request_principal(request)
    agent = await agent_get(slug=body.agent)
    router = routers.get()
    plan = plan_chat(body=body, agent=agent, principal=principal, router=router)
    chat = ChatStream(
        plan=plan,
        principal=principal,
        router=router,
        policy=step_policy(request),
        limits=stream_limits(),
        drain_deadline=lifecycle.drain_deadline,
        received_at=getattr(request, "received_at", None),
    )
    await chat.start()
    return chat.response()


@allow_methods("GET")
async def chat_resume(request: HttpRequest, chat_id: str) -> HttpResponseBase:
    """`useChat({resume: true})` asks here after a reload; Mamba keeps no streams: 204."""
    return HttpResponse(status=204)


def stream_limits() -> protocol.StreamLimits:
    # The step loop watches the provider's silence (CHAT_IDLE_TIMEOUT_SECONDS); the stream's
    # own idle limit is a backstop that also covers a server tool's run.
    backstop = settings.CHAT_IDLE_TIMEOUT_SECONDS + settings.TOOLS_TIMEOUT_SECONDS + 5
    return protocol.StreamLimits(
        keepalive_seconds=settings.CHAT_KEEPALIVE_SECONDS,
        idle_timeout_seconds=backstop,
        total_timeout_seconds=settings.CHAT_TOTAL_TIMEOUT_SECONDS,
    )


def step_policy(request: HttpRequest) -> StepPolicy:
    replay = settings.CHAT_REPLAY_STEP and protocol.accepts_reset_step(
        request.headers.get("User-Agent", "")
    )
    return StepPolicy(
        first_byte_seconds=settings.CHAT_FIRST_BYTE_TIMEOUT_SECONDS,
        idle_seconds=settings.CHAT_IDLE_TIMEOUT_SECONDS,
        replay=replay,
    )


@csrf_exempt
@allow_methods("POST")
@json_errors
async def generate_title(request: HttpRequest) -> HttpResponseBase:
    body = await parse_body(request, TitleRequest)
    principal = request_principal(request)
    if body.model:  # a model the client names must be one it may use; the default need not
        principal.check_model(body.model.removeprefix(OPENAI_PREFIX))
    title = await title_generate(
        text=conversation_text(user_message=body.user_message, messages=body.messages),
        model=(body.model or settings.TITLE_MODEL).removeprefix(OPENAI_PREFIX),
        principal=principal,
        router=routers.get(),
        seconds=settings.TITLE_TIMEOUT_MS / 1000,
        max_length=settings.TITLE_MAX_LENGTH,
    )
    return JsonResponse({"title": title, "useFallback": not title})


@allow_methods("GET")
@json_errors
async def models(request: HttpRequest) -> HttpResponseBase:
    """The catalog and the enabled agents, as far as the caller's scopes allow."""
    principal = request_principal(request)
    agents = [
        {"slug": a.slug, "name": a.name, "description": a.description, "tools": list(a.tools)}
        for a in await agent_list()
        if principal.allows_agent(a.slug)
    ]
    catalog = [m for m in model_catalog() if principal.allows_model(m["id"])]
    return JsonResponse({"models": catalog, "agents": agents})


@allow_methods("GET")
@json_errors
async def openapi(request: HttpRequest) -> HttpResponseBase:
    return JsonResponse(openapi_document())

"""The chat API: /chat, /title/generate, /models, /openapi.json."""

import logging
from functools import partial

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from agents.catalog import model_catalog
from agents.selectors import agent_get, agent_list
from chat import protocol, steps, upstream
from chat.accounting import principal_of, stream_admit
from chat.openapi import openapi_document
from chat.plans import plan_chat
from chat.schemas import ChatRequest, TitleRequest
from chat.titles import SYSTEM_PROMPT, clean_title, conversation_text
from mamba_site import lifecycle
from mamba_site.auth import Principal
from mamba_site.bodies import parse_body
from mamba_site.errors import ApiError, Forbidden, allow_methods, json_errors

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
    principal = principal_of(request)
    agent = await agent_get(slug=body.agent)
    plan = plan_chat(body=body, agent=agent, principal=principal)
    close = await stream_admit(principal)
    try:
        run = await steps.start(plan)
    except BaseException:
        await close(None)
        raise
    events = protocol.stream(
        run.events(),
        limits=stream_limits(),
        message_id=plan.message_id,
        safe_error=steps.error_text,
        on_close=partial(close, run),
        drain_deadline=lifecycle.drain_deadline,
    )
    return StreamingHttpResponse(
        events, content_type=protocol.CONTENT_TYPE, headers=protocol.HEADERS
    )


@allow_methods("GET")
async def chat_resume(request: HttpRequest, chat_id: str) -> HttpResponseBase:
    """`useChat({resume: true})` asks here after a reload; Mamba keeps no streams: 204."""
    return HttpResponse(status=204)


def stream_limits() -> protocol.StreamLimits:
    return protocol.StreamLimits(
        keepalive_seconds=settings.CHAT_KEEPALIVE_SECONDS,
        idle_timeout_seconds=settings.CHAT_IDLE_TIMEOUT_SECONDS,
        total_timeout_seconds=settings.CHAT_TOTAL_TIMEOUT_SECONDS,
    )


@csrf_exempt
@allow_methods("POST")
@json_errors
async def generate_title(request: HttpRequest) -> HttpResponseBase:
    body = await parse_body(request, TitleRequest)
    if body.model:
        principal_of(request).check_model(body.model.removeprefix(upstream.OPENAI_PREFIX))
    text = conversation_text(user_message=body.user_message, messages=body.messages)
    params = {
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": text},
        ],
        settings.OPENAI_MAX_TOKENS_PARAM: 32,
    }
    try:
        target = upstream.route(body.model or settings.TITLE_MODEL)
        time_limit = settings.TITLE_TIMEOUT_MS / 1000
        raw = await upstream.complete_text(target, params, time_limit=time_limit)
    except ApiError as error:
        # The frontend has its own fallback title; a failure here must not become an error.
        logger.warning("Title generation failed: %s", error.code)
        return JsonResponse({"title": "", "useFallback": True})
    title = clean_title(raw, max_length=settings.TITLE_MAX_LENGTH)
    return JsonResponse({"title": title, "useFallback": not title})


@allow_methods("GET")
@json_errors
async def models(request: HttpRequest) -> HttpResponseBase:
    """The catalog and the enabled agents, as far as the caller's scopes allow."""
    principal = principal_of(request)
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

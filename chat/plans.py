"""From a validated chat request and its agent to a `ChatPlan`: model, tools, messages."""

from django.conf import settings

from agents.selectors import AgentSpec
from agents.tools import tool_get
from chat.messages import UnsupportedContent, to_openai_messages
from chat.routing import MAX_OUTPUT_TOKENS, OPENAI_PREFIX, Router
from chat.schemas import ChatRequest
from chat.steps import ChatPlan, new_message_id
from mamba_site.auth import Principal
from mamba_site.errors import InvalidRequest, ValidationFailed


def plan_chat(
    *, body: ChatRequest, agent: AgentSpec, principal: Principal, router: Router
) -> ChatPlan:
    """Raises `ApiError` for empty history, unknown tools, client system messages the agent
    does not accept, unsupported content, models or agents and models outside the caller's
    scopes."""
    if not body.messages:
        raise InvalidRequest("Messages must not be empty.")
    principal.check_agent(agent.slug)
    model = (agent.model or body.model or settings.OPENAI_DEFAULT_MODEL).removeprefix(OPENAI_PREFIX)
    principal.check_model(model)
    tool_names = agent.tools
    if body.tools is not None:
        unknown = sorted(set(body.tools) - set(agent.tools))
        if unknown:
            more = f" (and {len(unknown) - 3} more)" if len(unknown) > 3 else ""
            raise InvalidRequest(
                f"Unknown tools for agent {agent.slug!r}: {', '.join(unknown[:3])}{more}. "
                f"Available: {', '.join(agent.tools) or 'none'}.",
                extra={"available_tools": list(agent.tools)},
            )
        tool_names = tuple(name for name in agent.tools if name in body.tools)
    if not agent.accept_client_system_messages and any(m.role == "system" for m in body.messages):
        raise ValidationFailed(
            f"System messages from the client are not accepted by agent {agent.slug!r} "
            "(agent setting 'Accept client system messages')."
        )
    try:
        messages = to_openai_messages(body.messages, system_prompt=agent.system_prompt)
    except UnsupportedContent as error:
        raise ValidationFailed(str(error)) from None
    last = body.messages[-1]
    # A request ending with an assistant message continues it (tool results sent back).
    message_id = last.id if last.role == "assistant" and last.id else new_message_id()
    options: dict[str, float | int] = {}
    if agent.temperature is not None:
        options["temperature"] = agent.temperature
    if agent.max_output_tokens is not None:
        options[MAX_OUTPUT_TOKENS] = agent.max_output_tokens
    return ChatPlan(
        route=router.resolve(model),
        agent=agent.slug,
        messages=messages,
        tools=[tool for name in tool_names if (tool := tool_get(name=name)) is not None],
        max_steps=agent.max_steps or settings.CHAT_MAX_STEPS,
        message_id=message_id,
        tool_timeout=settings.TOOLS_TIMEOUT_SECONDS,
        tool_output_limit=settings.TOOLS_MAX_OUTPUT_BYTES,
        options=options,
    )

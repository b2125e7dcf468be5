"""Conversation titles: the prompt, the model call (routed, billed, never an error), and
cleaning the model's answer as the original did."""

import logging
import time
from collections.abc import Iterable

from chat.accounting import bill, tokens_add, tokens_check
from chat.routing import MAX_OUTPUT_TOKENS, Router
from chat.schemas import TextPart, UIMessage
from chat.translate import Usage
from mamba_site.auth import Principal
from mamba_site.errors import ApiError

logger = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "You write short titles for chat conversations. Reply with the title only: at most six "
    "words, no quotes, no trailing punctuation, in the language of the conversation."
)
MAX_INPUT_CHARS = 2000
QUOTE_PAIRS = {'"': '"', "'": "'", "\u201c": "\u201d", "\u2018": "\u2019", "`": "`"}


def conversation_text(*, user_message: str | None, messages: Iterable[UIMessage] | None) -> str:
    if user_message:
        return user_message[:MAX_INPUT_CHARS]
    lines = []
    for message in messages or ():
        text = " ".join(p.text for p in message.parts if isinstance(p, TextPart)).strip()
        if text and message.role != "system":
            lines.append(f"{message.role}: {text}")
    return "\n".join(lines)[:MAX_INPUT_CHARS]


def clean_title(raw: str, *, max_length: int) -> str:
    """Strip whitespace and one pair of outer quotes; cut long titles at a word boundary."""
    if max_length <= 0:
        return ""
    title = raw.strip()
    if len(title) >= 2 and QUOTE_PAIRS.get(title[0]) == title[-1]:
        title = title[1:-1].strip()
    if len(title) <= max_length:
        return title
    cut = title[: max_length - 3]
    last_space = cut.rfind(" ")
    if last_space > max_length * 0.6:
        cut = cut[:last_space]
    return cut.rstrip() + "..."


async def title_generate(
    *, text: str, model: str, principal: Principal, router: Router, seconds: float, max_length: int
) -> str:
    """The title, or "" when the caller should use its own: the frontend has a fallback, so
    no failure here (a provider's, a limit's, a model outside the caller's scope) is an
    error. The tokens count towards the caller's day and usage, like a chat's."""
    if not principal.allows_model(model):
        logger.info("Title model %s is outside the caller's scope: fallback", model)
        return ""
    params = {
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": text},
        ],
        MAX_OUTPUT_TOKENS: 32,
    }
    try:
        await tokens_check(principal)
        route = router.resolve(model)
        completion = await router.complete(route, params, deadline=time.monotonic() + seconds)
    except ApiError as error:
        logger.warning("Title generation failed: %s", error.code)
        return ""
    usage = Usage()
    usage.add(completion.usage)
    try:
        await tokens_add(principal, usage.input_tokens + usage.output_tokens)
    except Exception:
        logger.exception("Counting the title's tokens failed")
    bill(principal, usage, completed=True)
    return clean_title(completion.text, max_length=max_length)

"""Conversation titles: the prompt, and cleaning the model's answer as the original did."""

from collections.abc import Iterable

from chat.schemas import TextPart, UIMessage

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

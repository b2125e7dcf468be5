"""UI messages to OpenAI Chat Completions messages (PROTOCOL.md §4)."""

import base64
from collections.abc import Iterable
from typing import Any

import orjson

from chat.schemas import FilePart, StepStartPart, TextPart, ToolPart, UIMessage

type OpenAIMessage = dict[str, Any]

DENIED = "Tool call execution denied."
AUDIO_FORMATS = {"audio/wav": "wav", "audio/x-wav": "wav", "audio/mpeg": "mp3", "audio/mp3": "mp3"}


class UnsupportedContent(ValueError):
    """A part the Chat Completions API cannot take (a file of an unknown type, or whose data
    is not valid base64)."""


def compact_json(value: Any) -> str:
    return orjson.dumps(value).decode()


def to_openai_messages(
    messages: Iterable[UIMessage], *, system_prompt: str = ""
) -> list[OpenAIMessage]:
    result: list[OpenAIMessage] = []
    if system_prompt:
        result.append({"role": "system", "content": system_prompt})
    for message in messages:
        if message.role == "system":
            text = "".join(p.text for p in message.parts if isinstance(p, TextPart))
            if text:
                result.append({"role": "system", "content": text})
        elif message.role == "user":
            result.append(_user_message(message))
        else:
            result.extend(_assistant_messages(message))
    return result


def _user_message(message: UIMessage) -> OpenAIMessage:
    parts = [p for p in message.parts if isinstance(p, TextPart | FilePart)]
    if len(parts) == 1 and isinstance(parts[0], TextPart):
        return {"role": "user", "content": parts[0].text}
    content = [
        {"type": "text", "text": p.text} if isinstance(p, TextPart) else _file_content(p)
        for p in parts
    ]
    return {"role": "user", "content": content}


def _file_content(part: FilePart) -> dict[str, Any]:
    media_type = part.media_type.lower()
    data = _data_url_payload(part)
    if media_type.startswith("image/"):
        return {"type": "image_url", "image_url": {"url": part.url}}
    if media_type in AUDIO_FORMATS and data is not None:
        return {
            "type": "input_audio",
            "input_audio": {"data": data, "format": AUDIO_FORMATS[media_type]},
        }
    if media_type == "application/pdf" and data is not None:
        return {
            "type": "file",
            "file": {"filename": part.filename or "document.pdf", "file_data": part.url},
        }
    if media_type.startswith("text/") and data is not None:
        try:
            return {"type": "text", "text": base64.b64decode(data).decode()}
        except UnicodeDecodeError:
            raise UnsupportedContent(
                f"The file part of type {part.media_type!r} is not UTF-8 text."
            ) from None
    raise UnsupportedContent(
        f"File parts of type {part.media_type!r} are not supported here; send images, PDF, "
        "WAV/MP3 audio or text files as data: URLs."
    )


def _data_url_payload(part: FilePart) -> str | None:
    """The base64 payload of a `data:` URL, checked; None for any other URL.

    Strict, as `b64decode(validate=True)`: the standard alphabet with its `=` padding. URL-safe
    characters (`-`, `_`) and whitespace are refused rather than repaired, because the URL is
    passed on to the provider unchanged and a lenient decode would turn garbage into an empty
    or truncated file without a word."""
    url = part.url
    if not url.startswith("data:") or ";base64," not in url:
        return None
    payload = url.split(";base64,", 1)[1]
    try:
        base64.b64decode(payload, validate=True)
    except ValueError:  # binascii.Error, or characters outside ASCII
        raise UnsupportedContent(
            f"The data: URL of a file part of type {part.media_type!r} is not valid base64 "
            "(standard alphabet, padded with '=', no whitespace)."
        ) from None
    return payload


def _assistant_messages(message: UIMessage) -> list[OpenAIMessage]:
    result: list[OpenAIMessage] = []
    block: list[Any] = []
    for part in message.parts:
        if isinstance(part, StepStartPart):
            result += _assistant_block(block)
            block = []
        else:
            block.append(part)
    return result + _assistant_block(block)


def _assistant_block(parts: list[Any]) -> list[OpenAIMessage]:
    text = "".join(p.text for p in parts if isinstance(p, TextPart))
    tools = [p for p in parts if isinstance(p, ToolPart) and _tool_result(p) is not None]
    if not text and not tools:
        return []
    assistant: OpenAIMessage = {"role": "assistant", "content": text or None}
    if tools:
        assistant["tool_calls"] = [
            {
                "id": p.tool_call_id,
                "type": "function",
                "function": {
                    "name": p.name,
                    "arguments": compact_json(p.input if isinstance(p.input, dict) else {}),
                },
            }
            for p in tools
        ]
    results = [
        {"role": "tool", "tool_call_id": p.tool_call_id, "content": _tool_result(p)} for p in tools
    ]
    return [assistant, *results]


def _tool_result(part: ToolPart) -> str | None:
    """The `tool` message content of a finished call; None for a call with no result yet."""
    if part.state == "output-available":
        return part.output if isinstance(part.output, str) else compact_json(part.output)
    if part.state == "output-error":
        return compact_json({"error": part.error_text or ""})
    denied = part.state == "output-denied" or (
        part.state == "approval-responded"
        and part.approval is not None
        and part.approval.approved is False
    )
    if denied:
        return (part.approval.reason if part.approval else None) or DENIED
    return None

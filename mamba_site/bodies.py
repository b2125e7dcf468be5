"""JSON request bodies: content type, size, amount of JSON, syntax and schema, each with its own
error, at a bounded cost to the event loop."""

# What a body costs to parse and validate goes with the number of JSON values in it, not with
# its bytes: orjson reads an 8 MiB string in ~8 ms, but 8 MiB of `[[[...]]]` or of small
# parts took seconds, with the event loop (every other stream) stopped. So the values are
# counted first, at C speed, and a body with too many is refused before it is parsed. Small
# bodies with few values (nearly all) are then handled on the loop; the others in one worker
# thread, where the loop takes the GIL back between C calls (counting, orjson: tens of ms at
# most) and every few ms while pydantic runs our Python validators. Figures: bench/README.md.

import asyncio
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import orjson
from django.conf import settings
from django.http import HttpRequest
from pydantic import BaseModel, ValidationError

from mamba_site.bodylimit import body_too_large
from mamba_site.errors import (
    InvalidRequest,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
    truncate,
)

MAX_REPORTED_ERRORS = 20
# A deeply nested body has a path of thousands of characters; its start says where it is.
MAX_LOC_CHARS = 200
MAX_MSG_CHARS = 300
# Bodies up to these sizes are handled on the loop (a few ms at most); a typical request has a
# few kB and a few hundred values.
ON_LOOP_MAX_BYTES = 256 * 1024
ON_LOOP_MAX_VALUES = 5000
# Every JSON value or key but the first follows one of these outside a string.
STRUCTURE = b",:[{"
# What a string escape is made of: a backslash and one of these.
ESCAPES = b'"\\/bfnrtu'
NOT_MARKS = bytes(byte for byte in range(256) if byte not in STRUCTURE + ESCAPES)

# One thread: the work holds the GIL most of the time, so more threads would do it no faster,
# only take the GIL from the event loop more often (six large bodies at once in six threads
# stalled the loop ~300 ms; in one, ~20-40 ms).
validation_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mamba-bodies")


async def parse_body[M: BaseModel](request: HttpRequest, model: type[M]) -> M:
    """The body validated as `model`; raises a 415, 413, 400 or 422 `ApiError`."""
    if request.content_type != "application/json":
        raise UnsupportedMediaType()
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if limit is not None and length > limit:
        raise body_too_large(limit)
    body = request.body
    if limit is not None and len(body) > limit:  # a chunked body declares no length
        raise body_too_large(limit)
    decode = partial(
        _decode,
        body,
        model,
        max_values=settings.CHAT_MAX_JSON_VALUES,
        context=validation_context(),
    )
    if len(body) <= ON_LOOP_MAX_BYTES and structure_count(body) <= ON_LOOP_MAX_VALUES:
        return decode()
    return await asyncio.get_running_loop().run_in_executor(validation_executor, decode)


def validation_context() -> dict[str, int]:
    """The limits request schemas read from pydantic's validation context."""
    return {
        "max_messages": settings.CHAT_MAX_MESSAGES,
        "max_parts_per_message": settings.CHAT_MAX_PARTS_PER_MESSAGE,
        "max_text_chars": settings.CHAT_MAX_TEXT_CHARS,
        "max_json_depth": settings.CHAT_MAX_JSON_DEPTH,
    }


def _decode[M: BaseModel](
    body: bytes, model: type[M], *, max_values: int, context: dict[str, int]
) -> M:
    if json_values_bound(body, limit=max_values) > max_values:
        raise PayloadTooLarge(f"The request body holds more than {max_values} JSON values.")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidRequest("The request body is not valid JSON.") from None
    try:
        return model.model_validate(data, context=context)
    except ValidationError as error:
        errors = validation_errors(error)
        first = errors[0]
        detail = f"Invalid request body at {first['loc'] or 'the top level'}: {first['msg']}."
        raise ValidationFailed(detail, extra={"errors": errors}) from None


def structure_count(body: bytes) -> int:
    """How many values and keys `body` holds as JSON at most: its commas, colons and opening
    brackets (inside strings too), plus one."""
    return 1 + len(body) - len(body.translate(None, STRUCTURE))


def json_values_bound(body: bytes, *, limit: int) -> int:
    """How many values and keys `body` holds as JSON, counted without parsing it: one too
    many for each empty container; once over `limit`, any number over `limit`."""
    count = structure_count(body)
    if count <= limit:
        return count
    # Each string is a value or a key, and has two quotes of its own; an escaped quote has a
    # backslash of its own.
    strings = (body.count(b'"') - body.count(b"\\")) // 2
    if strings > limit:
        return strings
    # Text has commas and colons of its own: count only those outside strings. Kept: the
    # structure, the quotes, and every escape whole (a backslash and the letter after it).
    marks = body.translate(None, NOT_MARKS)
    # Then neither an escaped backslash nor an escaped quote can end a string.
    marks = marks.replace(b"\\\\", b"").replace(b'\\"', b"")
    strings = marks.count(b'"') // 2
    if strings > limit:
        return strings
    outside = b"".join(marks.split(b'"')[::2])
    return 1 + len(outside) - len(outside.translate(None, STRUCTURE))


def validation_errors(error: ValidationError) -> list[dict[str, Any]]:
    """Field paths and messages; never the submitted values."""
    return [
        {
            "loc": truncate(".".join(str(part) for part in e["loc"]), MAX_LOC_CHARS),
            "msg": truncate(e["msg"], MAX_MSG_CHARS),
            "type": e["type"],
        }
        for e in error.errors(include_url=False, include_input=False)[:MAX_REPORTED_ERRORS]
    ]

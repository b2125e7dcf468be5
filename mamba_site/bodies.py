"""JSON request bodies: content type, size, syntax and schema, each with its own error."""

from typing import Any

import orjson
from django.conf import settings
from django.http import HttpRequest
from pydantic import BaseModel, ValidationError

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


def parse_body[M: BaseModel](request: HttpRequest, model: type[M]) -> M:
    """The body validated as `model`; raises a 415, 413, 400 or 422 `ApiError`."""
    if request.content_type != "application/json":
        raise UnsupportedMediaType()
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if limit is not None and length > limit:
        raise PayloadTooLarge(f"The request body is larger than {limit} bytes.")
    try:
        data = orjson.loads(request.body)
    except orjson.JSONDecodeError:
        raise InvalidRequest("The request body is not valid JSON.") from None
    try:
        return model.model_validate(data)
    except ValidationError as error:
        errors = validation_errors(error)
        first = errors[0]
        detail = f"Invalid request body at {first['loc'] or 'the top level'}: {first['msg']}."
        raise ValidationFailed(detail, extra={"errors": errors}) from None


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

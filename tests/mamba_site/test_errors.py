import pytest
from pydantic import BaseModel, JsonValue, ValidationError, field_validator

from mamba_site.bodies import MAX_LOC_CHARS, MAX_MSG_CHARS, validation_errors
from mamba_site.errors import (
    ELLIPSIS,
    MAX_DETAIL_CHARS,
    ApiError,
    InvalidRequest,
    error_response,
    truncate,
)


def test_truncate_keeps_short_text():
    assert truncate("short", 10) == "short"
    assert truncate("x" * 10, 10) == "x" * 10


def test_truncate_cuts_long_text_with_an_ellipsis():
    assert truncate("abcdefghijkl", 6) == "abcde" + ELLIPSIS


def test_api_error_bounds_its_detail():
    error = InvalidRequest("No route for /" + "a" * 10_000)
    assert len(error.detail) == MAX_DETAIL_CHARS
    assert error.detail.startswith("No route for /aaa")
    assert error.detail.endswith(ELLIPSIS)


def test_api_error_keeps_a_detail_at_the_bound():
    detail = "d" * MAX_DETAIL_CHARS
    assert ApiError(detail).detail == detail


def test_error_response_detail_is_bounded():
    response = error_response(InvalidRequest("x" * 10_000))
    assert len(response.content) < MAX_DETAIL_CHARS + 200


class Nested(BaseModel):
    value: JsonValue


def deep_error(depth, key="k" * 30):
    value = 1
    for _ in range(depth):
        value = {key: value}
    with pytest.raises(ValidationError) as caught:
        Nested.model_validate({"value": value})
    return caught.value


def test_validation_errors_bound_field_paths():
    error = deep_error(400)
    assert len(".".join(map(str, error.errors()[0]["loc"]))) > 9000
    [entry] = validation_errors(error)
    assert len(entry["loc"]) == MAX_LOC_CHARS
    assert entry["loc"].startswith("value.dict.kkk")
    assert entry["loc"].endswith(ELLIPSIS)


def test_validation_errors_bound_messages():
    class Wordy(BaseModel):
        word: str

        @field_validator("word")
        @classmethod
        def _long_complaint(cls, value):
            raise ValueError("no " * 1000)

    with pytest.raises(ValidationError) as caught:
        Wordy.model_validate({"word": "x"})
    [entry] = validation_errors(caught.value)
    assert len(entry["msg"]) == MAX_MSG_CHARS
    assert entry["msg"].startswith("Value error, no no")

import json

import pytest
from django.test import RequestFactory
from pydantic import BaseModel

from mamba_site.bodies import (
    ON_LOOP_MAX_BYTES,
    ON_LOOP_MAX_VALUES,
    json_values_bound,
    parse_body,
)
from mamba_site.errors import InvalidRequest, PayloadTooLarge


class Numbers(BaseModel):
    values: list[int]


def request(body):
    return RequestFactory().post("/chat", data=body, content_type="application/json")


@pytest.mark.parametrize(
    ("document", "count"),
    [
        ("1", 1),
        ("[]", 2),  # an empty container counts one too many
        ('{"a":[1,2,{"b":null}]}', 8),
        ('{"a": [1, 2, {"b": null}]}', 8),
    ],
)
def test_json_values_bound_counts_values_and_keys(document, count):
    assert json_values_bound(document.encode(), limit=100) == count


@pytest.mark.parametrize(
    ("document", "count"),
    [
        ('{"t":"' + ",:[{" * 100 + '"}', 3),
        (json.dumps({"t": 'a",[1,2,3],"' + ",:" * 50}), 3),  # escaped quotes end nothing
        (json.dumps({"t": "C:\\", "u": [1, 2, 3]}), 8),  # an escaped backslash, then the end
        (json.dumps({"t": "\\\\\\" + '"' + ",:" * 50}), 3),
        (json.dumps({"t": "\\n\\u00e9/,:" * 50}), 3),
    ],
)
def test_json_values_bound_ignores_structure_in_strings(document, count):
    strings = document.count('"') // 2
    # Over the limit the count is made exact: only what is outside strings.
    assert json_values_bound(document.encode(), limit=strings) == count


def test_json_values_bound_is_over_the_limit_with_too_many_strings():
    document = json.dumps(["x"] * 200).encode()
    assert json_values_bound(document, limit=100) > 100


async def test_parse_body_validates_a_body_with_many_values_off_the_loop():
    values = list(range(ON_LOOP_MAX_VALUES + 1))
    parsed = await parse_body(request(json.dumps({"values": values})), Numbers)
    assert parsed.values == values


async def test_parse_body_validates_a_large_body_off_the_loop():
    values = [10**9] * (ON_LOOP_MAX_BYTES // 10)
    parsed = await parse_body(request(json.dumps({"values": values})), Numbers)
    assert parsed.values == values


async def test_parse_body_reports_invalid_json_from_off_the_loop():
    body = "[" + "1," * (ON_LOOP_MAX_VALUES + 1)
    with pytest.raises(InvalidRequest):
        await parse_body(request(body), Numbers)


async def test_parse_body_refuses_too_many_values_from_off_the_loop(settings):
    settings.CHAT_MAX_JSON_VALUES = 1000
    body = json.dumps({"values": [1] * 1000, "pad": "x" * ON_LOOP_MAX_BYTES})
    with pytest.raises(PayloadTooLarge, match="more than 1000 JSON values"):
        await parse_body(request(body), Numbers)

import pytest

from chat.schemas import ChatRequest, json_depth


def nested(depth):
    value = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("value", "depth"),
    [
        (1, 0),
        ("text", 0),
        ([], 1),
        ({}, 1),
        ([[1], 2], 2),
        ({"a": [{"b": 1}], "c": 2}, 3),
        (nested(40), 40),
    ],
)
def test_json_depth_counts_nested_lists_and_objects(value, depth):
    assert json_depth(value, stop_above=100) == depth


def test_json_depth_stops_past_the_limit():
    assert json_depth(nested(900), stop_above=5) == 6


def test_chat_request_without_a_context_has_no_limits():
    part = {"type": "tool-x", "toolCallId": "c", "state": "input-available", "input": nested(50)}
    messages = [{"role": "user", "content": "x"}] * 3000 + [
        {"id": "a", "role": "assistant", "parts": [part] * 300}
    ]
    assert len(ChatRequest.model_validate({"messages": messages}).messages) == 3001

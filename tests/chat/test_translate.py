from chat import protocol as p
from chat.translate import BlockIds, Translator


def new():
    return Translator(ids=BlockIds(tag="t"))


def delta(**fields):
    return {"choices": [{"index": 0, "delta": fields, "finish_reason": None}]}


def finish(reason):
    return {"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]}


def test_translate_opens_text_block_once():
    t = new()
    events = t.feed(delta(role="assistant", content="")) + t.feed(delta(content="Hi"))
    events += t.feed(delta(content=" there")) + t.close()
    assert events == [
        p.TextStart("text-t-1"),
        p.TextDelta("text-t-1", "Hi"),
        p.TextDelta("text-t-1", " there"),
        p.TextEnd("text-t-1"),
    ]


def test_translate_reads_reasoning_content_and_reasoning_fields():
    t = new()
    events = t.feed(delta(reasoning_content="a")) + t.feed(delta(reasoning="b"))
    events += t.feed(delta(content="c")) + t.close()
    assert events == [
        p.ReasoningStart("reasoning-t-1"),
        p.ReasoningDelta("reasoning-t-1", "a"),
        p.ReasoningDelta("reasoning-t-1", "b"),
        p.ReasoningEnd("reasoning-t-1"),
        p.TextStart("text-t-2"),
        p.TextDelta("text-t-2", "c"),
        p.TextEnd("text-t-2"),
    ]


def test_translate_closes_text_block_before_tool_call():
    t = new()
    t.feed(delta(content="Sure"))
    events = t.feed(
        delta(
            tool_calls=[
                {
                    "index": 0,
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "generateChart", "arguments": ""},
                }
            ]
        )
    )
    assert events == [p.TextEnd("text-t-1"), p.ToolInputStart("c1", "generateChart")]


def test_translate_accumulates_tool_arguments_per_index():
    t = new()
    t.feed(
        delta(
            tool_calls=[
                {"index": 0, "id": "a", "function": {"name": "x", "arguments": '{"q"'}},
                {"index": 1, "id": "b", "function": {"name": "y", "arguments": ""}},
            ]
        )
    )
    events = t.feed(
        delta(
            tool_calls=[
                {"index": 1, "function": {"arguments": "{}"}},
                {"index": 0, "function": {"arguments": ": 1}"}},
            ]
        )
    )
    assert events == [p.ToolInputDelta("b", "{}"), p.ToolInputDelta("a", ": 1}")]
    assert [(c.id, c.name, c.arguments) for c in t.tool_calls] == [
        ("a", "x", '{"q": 1}'),
        ("b", "y", "{}"),
    ]


def test_translate_waits_for_tool_name_before_start():
    t = new()
    assert t.feed(delta(tool_calls=[{"index": 0, "id": "a", "function": {"arguments": "{"}}])) == []
    events = t.feed(delta(tool_calls=[{"index": 0, "function": {"name": "n", "arguments": "}"}}]))
    assert events == [p.ToolInputStart("a", "n"), p.ToolInputDelta("a", "{}")]


def test_translate_maps_finish_reasons():
    for upstream, ours in [
        ("stop", "stop"),
        ("length", "length"),
        ("tool_calls", "tool-calls"),
        ("content_filter", "content-filter"),
        ("function_call", "tool-calls"),
        ("weird", "other"),
    ]:
        t = new()
        t.feed(finish(upstream))
        assert t.finish_reason == ours


def test_translate_records_usage_from_empty_choices_chunk():
    t = new()
    assert t.feed({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}}) == []
    assert t.usage == {"prompt_tokens": 3, "completion_tokens": 4}


def test_translate_block_ids_are_unique_across_steps():
    ids = BlockIds(tag="m")
    first, second = Translator(ids=ids), Translator(ids=ids)
    a = first.feed(delta(content="x"))[0]
    b = second.feed(delta(content="y"))[0]
    assert a.id != b.id


def test_translate_shows_a_refusal_as_text():
    t = new()
    events = t.feed(delta(refusal="I can't help with that.")) + t.close()
    assert events == [
        p.TextStart("text-t-1"),
        p.TextDelta("text-t-1", "I can't help with that."),
        p.TextEnd("text-t-1"),
    ]


def test_translate_ignores_content_that_is_not_text():
    t = new()
    assert t.feed(delta(content=[{"type": "image"}])) == []

import orjson
import pytest

from chat.messages import UnsupportedContent, to_openai_messages
from chat.schemas import ChatRequest

# The history of PROTOCOL.md §2, as useChat sends it.
HISTORY = [
    {
        "id": "user-1",
        "role": "user",
        "parts": [{"type": "text", "text": "Make a bar chart of fruit sales: apples 10, pears 4."}],
    },
    {
        "id": "assistant-1",
        "role": "assistant",
        "parts": [
            {"type": "step-start"},
            {"type": "text", "text": "Sure, I will draw that chart.", "state": "done"},
            {
                "type": "tool-generateChart",
                "toolCallId": "call_0001",
                "state": "output-available",
                "input": {
                    "chartType": "bar",
                    "title": "Fruit sales QX-7319",
                    "data": [{"label": "apples", "value": 10}, {"label": "pears", "value": 4}],
                },
                "output": {
                    "type": "chart",
                    "chartType": "bar",
                    "title": "Fruit sales QX-7319",
                    "data": [{"label": "apples", "value": 10}, {"label": "pears", "value": 4}],
                },
            },
            {"type": "step-start"},
            {"type": "text", "text": "Here is your bar chart.", "state": "done"},
        ],
    },
    {
        "parts": [{"type": "text", "text": "What is the exact title of the chart you made?"}],
        "id": "aLkSATXzgrmEOY7I",
        "role": "user",
    },
]


def convert(messages, **kwargs):
    return to_openai_messages(ChatRequest.model_validate({"messages": messages}).messages, **kwargs)


def test_messages_converts_protocol_history_exactly():
    data = [{"label": "apples", "value": 10}, {"label": "pears", "value": 4}]
    chart = {"chartType": "bar", "title": "Fruit sales QX-7319", "data": data}
    assert convert(HISTORY) == [
        {"role": "user", "content": "Make a bar chart of fruit sales: apples 10, pears 4."},
        {
            "role": "assistant",
            "content": "Sure, I will draw that chart.",
            "tool_calls": [
                {
                    "id": "call_0001",
                    "type": "function",
                    "function": {
                        "name": "generateChart",
                        "arguments": orjson.dumps(chart).decode(),
                    },
                }
            ],
        },
        {
            "role": "tool",
            "tool_call_id": "call_0001",
            "content": orjson.dumps({"type": "chart", **chart}).decode(),
        },
        {"role": "assistant", "content": "Here is your bar chart."},
        {"role": "user", "content": "What is the exact title of the chart you made?"},
    ]


def test_messages_puts_system_prompt_first():
    result = convert([{"role": "user", "content": "hi"}], system_prompt="Be brief.")
    assert result[0] == {"role": "system", "content": "Be brief."}
    assert result[1] == {"role": "user", "content": "hi"}


def test_messages_accepts_original_content_form():
    result = convert(
        [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hey"}]
    )
    assert result == [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hey"}]


def test_messages_keeps_text_parts_unjoined_with_images():
    parts = [
        {"type": "text", "text": "Look "},
        {"type": "file", "mediaType": "image/png", "url": "data:image/png;base64,AAAA"},
        {"type": "text", "text": "at this"},
    ]
    (message,) = convert([{"id": "u", "role": "user", "parts": parts}])
    assert message["content"] == [
        {"type": "text", "text": "Look "},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "text", "text": "at this"},
    ]


def test_messages_converts_pdf_and_audio_files():
    parts = [
        {
            "type": "file",
            "mediaType": "application/pdf",
            "url": "data:application/pdf;base64,JVBE",
            "filename": "a.pdf",
        },
        {"type": "file", "mediaType": "audio/wav", "url": "data:audio/wav;base64,UklG"},
    ]
    (message,) = convert([{"id": "u", "role": "user", "parts": parts}])
    assert message["content"] == [
        {
            "type": "file",
            "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBE"},
        },
        {"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}},
    ]


def test_messages_rejects_unsupported_file_type():
    parts = [{"type": "file", "mediaType": "application/zip", "url": "https://x.test/a.zip"}]
    with pytest.raises(UnsupportedContent, match="application/zip"):
        convert([{"id": "u", "role": "user", "parts": parts}])


def file_message(media_type, url):
    return {
        "id": "u",
        "role": "user",
        "parts": [{"type": "file", "mediaType": media_type, "url": url}],
    }


def test_messages_decodes_padded_base64_text_files():
    (message,) = convert([file_message("text/plain", "data:text/plain;base64,aGVsbG8=")])
    assert message["content"] == [{"type": "text", "text": "hello"}]


@pytest.mark.parametrize("media_type", ["text/plain", "image/png", "audio/wav", "application/pdf"])
@pytest.mark.parametrize(
    "payload",
    [
        "!!!!",  # not the alphabet (a lenient decode makes this empty)
        "aGVsbG8",  # missing padding
        "aGVs\nbG8=",  # whitespace
        "aGV-bG8_",  # URL-safe alphabet
        "aGVsbG8=é",  # not ASCII
        "aGVsbG8=aGVs",  # data after the padding
    ],
    ids=["alphabet", "padding", "whitespace", "urlsafe", "non-ascii", "after-padding"],
)
def test_messages_rejects_invalid_base64_in_data_urls(media_type, payload):
    message = file_message(media_type, f"data:{media_type};base64,{payload}")
    with pytest.raises(UnsupportedContent, match="is not valid base64") as caught:
        convert([message])
    assert payload not in str(caught.value)


def test_messages_rejects_text_files_that_are_not_utf8():
    with pytest.raises(UnsupportedContent, match="not UTF-8"):
        convert([file_message("text/plain", "data:text/plain;base64,//79")])


def test_messages_passes_image_urls_that_are_not_data_urls_unchanged():
    (message,) = convert([file_message("image/png", "https://x.test/a.png")])
    assert message["content"] == [
        {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}
    ]


def test_messages_drops_reasoning_data_and_source_parts():
    parts = [
        {"type": "step-start"},
        {"type": "reasoning", "text": "hmm"},
        {"type": "data-weather", "data": {"t": 1}},
        {"type": "source-url", "sourceId": "s", "url": "https://x.test"},
        {"type": "text", "text": "Answer"},
    ]
    assert convert([{"id": "a", "role": "assistant", "parts": parts}]) == [
        {"role": "assistant", "content": "Answer"}
    ]


def test_messages_drops_incomplete_tool_calls():
    parts = [
        {"type": "step-start"},
        {"type": "text", "text": "Let me"},
        {
            "type": "tool-generateCode",
            "toolCallId": "c1",
            "state": "input-available",
            "input": {"language": "py", "code": "x"},
        },
        {"type": "tool-generateCode", "toolCallId": "c2", "state": "input-streaming"},
    ]
    assert convert([{"id": "a", "role": "assistant", "parts": parts}]) == [
        {"role": "assistant", "content": "Let me"}
    ]


def test_messages_converts_error_and_denied_tool_results():
    parts = [
        {
            "type": "tool-generateChart",
            "toolCallId": "c1",
            "state": "output-error",
            "input": {},
            "errorText": "bad",
        },
        {
            "type": "dynamic-tool",
            "toolName": "search",
            "toolCallId": "c2",
            "state": "output-denied",
            "input": {"q": 1},
            "approval": {"id": "a", "approved": False},
        },
    ]
    result = convert([{"id": "a", "role": "assistant", "parts": parts}])
    assert result[0]["content"] is None
    assert [c["function"]["name"] for c in result[0]["tool_calls"]] == ["generateChart", "search"]
    assert result[1] == {"role": "tool", "tool_call_id": "c1", "content": '{"error":"bad"}'}
    assert result[2] == {
        "role": "tool",
        "tool_call_id": "c2",
        "content": "Tool call execution denied.",
    }


def test_messages_uses_empty_object_for_non_object_input():
    parts = [
        {
            "type": "tool-x",
            "toolCallId": "c1",
            "state": "output-available",
            "input": "oops",
            "output": "done",
        }
    ]
    result = convert([{"id": "a", "role": "assistant", "parts": parts}])
    assert result[0]["tool_calls"][0]["function"]["arguments"] == "{}"
    assert result[1]["content"] == "done"


def test_messages_keeps_client_system_message_text():
    result = convert(
        [
            {"id": "s", "role": "system", "parts": [{"type": "text", "text": "Hi"}]},
            {"role": "user", "content": "x"},
        ]
    )
    assert result[0] == {"role": "system", "content": "Hi"}


def test_messages_keeps_client_system_messages_in_place_after_the_system_prompt():
    history = [
        {"role": "user", "content": "a"},
        {"id": "s", "role": "system", "parts": [{"type": "text", "text": "Be terse."}]},
        {"role": "user", "content": "b"},
    ]
    assert convert(history, system_prompt="Agent prompt.") == [
        {"role": "system", "content": "Agent prompt."},
        {"role": "user", "content": "a"},
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "b"},
    ]

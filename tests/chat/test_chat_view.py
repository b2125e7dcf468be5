import asyncio
import json
import time

import httpx
import orjson
import pytest

from agents.models import Agent
from chat import protocol as p
from tests.chat.conftest import (
    API_APPS,
    UPSTREAM_URL,
    chunk,
    parse_sse,
    read_stream,
    sse,
    streaming,
    text_reply,
    tool_reply,
    user,
)

pytestmark = [
    pytest.mark.django_db(transaction=True, available_apps=API_APPS),
    pytest.mark.usefixtures("main_agent"),
]

CHART = {"chartType": "bar", "title": "Fruit", "data": [{"label": "apples", "value": 10}]}


async def post_chat(async_client, body, **headers):
    return await async_client.post("/chat", body, content_type="application/json", headers=headers)


async def chat_events(async_client, body):
    response = await post_chat(async_client, body)
    assert response.status_code == 200, response.content
    return parse_sse(await read_stream(response))


def types(events):
    return [e if e == "[DONE]" else e["type"] for e in events]


def sent(route, index=0):
    return json.loads(route.calls[index].request.content)


async def test_chat_streams_text_deltas(async_client, respx_mock):
    respx_mock.post(UPSTREAM_URL).mock(return_value=streaming(text_reply("Hel", "lo")))
    response = await post_chat(async_client, {"messages": [user("Hi")]})
    assert response["Content-Type"] == "text/event-stream"
    assert response["X-Vercel-AI-UI-Message-Stream"] == "v1"
    assert response["Cache-Control"] == "no-cache"
    assert response["X-Accel-Buffering"] == "no"
    events = parse_sse(await read_stream(response))
    assert types(events) == [
        "start",
        "start-step",
        "text-start",
        "text-delta",
        "text-delta",
        "text-end",
        "finish-step",
        "finish",
        "[DONE]",
    ]
    assert (
        "".join(e["delta"] for e in events if e != "[DONE]" and e["type"] == "text-delta")
        == "Hello"
    )


async def test_chat_finish_carries_reason_usage_and_timings(async_client, respx_mock):
    respx_mock.post(UPSTREAM_URL).mock(return_value=streaming(text_reply("x", finish="length")))
    finish = (await chat_events(async_client, {"messages": [user("Hi")], "model": "gpt-4o"}))[-2]
    assert finish["finishReason"] == "length"
    meta = finish["messageMetadata"]
    assert meta["model"] == "gpt-4o"
    assert meta["usage"]["inputTokens"] == 10
    assert meta["usage"]["outputTokens"] == 5
    assert meta["usage"]["totalTokens"] == 15
    assert meta["timings"]["totalMs"] >= meta["timings"]["timeToFirstTokenMs"] >= 0


async def test_chat_sends_history_system_prompt_tools_and_usage_option(async_client, respx_mock):
    route = respx_mock.post(UPSTREAM_URL).mock(return_value=streaming(text_reply("x")))
    await chat_events(async_client, {"messages": [user("Hi")], "model": "openai/gpt-4o-mini"})
    body = sent(route)
    assert body["model"] == "gpt-4o-mini"
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"][0]["role"] == "system"
    assert body["messages"][1] == {"role": "user", "content": "Hi"}
    names = [t["function"]["name"] for t in body["tools"]]
    assert names == ["generateForm", "generateChart", "generateCode", "generateCard"]
    assert route.calls[0].request.headers["authorization"] == "Bearer sk-test-key"


async def test_chat_puts_accepted_client_system_messages_after_the_agent_prompt(
    async_client, respx_mock
):
    await Agent.objects.filter(slug="main").aupdate(accept_client_system_messages=True)
    route = respx_mock.post(UPSTREAM_URL).mock(return_value=streaming(text_reply("x")))
    client_system = {"id": "s", "role": "system", "parts": [{"type": "text", "text": "Be terse."}]}
    await chat_events(async_client, {"messages": [client_system, user("Hi")]})
    assert sent(route)["messages"] == [
        {"role": "system", "content": "You are a test assistant."},
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Hi"},
    ]


async def test_chat_can_leave_out_stream_options(async_client, respx_mock, settings):
    settings.OPENAI_STREAM_USAGE = False
    route = respx_mock.post(UPSTREAM_URL).mock(return_value=streaming(text_reply("x")))
    await chat_events(async_client, {"messages": [user("Hi")]})
    assert "stream_options" not in sent(route)


async def test_chat_uses_default_model_when_none_given(async_client, respx_mock, settings):
    settings.OPENAI_DEFAULT_MODEL = "gpt-default"
    route = respx_mock.post(UPSTREAM_URL).mock(return_value=streaming(text_reply("x")))
    await chat_events(async_client, {"messages": [user("Hi")]})
    assert sent(route)["model"] == "gpt-default"


async def test_chat_tools_in_body_narrow_the_agent_tools(async_client, respx_mock):
    route = respx_mock.post(UPSTREAM_URL).mock(return_value=streaming(text_reply("x")))
    await chat_events(async_client, {"messages": [user("Hi")], "tools": ["generateChart"]})
    assert [t["function"]["name"] for t in sent(route)["tools"]] == ["generateChart"]


async def test_chat_empty_tools_list_sends_no_tools(async_client, respx_mock):
    route = respx_mock.post(UPSTREAM_URL).mock(return_value=streaming(text_reply("x")))
    await chat_events(async_client, {"messages": [user("Hi")], "tools": []})
    assert "tools" not in sent(route)


async def test_chat_display_tool_call_streams_output_and_calls_model_again(
    async_client, respx_mock
):
    route = respx_mock.post(UPSTREAM_URL).mock(
        side_effect=[
            streaming(tool_reply("generateChart", json.dumps(CHART), text="Sure.")),
            streaming(text_reply("Here it is.")),
        ]
    )
    events = await chat_events(async_client, {"messages": [user("chart please")]})
    assert types(events) == [
        "start",
        "start-step",
        "text-start",
        "text-delta",
        "text-end",
        "tool-input-start",
        "tool-input-delta",
        "tool-input-delta",
        "tool-input-available",
        "tool-output-available",
        "finish-step",
        "start-step",
        "text-start",
        "text-delta",
        "text-end",
        "finish-step",
        "finish",
        "[DONE]",
    ]
    output = next(e for e in events if e != "[DONE]" and e["type"] == "tool-output-available")
    assert output == {
        "type": "tool-output-available",
        "toolCallId": "call_1",
        "output": {"type": "chart", **CHART},
    }
    second = sent(route, 1)["messages"]
    assert second[-2]["role"] == "assistant"
    assert second[-2]["content"] == "Sure."
    assert second[-2]["tool_calls"][0]["function"]["name"] == "generateChart"
    assert second[-1] == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": orjson.dumps({"type": "chart", **CHART}).decode(),
    }
    assert events[-2]["finishReason"] == "stop"
    assert events[-2]["messageMetadata"]["usage"]["inputTokens"] == 20


async def test_chat_unparseable_tool_arguments_give_tool_input_error(async_client, respx_mock):
    route = respx_mock.post(UPSTREAM_URL).mock(
        side_effect=[
            streaming(tool_reply("generateChart", '{"chartType": ')),
            streaming(text_reply("Sorry.")),
        ]
    )
    events = await chat_events(async_client, {"messages": [user("chart")]})
    error = next(e for e in events if e != "[DONE]" and e["type"] == "tool-input-error")
    assert error["toolName"] == "generateChart"
    assert error["errorText"] == "The tool arguments are not valid JSON."
    second = sent(route, 1)["messages"]
    assert second[-2]["tool_calls"][0]["function"]["arguments"] == "{}"
    assert json.loads(second[-1]["content"]) == {"error": "The tool arguments are not valid JSON."}


async def test_chat_invalid_tool_input_gives_tool_output_error(async_client, respx_mock):
    bad = {"chartType": "donut", "title": "T", "data": []}
    respx_mock.post(UPSTREAM_URL).mock(
        side_effect=[
            streaming(tool_reply("generateChart", json.dumps(bad))),
            streaming(text_reply("Sorry.")),
        ]
    )
    events = await chat_events(async_client, {"messages": [user("chart")]})
    error = next(e for e in events if e != "[DONE]" and e["type"] == "tool-output-error")
    assert error["errorText"].startswith("Invalid input for generateChart: chartType")


async def test_chat_tool_not_offered_gives_tool_input_error(async_client, respx_mock):
    respx_mock.post(UPSTREAM_URL).mock(
        side_effect=[
            streaming(tool_reply("generateCode", '{"language":"py","code":"x"}')),
            streaming(text_reply("ok")),
        ]
    )
    events = await chat_events(async_client, {"messages": [user("x")], "tools": ["generateChart"]})
    error = next(e for e in events if e != "[DONE]" and e["type"] == "tool-input-error")
    assert error["errorText"] == "Tool 'generateCode' is not available."


async def test_chat_stops_after_max_steps(async_client, respx_mock, settings):
    settings.CHAT_MAX_STEPS = 2
    route = respx_mock.post(UPSTREAM_URL).mock(
        side_effect=lambda request: streaming(
            tool_reply("generateCode", '{"language":"py","code":"x"}')
        )
    )
    events = await chat_events(async_client, {"messages": [user("loop")]})
    assert route.call_count == 2
    assert types(events).count("start-step") == 2
    assert events[-2]["finishReason"] == "tool-calls"


async def test_chat_streams_reasoning_before_text(async_client, respx_mock):
    body = sse(
        chunk({"reasoning_content": "think"}), chunk({"content": "answer"}), chunk({}, "stop")
    )
    respx_mock.post(UPSTREAM_URL).mock(return_value=streaming(body))
    events = await chat_events(async_client, {"messages": [user("Hi")]})
    assert types(events)[2:8] == [
        "reasoning-start",
        "reasoning-delta",
        "reasoning-end",
        "text-start",
        "text-delta",
        "text-end",
    ]


async def test_chat_continues_last_assistant_message_id(async_client, respx_mock):
    respx_mock.post(UPSTREAM_URL).mock(return_value=streaming(text_reply("x")))
    assistant = {
        "id": "assistant-7",
        "role": "assistant",
        "parts": [
            {"type": "step-start"},
            {
                "type": "tool-generateCode",
                "toolCallId": "c1",
                "state": "output-available",
                "input": {"language": "py", "code": "x"},
                "output": {"type": "code"},
            },
        ],
    }
    events = await chat_events(async_client, {"messages": [user("Hi"), assistant]})
    assert events[0] == {"type": "start", "messageId": "assistant-7"}


async def test_chat_new_message_id_is_sdk_shaped(async_client, respx_mock):
    respx_mock.post(UPSTREAM_URL).mock(return_value=streaming(text_reply("x")))
    message_id = (await chat_events(async_client, {"messages": [user("Hi")]}))[0]["messageId"]
    assert len(message_id) == 16
    assert message_id.isalnum()


def test_new_message_ids_are_distinct_and_use_every_character_in_every_position():
    from chat.steps import ID_ALPHABET, new_message_id

    ids = [new_message_id() for _ in range(3000)]
    assert len(set(ids)) == len(ids)
    assert all(len(message_id) == 16 and message_id.isalnum() for message_id in ids)
    for position in (0, 7, 15):  # the last draws on the random number's top bits
        assert {message_id[position] for message_id in ids} == set(ID_ALPHABET)


async def test_chat_accepts_original_simple_form(async_client, respx_mock):
    route = respx_mock.post(UPSTREAM_URL).mock(return_value=streaming(text_reply("x")))
    body = {"messages": [{"role": "user", "content": "hello"}], "model": "gpt-4o"}
    await chat_events(async_client, body)
    assert sent(route)["messages"][-1] == {"role": "user", "content": "hello"}


async def test_chat_error_mid_stream_ends_with_safe_error_finish_and_done(async_client, respx_mock):
    body = (
        b'data: {"choices":[{"index":0,"delta":{"content":"Par"}}]}\n\n'
        b'data: {"error":{"message":"SECRET-PROVIDER-DETAIL","type":"server_error"}}\n\n'
    )
    respx_mock.post(UPSTREAM_URL).mock(return_value=streaming(body))
    response = await post_chat(async_client, {"messages": [user("Hi")]})
    raw = await read_stream(response)
    assert b"SECRET" not in raw
    events = parse_sse(raw)
    assert types(events) == [
        "start",
        "start-step",
        "text-start",
        "text-delta",
        "text-end",
        "finish-step",
        "error",
        "finish",
        "[DONE]",
    ]
    assert events[-3]["errorText"] == "The model provider reported an error during the reply."
    assert events[-2]["finishReason"] == "error"


async def test_chat_malformed_upstream_event_is_a_safe_error(async_client, respx_mock):
    respx_mock.post(UPSTREAM_URL).mock(return_value=streaming(b"data: {not json\n\n"))
    events = await chat_events(async_client, {"messages": [user("Hi")]})
    assert events[-3] == {
        "type": "error",
        "errorText": "The model provider sent a malformed reply.",
    }


async def test_chat_error_in_second_step_is_an_error_chunk(async_client, respx_mock):
    respx_mock.post(UPSTREAM_URL).mock(
        side_effect=[
            streaming(tool_reply("generateCode", '{"language":"py","code":"x"}')),
            httpx.Response(500, json={"error": {"message": "SECRET-PROVIDER-DETAIL"}}),
        ]
    )
    response = await post_chat(async_client, {"messages": [user("x")]})
    raw = await read_stream(response)
    assert b"SECRET" not in raw
    events = parse_sse(raw)
    assert types(events)[-3:] == ["error", "finish", "[DONE]"]
    assert events[-3]["errorText"] == "The model provider returned an error."


@pytest.mark.parametrize(
    ("status", "ours", "code"),
    [
        (400, 400, "INVALID_REQUEST"),
        (401, 502, "PROVIDER_ERROR"),
        (403, 502, "PROVIDER_ERROR"),
        (404, 404, "MODEL_NOT_FOUND"),
        (429, 429, "RATE_LIMITED"),
        (500, 502, "PROVIDER_ERROR"),
        (503, 503, "SERVICE_UNAVAILABLE"),
    ],
)
async def test_chat_upstream_error_before_stream_is_json(
    async_client, respx_mock, status, ours, code
):
    error = {"error": {"message": "SECRET-PROVIDER-DETAIL", "type": "x", "code": "some_code"}}
    respx_mock.post(UPSTREAM_URL).mock(
        return_value=httpx.Response(status, json=error, headers={"retry-after": "7"})
    )
    response = await post_chat(async_client, {"messages": [user("Hi")], "model": "gpt-4o"})
    assert response.status_code == ours
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["code"] == code
    assert body["request_id"] == response["X-Request-ID"]
    assert "SECRET" not in response.content.decode()
    if status == 429:
        assert response["Retry-After"] == "7"


async def test_chat_model_not_found_code_on_400_is_404(async_client, respx_mock):
    error = {"error": {"message": "nope", "code": "model_not_found"}}
    respx_mock.post(UPSTREAM_URL).mock(return_value=httpx.Response(400, json=error))
    response = await post_chat(async_client, {"messages": [user("Hi")], "model": "nope-1"})
    assert response.status_code == 404
    assert response.json()["detail"] == "Model 'nope-1' is not available from the provider."


@pytest.mark.parametrize(
    ("exception", "status", "code"),
    [
        (httpx.ConnectError("refused"), 503, "SERVICE_UNAVAILABLE"),
        (httpx.ReadTimeout("slow"), 504, "TIMEOUT"),
    ],
)
async def test_chat_upstream_unreachable_or_slow(async_client, respx_mock, exception, status, code):
    respx_mock.post(UPSTREAM_URL).mock(side_effect=exception)
    response = await post_chat(async_client, {"messages": [user("Hi")]})
    assert response.status_code == status
    assert response.json()["code"] == code


async def test_chat_model_outside_allowlist_is_404(async_client, settings):
    settings.MODELS_ALLOWED = ["gpt-4o"]
    response = await post_chat(async_client, {"messages": [user("Hi")], "model": "gpt-5"})
    assert response.status_code == 404
    assert response.json()["code"] == "MODEL_NOT_FOUND"


def going_quiet(closed):
    """A 200 stream that sends two chunks, then nothing; its closing is noted in `closed`."""

    class Body(httpx.AsyncByteStream):
        async def __aiter__(self):
            for delta in ({"role": "assistant", "content": ""}, {"content": "one "}):
                yield b"data: " + orjson.dumps(chunk(delta)) + b"\n\n"
            await asyncio.sleep(30)  # the model goes quiet
            yield b""

        async def aclose(self):
            closed.append(True)

    return httpx.Response(200, stream=Body(), headers={"content-type": "text/event-stream"})


@pytest.mark.parametrize("taken", [2, 4])  # at start-step; in the middle of the text
async def test_chat_closing_the_events_mid_step_closes_the_upstream(respx_mock, main_agent, taken):
    from agents.selectors import agent_get
    from chat import steps
    from chat.plans import plan_chat
    from chat.routing import routers
    from chat.schemas import ChatRequest
    from mamba_site.auth import ANONYMOUS

    closed = []
    respx_mock.post(UPSTREAM_URL).mock(return_value=going_quiet(closed))
    body = ChatRequest.model_validate({"messages": [user("hi")]})
    router = routers.get()
    agent = await agent_get(slug=None)
    plan = plan_chat(body=body, agent=agent, principal=ANONYMOUS, router=router)
    attempts = router.attempts(plan.route)
    first = await router.open_stream(attempts, plan.request_params(), deadline=time.monotonic() + 5)
    policy = steps.StepPolicy(first_byte_seconds=5, idle_seconds=60)
    run = steps.StepLoop(plan, router, policy, first, attempts)
    events = run.events()
    received = []
    while len(received) < taken:
        received += await anext(events)
    assert isinstance(received[0], p.Start)
    assert isinstance(received[1], p.StartStep)
    await events.aclose()  # as the stream does when its consumer goes away at a yield
    assert closed == [True]
    assert run.outcome == "error"


def sse_without_done(*chunks):
    return b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks)


def error_count(code):
    from mamba_site import metrics

    return metrics.upstream_errors.labels(code)._value.get()


def assert_ends_with_error(events, text):
    assert events[-3:] == [
        {"type": "error", "errorText": text},
        {"type": "finish", "finishReason": "error"},
        "[DONE]",
    ]
    opened = {e["id"] for e in events if e != "[DONE]" and e["type"] == "text-start"}
    closed = {e["id"] for e in events if e != "[DONE]" and e["type"] == "text-end"}
    assert opened == closed
    assert types(events).count("start-step") == types(events).count("finish-step")


@pytest.mark.parametrize(
    ("body", "text"),
    [
        # cut after content: no finish_reason, no [DONE]
        (
            sse_without_done(
                chunk({"role": "assistant", "content": ""}), chunk({"content": "Hal"})
            ),
            "The model provider's reply was cut off.",
        ),
        # cut before content
        (sse_without_done(chunk({"role": "assistant"})), "The model provider's reply was cut off."),
        # nothing at all but [DONE]
        (b"data: [DONE]\n\n", "The model provider sent an empty reply."),
        # a chunk that is JSON but not an object
        (b"data: [1, 2]\n\n", "The model provider sent a malformed reply."),
        (b'data: "text"\n\n', "The model provider sent a malformed reply."),
        (b"data: {broken\n\n", "The model provider sent a malformed reply."),
    ],
)
async def test_chat_provider_faults_end_with_a_truthful_error(async_client, respx_mock, body, text):
    respx_mock.post(UPSTREAM_URL).mock(return_value=streaming(body))
    before = error_count("PROVIDER_ERROR")
    events = await chat_events(async_client, {"messages": [user("Hi")], "model": "gpt-4o"})
    assert_ends_with_error(events, text)
    assert error_count("PROVIDER_ERROR") == before + 1


async def test_chat_finish_reason_without_done_is_a_complete_reply(async_client, respx_mock):
    body = sse_without_done(chunk({"content": "Hi"}), chunk({}, "stop"))
    respx_mock.post(UPSTREAM_URL).mock(return_value=streaming(body))
    events = await chat_events(async_client, {"messages": [user("Hi")], "model": "gpt-4o"})
    assert events[-2]["finishReason"] == "stop"


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, json={"choices": [{"message": {"content": "plain"}}]}),
        httpx.Response(200, content=b"<html>proxy</html>", headers={"content-type": "text/html"}),
    ],
)
async def test_chat_provider_answer_that_is_not_a_stream_is_502(async_client, respx_mock, response):
    respx_mock.post(UPSTREAM_URL).mock(return_value=response)
    before = error_count("PROVIDER_ERROR")
    reply = await post_chat(async_client, {"messages": [user("Hi")], "model": "gpt-4o"})
    assert reply.status_code == 502
    assert reply.json()["detail"] == "The model provider's reply was not a stream."
    assert error_count("PROVIDER_ERROR") == before + 1


async def test_chat_silent_provider_after_headers_ends_with_timeout(
    async_client, respx_mock, settings
):
    settings.CHAT_IDLE_TIMEOUT_SECONDS = 0.3

    class Silent(httpx.AsyncByteStream):
        async def __aiter__(self):
            yield b"data: " + orjson.dumps(chunk({"content": "Hi"})) + b"\n\n"
            await asyncio.sleep(30)
            yield b""

    respx_mock.post(UPSTREAM_URL).mock(
        return_value=httpx.Response(
            200, stream=Silent(), headers={"content-type": "text/event-stream"}
        )
    )
    events = await chat_events(async_client, {"messages": [user("Hi")], "model": "gpt-4o"})
    assert_ends_with_error(events, "The model took too long to answer.")


async def test_chat_first_byte_deadline_bounds_retries_after_429(
    async_client, respx_mock, settings
):
    settings.OPENAI_MAX_RETRIES = 5
    settings.CHAT_FIRST_BYTE_TIMEOUT_SECONDS = 1
    route = respx_mock.post(UPSTREAM_URL).mock(
        return_value=httpx.Response(429, headers={"retry-after": "10"}, json={"error": {}})
    )
    started = time.monotonic()
    reply = await post_chat(async_client, {"messages": [user("Hi")], "model": "gpt-4o"})
    assert reply.status_code == 429
    assert reply["Retry-After"] == "10"
    assert route.call_count == 1  # a Retry-After past the deadline is not waited for
    assert time.monotonic() - started < 1


async def test_chat_retries_transient_failures_within_the_deadline(
    async_client, respx_mock, settings
):
    settings.OPENAI_MAX_RETRIES = 2
    route = respx_mock.post(UPSTREAM_URL).mock(
        side_effect=[
            httpx.Response(503, json={"error": {}}),
            httpx.ConnectError("refused"),
            streaming(text_reply("Hi")),
        ]
    )
    events = await chat_events(async_client, {"messages": [user("Hi")], "model": "gpt-4o"})
    assert events[-2]["finishReason"] == "stop"
    assert route.call_count == 3


async def test_chat_disconnect_before_the_body_is_read_releases_everything(
    async_client, respx_mock
):
    from chat.streams import ChatStream

    closed = []
    respx_mock.post(UPSTREAM_URL).mock(return_value=going_quiet(closed))
    response = await post_chat(async_client, {"messages": [user("Hi")], "model": "gpt-4o"})
    assert isinstance(response._chat, ChatStream)
    response.close()  # what Django does when the client left before the first byte
    await asyncio.sleep(0.05)
    assert closed == [True]
    assert response._chat.steps.outcome == "disconnected"


async def test_chat_server_timing_shows_the_gateways_own_time(async_client, respx_mock):
    respx_mock.post(UPSTREAM_URL).mock(return_value=streaming(text_reply("Hi")))
    response = await post_chat(async_client, {"messages": [user("Hi")], "model": "gpt-4o"})
    await read_stream(response)
    timing = dict(part.strip().split(";dur=") for part in response["Server-Timing"].split(","))
    assert set(timing) == {"gateway", "upstream"}
    assert all(float(value) >= 0 for value in timing.values())

"""The real AI SDK client (ai 7.0.173 and ai 6.0.12) against daphne + the fake OpenAI upstream.

Each test sends one chat turn with `DefaultChatTransport` (tests/e2e/node/client.mjs), which
validates every chunk with the SDK's own schema, builds the final UIMessage with the SDK's
`readUIMessageStream`, and checks the SSE framing of the same bytes. See PROTOCOL.md §1-§7, §10.
"""

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ChatClient, FakeUpstreamProcess, Service

pytestmark = pytest.mark.e2e

SDKS = ["7", "6", "6.0.6"]
SECRET = "SECRET-PROVIDER-DETAIL"
LEAKS = (SECRET, "Traceback", 'File "/', "sk-fake")
DONE = "data: [DONE]"
KEEPALIVE = ": keep-alive"
CHART_INPUT = {
    "chartType": "bar",
    "title": "Fruit sales",
    "data": [{"label": "apples", "value": 10}, {"label": "pears", "value": 4}],
}
TOOL_FOLLOW_UP = "Done: the tool returned a result."
CONTENT_CHUNKS = re.compile(r"^(text|reasoning|tool)-")
FINAL_TOOL_CHUNKS = {"tool-output-available", "tool-output-error", "tool-input-error"}

# PROTOCOL.md §2, verbatim: the history of a real useChat body, with a display-tool call.
HISTORY: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "protocol_history.json").read_text()
)


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


# -- Shared checks -------------------------------------------------------------------------


def types(report: dict[str, Any]) -> list[str]:
    return [chunk["type"] for chunk in report["chunks"]]


def chunks_of(report: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [chunk for chunk in report["chunks"] if chunk["type"] == kind]


def parts_of(report: dict[str, Any], kind: str | None = None) -> list[dict[str, Any]]:
    parts = report["message"]["parts"]
    return [part for part in parts if kind is None or part["type"] == kind]


def assert_no_leak(report: dict[str, Any]) -> None:
    for needle in LEAKS:
        assert needle not in report["_stdout"], f"{needle!r} reached the client"


def assert_stream_ok(
    report: dict[str, Any], *, expect_error: bool = False, reset_steps: int = 0
) -> None:
    """The SDK accepted the stream, and it keeps the server rules of PROTOCOL.md §7 (with
    `reset_steps` replayed steps: the client forgets a reset step's blocks and tool calls)."""
    assert report["status"] == 200, report.get("rawBody")
    assert report["ok"], f"{report['error']}\n{report['processingErrors']}\n{report['framing']}"
    assert report["framing"] == {"ok": True, "problems": []}
    headers = report["headers"]
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert headers["cache-control"] == "no-cache"
    assert headers["x-accel-buffering"] == "no"
    assert "content-encoding" not in headers
    assert report["rawEvents"][-1] == DONE

    kinds = types(report)
    assert kinds[0] == "start", kinds
    assert kinds.count("start") == 1, kinds
    assert kinds[-1] == "finish", kinds
    assert kinds.count("finish") == 1, kinds
    assert kinds.count("reset-step") == reset_steps, kinds
    assert re.fullmatch(r"[A-Za-z0-9]{16}", report["chunks"][0]["messageId"])
    assert report["message"]["id"] == report["chunks"][0]["messageId"]
    if expect_error:
        assert kinds.count("error") == 1, kinds
        assert len(report["streamErrors"]) == 1
    else:
        assert "error" not in kinds, kinds
        assert "abort" not in kinds, kinds
        assert report["streamErrors"] == []

    in_step = False
    open_blocks: set[str] = set()
    open_tools: set[str] = set()
    for chunk in report["chunks"]:
        kind = chunk["type"]
        if kind == "start-step":
            assert not in_step, "start-step inside a step"
            in_step = True
        elif kind == "finish-step":
            assert in_step, "finish-step outside a step"
            assert not open_blocks, f"blocks still open at finish-step: {open_blocks}"
            in_step = False
        elif CONTENT_CHUNKS.match(kind):
            assert in_step, f"{kind} outside a step"
        if kind in ("text-start", "reasoning-start"):
            open_blocks.add(chunk["id"])
        elif kind in ("text-end", "reasoning-end"):
            open_blocks.remove(chunk["id"])
        elif kind == "tool-input-start":
            open_tools.add(chunk["toolCallId"])
        elif kind in FINAL_TOOL_CHUNKS:
            open_tools.discard(chunk["toolCallId"])
        elif kind == "reset-step":
            assert in_step, "reset-step outside a step"
            open_blocks.clear()
            open_tools.clear()
    assert not in_step, "a step was not finished"
    assert not open_blocks, f"text/reasoning blocks never ended: {open_blocks}"
    assert not open_tools, f"tool calls without an output or error: {open_tools}"

    for part in report["message"]["parts"]:
        assert part.get("state") not in ("streaming", "input-streaming", "input-available"), part
    assert_no_leak(report)


def request_id(report: dict[str, Any]) -> str:
    value = report["headers"]["x-request-id"]
    assert re.fullmatch(r"[0-9a-f-]{36}", value)
    return value


def assert_logged(service: Service, report: dict[str, Any], *needles: str) -> str:
    """The daphne log has a line with the response's request id (and the needles)."""
    rid = request_id(report)
    log = service.wait_for_log(rid, *needles)
    lines = [line for line in log.splitlines() if rid in line]
    assert any(all(n in line for n in needles) for line in lines), (rid, needles, log[-3000:])
    return log


def log_since(log: str, report: dict[str, Any]) -> str:
    """The log from this request's first line on."""
    return log[log.index(request_id(report)) :]


def assert_done_part(part: dict[str, Any], kind: str, text: str) -> None:
    assert part["type"] == kind
    assert part["text"] == text
    assert part["state"] == "done"


# -- Replies -------------------------------------------------------------------------------


@pytest.mark.parametrize("sdk", SDKS)
def test_plain_text_reply(
    sdk: str, chat: ChatClient, fake_upstream: FakeUpstreamProcess, service: Service
) -> None:
    report = chat(sdk=sdk, text="hello there, gateway")

    assert_stream_ok(report)
    kinds = types(report)
    assert kinds[:3] == ["start", "start-step", "text-start"], kinds
    assert kinds[-3:] == ["text-end", "finish-step", "finish"], kinds
    assert set(kinds[3:-3]) == {"text-delta"}, kinds
    finish = report["chunks"][-1]
    assert finish["finishReason"] == "stop"

    parts = parts_of(report)
    assert [p["type"] for p in parts] == ["step-start", "text"]
    assert_done_part(parts[1], "text", "Echo: hello there, gateway")

    metadata = report["message"]["metadata"]
    assert metadata == finish["messageMetadata"]
    assert metadata["model"] == "gpt-4o"
    assert metadata["usage"]["inputTokens"] > 0
    assert metadata["usage"]["outputTokens"] > 0
    assert metadata["timings"]["totalMs"] >= 0
    assert metadata["timings"]["timeToFirstTokenMs"] >= 0

    # What the transport sent (PROTOCOL §2), and what reached the provider.
    body = report["requestBody"]
    assert body["model"] == "gpt-4o"
    assert body["trigger"] == "submit-message"
    assert "messageId" not in body
    [upstream] = fake_upstream.requests()
    assert upstream["model"] == "gpt-4o"
    assert upstream["stream"] is True
    assert upstream["messages"][-1] == {"role": "user", "content": "hello there, gateway"}

    assert_logged(service, report, "POST /chat 200")
    log = assert_logged(service, report, "chat finished")
    assert "Traceback" not in log_since(log, report)


@pytest.mark.parametrize("sdk", SDKS)
def test_chart_tool_call_then_follow_up_step(
    sdk: str, chat: ChatClient, fake_upstream: FakeUpstreamProcess
) -> None:
    report = chat(sdk=sdk, text="Please draw a chart of the fruit sales.")

    assert_stream_ok(report)
    kinds = types(report)
    assert kinds.count("start-step") == 2, kinds
    assert kinds.count("finish-step") == 2, kinds
    tool_kinds = [k for k in kinds if k.startswith("tool-")]
    assert tool_kinds[0] == "tool-input-start"
    assert tool_kinds[-2:] == ["tool-input-available", "tool-output-available"], tool_kinds
    # The follow-up text is in its own step, after the tool result.
    second_step = kinds.index("start-step", kinds.index("start-step") + 1)
    assert kinds.index("tool-output-available") < kinds.index("finish-step") < second_step
    assert "text-delta" in kinds[second_step:]
    assert report["chunks"][-1]["finishReason"] == "stop"
    assert report["message"]["metadata"]["steps"] == 2

    parts = parts_of(report)
    assert [p["type"] for p in parts] == [
        "step-start",
        "text",
        "tool-generateChart",
        "step-start",
        "text",
    ]
    assert_done_part(parts[1], "text", "Here is the chart.")
    chart = parts[2]
    assert chart["state"] == "output-available"
    assert chart["toolCallId"] == "call_chart_1"
    assert chart["input"] == CHART_INPUT
    assert chart["output"] == {"type": "chart", **CHART_INPUT}
    assert "dynamic" not in chart_chunk_keys(report)
    assert_done_part(parts[4], "text", TOOL_FOLLOW_UP)

    first, second = fake_upstream.requests()
    functions = {t["function"]["name"]: t["function"] for t in first["tools"]}
    assert set(functions) == {"generateForm", "generateChart", "generateCode", "generateCard"}
    # PROTOCOL §10: the model is not asked for `type`; the server adds it to the output.
    assert "type" not in functions["generateChart"]["parameters"]["properties"]
    assistant, tool = second["messages"][-2:]
    assert assistant["role"] == "assistant"
    assert assistant["content"] == "Here is the chart."
    [call] = assistant["tool_calls"]
    assert call["id"] == "call_chart_1"
    assert call["type"] == "function"
    assert call["function"]["name"] == "generateChart"
    assert json.loads(call["function"]["arguments"]) == CHART_INPUT
    assert tool["role"] == "tool"
    assert tool["tool_call_id"] == "call_chart_1"
    assert json.loads(tool["content"]) == {"type": "chart", **CHART_INPUT}


def chart_chunk_keys(report: dict[str, Any]) -> set[str]:
    return {key for chunk in report["chunks"] if chunk["type"].startswith("tool-") for key in chunk}


@pytest.mark.parametrize("sdk", SDKS)
def test_two_parallel_tools(sdk: str, chat: ChatClient, fake_upstream: FakeUpstreamProcess) -> None:
    report = chat(sdk=sdk, text="two-tools please")

    assert_stream_ok(report)
    code, card = parts_of(report, "tool-generateCode"), parts_of(report, "tool-generateCard")
    assert len(code) == 1
    assert len(card) == 1
    assert code[0]["state"] == "output-available"
    assert card[0]["state"] == "output-available"
    assert code[0]["output"] == {"type": "code", "language": "python", "code": "print(1)"}
    assert card[0]["output"] == {"type": "card", "title": "Card", "description": "A card"}
    assert [p["type"] for p in parts_of(report)][-2:] == ["step-start", "text"]

    _, second = fake_upstream.requests()
    assistant, *tools = second["messages"][-3:]
    assert [c["id"] for c in assistant["tool_calls"]] == ["call_code_1", "call_card_1"]
    assert [t["tool_call_id"] for t in tools] == ["call_code_1", "call_card_1"]


@pytest.mark.parametrize("keyword", ["reason", "reasoning-field"])
@pytest.mark.parametrize("sdk", SDKS)
def test_reasoning_then_text(sdk: str, keyword: str, chat: ChatClient) -> None:
    report = chat(sdk=sdk, text=f"{keyword} about it")

    assert_stream_ok(report)
    parts = parts_of(report)
    assert [p["type"] for p in parts] == ["step-start", "reasoning", "text"]
    assert_done_part(parts[1], "reasoning", "Let me think. The user wants an answer.")
    assert_done_part(parts[2], "text", "The answer is 42.")
    kinds = types(report)
    assert kinds.index("reasoning-end") < kinds.index("text-start")


@pytest.mark.parametrize("sdk", SDKS)
def test_bad_tool_arguments_end_in_output_error(
    sdk: str, chat: ChatClient, fake_upstream: FakeUpstreamProcess
) -> None:
    report = chat(sdk=sdk, text="badargs chart")

    assert_stream_ok(report)
    [part] = parts_of(report, "tool-generateChart")
    assert part["state"] == "output-error"
    assert part["errorText"]
    assert report["chunks"][-1]["finishReason"] == "stop"

    # The model is told about the failure with a valid call and an error result.
    _, second = fake_upstream.requests()
    assistant, tool = second["messages"][-2:]
    json.loads(assistant["tool_calls"][0]["function"]["arguments"])
    assert tool["tool_call_id"] == "call_badargs_1"
    assert "error" in json.loads(tool["content"])


@pytest.mark.parametrize("sdk", SDKS)
def test_invalid_chart_is_a_tool_error(sdk: str, chat: ChatClient) -> None:
    report = chat(sdk=sdk, text="invalid-chart now")

    assert_stream_ok(report)
    [part] = parts_of(report, "tool-generateChart")
    assert part["state"] == "output-error"
    assert "chartType" in part["errorText"]
    assert "output" not in part
    assert SECRET not in part["errorText"]


@pytest.mark.parametrize("sdk", SDKS)
def test_length_finish_reason(sdk: str, chat: ChatClient) -> None:
    report = chat(sdk=sdk, text="length test")

    assert_stream_ok(report)
    assert report["chunks"][-1]["finishReason"] == "length"
    assert_done_part(parts_of(report, "text")[0], "text", "Truncated")


@pytest.mark.parametrize("sdk", SDKS)
def test_history_with_tool_parts_is_converted(
    sdk: str, chat: ChatClient, fake_upstream: FakeUpstreamProcess
) -> None:
    report = chat(sdk=sdk, messages=HISTORY, body={"model": "gpt-4o-mini"}, text="Thanks!")

    assert_stream_ok(report)
    assert report["requestBody"]["messages"][:3] == HISTORY
    [upstream] = fake_upstream.requests()
    system, *rest = upstream["messages"]
    assert system["role"] == "system"
    chart = HISTORY[1]["parts"][2]
    # PROTOCOL §4: the verified conversion, with compact JSON arguments and content.
    assert rest == [
        {"role": "user", "content": "Make a bar chart of fruit sales: apples 10, pears 4."},
        {
            "role": "assistant",
            "content": "Sure, I will draw that chart.",
            "tool_calls": [
                {
                    "id": "call_0001",
                    "type": "function",
                    "function": {"name": "generateChart", "arguments": compact(chart["input"])},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_0001", "content": compact(chart["output"])},
        {"role": "assistant", "content": "Here is your bar chart."},
        {
            "role": "user",
            "content": "What is the exact title of the chart you made? Reply with the title only.",
        },
        {"role": "user", "content": "Thanks!"},
    ]


# -- Errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "status", "code"),
    [
        ("missing-model", 404, "MODEL_NOT_FOUND"),
        ("error-401", 502, "PROVIDER_ERROR"),
        ("error-429", 429, "RATE_LIMITED"),
        ("error-500", 502, "PROVIDER_ERROR"),
        ("error-400", 400, "INVALID_REQUEST"),
        ("error-403", 502, "PROVIDER_ERROR"),
        ("error-503", 503, "SERVICE_UNAVAILABLE"),
    ],
)
@pytest.mark.parametrize("sdk", SDKS)
def test_error_before_the_stream_is_an_http_error(
    sdk: str, model: str, status: int, code: str, chat: ChatClient, service: Service
) -> None:
    report = chat(sdk=sdk, body={"model": model}, text="hello")

    assert report["status"] == status
    assert not report["ok"]
    assert report["chunks"] == []
    assert report["headers"]["content-type"].startswith("application/json")
    body = json.loads(report["rawBody"])
    assert body["code"] == code
    assert body["detail"]
    assert body["request_id"] == request_id(report)
    # The SDK surfaces the response body as the error message (PROTOCOL §2).
    assert report["error"] == report["rawBody"]
    if sdk == "7":
        assert report["errorName"] == "AI_APICallError"
        assert report["statusCode"] == status
    if status == 429:
        assert report["headers"]["retry-after"] == "7"
    assert_no_leak(report)
    assert_logged(service, report, f"POST /chat {status}")


@pytest.mark.parametrize("keyword", ["midstream-error", "stream-error-event"])
@pytest.mark.parametrize("sdk", SDKS)
def test_error_after_the_stream_started(
    sdk: str, keyword: str, chat: ChatClient, service: Service
) -> None:
    report = chat(sdk=sdk, text=keyword)

    assert_stream_ok(report, expect_error=True)
    [error] = chunks_of(report, "error")
    assert error["errorText"] == report["streamErrors"][0]
    assert error["errorText"].strip()
    assert "overloaded" not in error["errorText"]  # the provider's own words stay out
    # The partial answer stays on screen, closed.
    [text] = parts_of(report, "text")
    assert text["text"].startswith("Partial")
    assert text["state"] == "done"
    assert report["rawEvents"][-1] == DONE
    log = assert_logged(service, report, "chat error")
    assert SECRET not in error["errorText"]
    assert "Traceback" not in log_since(log, report)


@pytest.mark.parametrize("sdk", SDKS)
def test_slow_first_token_gets_keepalives(sdk: str, chat: ChatClient) -> None:
    report = chat(sdk=sdk, text="slow:2 please")

    assert_stream_ok(report)
    events, times = report["rawEvents"], report["rawEventTimesMs"]
    first_text = next(i for i, e in enumerate(events) if '"type":"text-start"' in e)
    keepalives = [i for i in range(first_text) if events[i] == KEEPALIVE]
    assert len(keepalives) >= 2, events[: first_text + 1]
    # They arrive while the model is silent, not in one batch with the answer.
    assert times[keepalives[0]] < times[first_text] - 1000, times
    assert_done_part(parts_of(report, "text")[0], "text", "Echo: slow:2 please")


@pytest.fixture(scope="module")
def idle_timeout_run(
    node_client: Path, service: Service, fake_upstream: FakeUpstreamProcess
) -> dict[str, Any]:
    """One request to a model that never answers, which takes the whole idle timeout (5 s),
    so it is made once (with the stricter ai 6.0.12) for the tests below."""
    fake_upstream.reset()
    report = ChatClient(node_client, service)(sdk="6", text="hang")
    held, state, _ = fake_upstream.wait_for(lambda s: s["disconnects"] >= 1, timeout=2.0)
    return {"report": report, "upstream_closed": held, "upstream": state}


def test_silent_model_hits_the_idle_timeout(idle_timeout_run: dict[str, Any]) -> None:
    report = idle_timeout_run["report"]

    assert_stream_ok(report, expect_error=True)
    [error] = chunks_of(report, "error")
    assert error["errorText"] == "The model took too long to answer."
    assert report["chunks"][-1]["finishReason"] == "error"
    assert 4500 <= report["elapsedMs"] < 10000
    assert report["rawEvents"].count(KEEPALIVE) >= 5
    state = idle_timeout_run["upstream"]
    assert idle_timeout_run["upstream_closed"], f"upstream left open after the timeout: {state}"


def test_idle_timeout_is_not_logged_as_a_client_disconnect(
    idle_timeout_run: dict[str, Any], service: Service
) -> None:
    report = idle_timeout_run["report"]
    rid = request_id(report)
    log = service.wait_for_log(rid, "model=")
    lines = [line for line in log.splitlines() if rid in line]
    assert any("timeout" in line.lower() for line in lines), lines
    # The client stayed until the end: the outcome must not blame it.
    wrong = [line for line in lines if "disconnected" in line.lower()]
    assert not wrong, "a server-side idle timeout is logged as a client disconnect:\n" + "\n".join(
        wrong
    )


@pytest.mark.parametrize(
    ("text", "abort_after_ms"),
    [("hang", 500), ("drip:50", 700)],
    ids=["before-first-token", "mid-stream"],
)
@pytest.mark.parametrize("sdk", SDKS)
def test_client_disconnect_closes_the_upstream(
    sdk: str,
    text: str,
    abort_after_ms: int,
    chat: ChatClient,
    fake_upstream: FakeUpstreamProcess,
    service: Service,
) -> None:
    report = chat(sdk=sdk, text=text, abort_after_ms=abort_after_ms)
    aborted_at = time.monotonic()

    assert report["aborted"] is True, report
    assert report["status"] == 200
    if text.startswith("drip"):
        assert "text-delta" in [c["type"] for c in report["chunks"]], report["chunks"]
    held, state, _ = fake_upstream.wait_for(
        lambda s: s["disconnects"] >= 1, timeout=2.0 - (time.monotonic() - aborted_at)
    )
    assert held, f"the upstream was not disconnected within 2 s: {state}"
    assert state["completed"] == 0
    assert len(state["requests"]) == 1
    log = assert_logged(service, report, "chat disconnected")
    assert "Traceback" not in log_since(log, report)


@pytest.mark.parametrize("sdk", SDKS)
def test_offline_mock_model_renders_a_chart(
    sdk: str, chat: ChatClient, fake_upstream: FakeUpstreamProcess
) -> None:
    report = chat(sdk=sdk, body={"model": "mock/echo"}, text="Show me a chart, please.")

    assert_stream_ok(report)
    [chart] = parts_of(report, "tool-generateChart")
    assert chart["state"] == "output-available"
    assert chart["output"]["type"] == "chart"
    assert chart["output"]["chartType"] in ("line", "bar", "pie", "area")
    assert chart["output"]["data"]
    assert all(
        isinstance(p["label"], str) and isinstance(p["value"], int | float)
        for p in chart["output"]["data"]
    )
    assert [p["type"] for p in parts_of(report)][-2:] == ["step-start", "text"]
    assert report["message"]["metadata"]["model"] == "mock/echo"
    assert fake_upstream.requests() == []

import json
import re

import pytest

from agents.models import Agent, Note
from tests.chat.conftest import (
    API_APPS,
    UPSTREAM_URL,
    parse_sse,
    read_stream,
    streaming,
    text_reply,
    tool_reply,
    user,
)

pytestmark = [
    pytest.mark.django_db(transaction=True, available_apps=API_APPS),
    pytest.mark.usefixtures("seeded_agents"),
]


async def chat(async_client, body):
    response = await async_client.post("/chat", body, content_type="application/json")
    assert response.status_code == 200, response.content
    return [e for e in parse_sse(await read_stream(response)) if e != "[DONE]"]


def sent(route, index=0):
    return json.loads(route.calls[index].request.content)


def of_type(events, kind):
    return [e for e in events if e["type"] == kind]


@pytest.mark.parametrize(
    ("slug", "tools"),
    [
        ("main", ["generateForm", "generateChart", "generateCode", "generateCard"]),
        ("research", ["search_notes", "generateCard", "generateChart"]),
        ("code_review", ["analyze_complexity", "generateCode"]),
    ],
)
async def test_chat_runs_each_seeded_agent_with_its_prompt_and_tools(
    async_client, respx_mock, slug, tools
):
    route = respx_mock.post(UPSTREAM_URL).mock(return_value=streaming(text_reply("Hi")))
    events = await chat(async_client, {"messages": [user("Hello")], "agent": slug})
    body = sent(route)
    agent = await Agent.objects.aget(slug=slug)
    assert body["messages"][0] == {"role": "system", "content": agent.system_prompt}
    assert [t["function"]["name"] for t in body["tools"]] == tools
    assert events[-1]["messageMetadata"]["agent"] == slug
    if agent.temperature is not None:
        assert body["temperature"] == agent.temperature


async def test_chat_research_agent_searches_notes_and_answers_in_a_second_step(
    async_client, respx_mock
):
    await Note.objects.acreate(
        title="Probe policy",
        body="Liveness probes never call the model provider.",
        tags="ops",
        source_url="https://wiki.test/probes",
    )
    route = respx_mock.post(UPSTREAM_URL).mock(
        side_effect=[
            streaming(tool_reply("search_notes", '{"query": "liveness probes"}')),
            streaming(text_reply("Per Probe policy, liveness never calls the provider.")),
        ]
    )
    events = await chat(
        async_client, {"messages": [user("What about probes?")], "agent": "research"}
    )
    [output] = of_type(events, "tool-output-available")
    assert output["output"]["count"] == 1
    assert output["output"]["results"][0]["title"] == "Probe policy"
    assert output["output"]["results"][0]["source_url"] == "https://wiki.test/probes"
    assert [e["type"] for e in events].count("start-step") == 2
    tool_message = sent(route, 1)["messages"][-1]
    assert tool_message["role"] == "tool"
    assert json.loads(tool_message["content"])["results"][0]["title"] == "Probe policy"
    assert events[-1]["finishReason"] == "stop"


async def test_chat_code_review_agent_measures_code(async_client, respx_mock):
    code = "def f(x):\n    if x:\n        return 1\n    return 2\n"
    arguments = json.dumps({"code": code, "language": "python"})
    respx_mock.post(UPSTREAM_URL).mock(
        side_effect=[
            streaming(tool_reply("analyze_complexity", arguments)),
            streaming(text_reply("f has complexity 2.")),
        ]
    )
    events = await chat(async_client, {"messages": [user("Review")], "agent": "code_review"})
    [output] = of_type(events, "tool-output-available")
    assert output["output"]["functions"][0]["complexity"] == 2


async def test_chat_server_tool_syntax_error_is_tool_output_error(async_client, respx_mock):
    arguments = json.dumps({"code": "def broken(:", "language": "python"})
    route = respx_mock.post(UPSTREAM_URL).mock(
        side_effect=[
            streaming(tool_reply("analyze_complexity", arguments)),
            streaming(text_reply("The code does not parse.")),
        ]
    )
    events = await chat(async_client, {"messages": [user("Review")], "agent": "code_review"})
    [error] = of_type(events, "tool-output-error")
    assert error["errorText"].startswith("Python syntax error at line 1")
    assert "error" in json.loads(sent(route, 1)["messages"][-1]["content"])


async def test_chat_tool_output_over_the_size_limit_is_an_error(async_client, respx_mock, settings):
    settings.TOOLS_MAX_OUTPUT_BYTES = 50
    arguments = json.dumps({"code": "def f():\n    return 1\n"})
    respx_mock.post(UPSTREAM_URL).mock(
        side_effect=[
            streaming(tool_reply("analyze_complexity", arguments)),
            streaming(text_reply("ok")),
        ]
    )
    events = await chat(async_client, {"messages": [user("Review")], "agent": "code_review"})
    [error] = of_type(events, "tool-output-error")
    assert error["errorText"] == "Tool 'analyze_complexity' returned more than 50 bytes."


async def test_chat_display_tool_output_has_no_size_limit(async_client, respx_mock, settings):
    code = "x = 1  # a long line of generated code\n" * 2700
    assert len(code) > 100_000 > settings.TOOLS_MAX_OUTPUT_BYTES
    arguments = json.dumps({"language": "python", "code": code})
    route = respx_mock.post(UPSTREAM_URL).mock(
        side_effect=[
            streaming(tool_reply("generateCode", arguments)),
            streaming(text_reply("Here it is.")),
        ]
    )
    events = await chat(async_client, {"messages": [user("Write it")]})
    assert of_type(events, "tool-output-error") == []
    [output] = of_type(events, "tool-output-available")
    assert output["output"] == {"type": "code", "language": "python", "code": code}
    assert json.loads(sent(route, 1)["messages"][-1]["content"])["code"] == code


async def test_chat_server_tool_output_over_the_default_limit_is_an_error(
    async_client, respx_mock, settings
):
    code = "".join(f"def f{i}(x):\n    return x\n" for i in range(600))
    arguments = json.dumps({"code": code, "language": "python"})
    respx_mock.post(UPSTREAM_URL).mock(
        side_effect=[
            streaming(tool_reply("analyze_complexity", arguments)),
            streaming(text_reply("ok")),
        ]
    )
    events = await chat(async_client, {"messages": [user("Review")], "agent": "code_review"})
    [error] = of_type(events, "tool-output-error")
    limit = settings.TOOLS_MAX_OUTPUT_BYTES
    assert error["errorText"] == f"Tool 'analyze_complexity' returned more than {limit} bytes."


async def test_chat_tool_over_the_time_limit_is_an_error(async_client, respx_mock, settings):
    settings.TOOLS_TIMEOUT_SECONDS = 0.001
    big = "\n".join(f"def f{i}(x):\n    return x and {i}" for i in range(2500))
    arguments = json.dumps({"code": big})
    respx_mock.post(UPSTREAM_URL).mock(
        side_effect=[
            streaming(tool_reply("analyze_complexity", arguments)),
            streaming(text_reply("ok")),
        ]
    )
    events = await chat(async_client, {"messages": [user("Review")], "agent": "code_review"})
    [error] = of_type(events, "tool-output-error")
    assert error["errorText"] == "Tool 'analyze_complexity' took longer than 0.001 s."


async def test_chat_pinned_model_wins_over_request(async_client, respx_mock):
    await Agent.objects.filter(slug="research").aupdate(model="gpt-4o-mini")
    route = respx_mock.post(UPSTREAM_URL).mock(return_value=streaming(text_reply("x")))
    body = {"messages": [user("x")], "agent": "research", "model": "gpt-4o"}
    await chat(async_client, body)
    assert sent(route)["model"] == "gpt-4o-mini"


async def test_chat_tools_can_only_narrow_the_agent_tools(async_client):
    body = {"messages": [user("x")], "agent": "research", "tools": ["generateForm"]}
    response = await async_client.post("/chat", body, content_type="application/json")
    assert response.status_code == 400
    assert "generateForm" in response.json()["detail"]


async def test_chat_disabled_agent_is_404(async_client):
    await Agent.objects.filter(slug="code_review").aupdate(enabled=False)
    body = {"messages": [user("x")], "agent": "code_review"}
    response = await async_client.post("/chat", body, content_type="application/json")
    assert response.status_code == 404
    assert response.json()["code"] == "AGENT_NOT_FOUND"
    assert "available_agents" not in response.json()
    assert not {"main", "research"} & set(re.findall(r"\w+", response.json()["detail"]))


async def test_chat_max_steps_of_agent_wins_over_setting(async_client, respx_mock):
    await Agent.objects.filter(slug="main").aupdate(max_steps=1)
    route = respx_mock.post(UPSTREAM_URL).mock(
        return_value=streaming(tool_reply("generateCode", '{"language":"py","code":"x"}'))
    )
    events = await chat(async_client, {"messages": [user("x")]})
    assert route.call_count == 1
    assert events[-1]["finishReason"] == "tool-calls"


async def test_models_lists_enabled_agents(async_client):
    await Agent.objects.filter(slug="code_review").aupdate(enabled=False)
    agents = (await async_client.get("/models")).json()["agents"]
    assert [a["slug"] for a in agents] == ["main", "research"]
    assert agents[1]["tools"] == ["search_notes", "generateCard", "generateChart"]
    assert agents[1]["name"] == "Research"


@pytest.mark.parametrize("param", ["max_tokens", "max_completion_tokens"])
async def test_chat_sends_the_agent_output_limit_under_the_configured_name(
    async_client, respx_mock, settings, param
):
    settings.OPENAI_MAX_TOKENS_PARAM = param
    await Agent.objects.filter(slug="main").aupdate(max_output_tokens=321)
    route = respx_mock.post(UPSTREAM_URL).mock(return_value=streaming(text_reply("x")))
    await chat(async_client, {"messages": [user("x")]})
    body = sent(route)
    assert body[param] == 321
    other = ({"max_tokens", "max_completion_tokens"} - {param}).pop()
    assert other not in body

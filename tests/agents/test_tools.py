import pytest

from agents.tools import REGISTRY, ToolInputInvalid, tool_get

CHART = {"chartType": "bar", "title": "T", "data": [{"label": "a", "value": 1.5}]}


async def run(name, arguments):
    tool = tool_get(name=name)
    return await tool.execute(tool.validate(arguments))


def test_tools_registers_display_and_server_tools():
    display = {"generateForm", "generateChart", "generateCode", "generateCard"}
    assert {name for name, tool in REGISTRY.items() if tool.kind == "display"} == display
    assert {name for name, tool in REGISTRY.items() if tool.kind == "server"} == {
        "search_notes",
        "analyze_complexity",
    }


@pytest.mark.parametrize("name", ["generateForm", "generateChart", "generateCode", "generateCard"])
def test_tools_parameters_are_inlined_objects_without_type_key(name):
    schema = tool_get(name=name).parameters
    assert schema["type"] == "object"
    assert "type" not in schema["properties"]
    assert "$defs" not in schema
    assert "$ref" not in str(schema)
    assert "title" not in schema


async def test_tools_chart_output_carries_type_and_input():
    assert await run("generateChart", CHART) == {"type": "chart", **CHART}


async def test_tools_drop_null_optional_keys():
    output = await run("generateCode", {"language": "py", "code": "x", "filename": None})
    assert output == {"type": "code", "language": "py", "code": "x"}


async def test_tools_keep_integer_values_integral():
    output = await run("generateChart", {**CHART, "data": [{"label": "a", "value": 10}]})
    assert output["data"][0]["value"] == 10
    assert isinstance(output["data"][0]["value"], int)


async def test_tools_form_and_card_outputs():
    form = {
        "title": "Sign up",
        "fields": [
            {"id": "email", "type": "email", "label": "Email", "required": True},
            {
                "id": "plan",
                "type": "select",
                "label": "Plan",
                "options": [{"label": "Free", "value": "free"}],
            },
        ],
    }
    assert (await run("generateForm", form))["type"] == "form"
    card = {
        "title": "C",
        "media": {"type": "image", "url": "https://x.test/a.png"},
        "actions": [{"label": "Go", "action": "go", "variant": "outline"}],
    }
    assert await run("generateCard", card) == {"type": "card", **card}


def test_tools_invalid_input_names_fields_without_echoing_values():
    tool = tool_get(name="generateChart")
    with pytest.raises(ToolInputInvalid) as caught:
        tool.validate(
            {"chartType": "donut", "title": "T", "data": [{"label": "a", "value": "SECRETX"}]}
        )
    message = str(caught.value)
    assert "chartType" in message
    assert "data.0.value" in message
    assert "SECRETX" not in message


def test_tools_unknown_name_is_none():
    assert tool_get(name="launchMissiles") is None

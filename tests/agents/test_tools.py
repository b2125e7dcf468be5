import pytest

from agents.tools import DISPLAY_TOOLS, REGISTRY, ToolInputInvalid, tool_get
from tests.agents.schema_examples import example, object_schemas, schema_nodes

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


TOOL_NAMES = sorted(REGISTRY)


@pytest.mark.parametrize("name", TOOL_NAMES)
def test_tools_spec_requires_only_declared_properties(name):
    parameters = REGISTRY[name].spec["function"]["parameters"]
    assert "$ref" not in str(parameters)
    schemas = list(object_schemas(parameters))
    assert schemas
    for path, schema in schemas:
        missing = set(schema.get("required", ())) - set(schema.get("properties", {}))
        assert not missing, f"{name} {path}: required {sorted(missing)} not in properties"


@pytest.mark.parametrize("name", TOOL_NAMES)
@pytest.mark.parametrize("full", [False, True], ids=["minimal", "maximal"])
def test_tools_accept_arguments_generated_from_their_spec(name, full):
    tool = REGISTRY[name]
    arguments = example(tool.spec["function"]["parameters"], full=full)
    validated = tool.validate(arguments)
    assert validated.model_dump(exclude_unset=True) == arguments


@pytest.mark.parametrize("name", sorted(t.name for t in DISPLAY_TOOLS))
async def test_tools_display_output_is_the_generated_arguments_with_a_type(name):
    tool = REGISTRY[name]
    arguments = example(tool.spec["function"]["parameters"], full=True)
    output = await tool.execute(tool.validate(arguments))
    assert output == {"type": output["type"], **arguments}


@pytest.mark.parametrize("name", ["generateChart", "generateForm", "generateCard"])
def test_tools_keep_a_property_named_title(name):
    parameters = tool_get(name=name).parameters
    assert parameters["properties"]["title"] == {"type": "string"}
    assert "title" in parameters["required"]


def test_tools_keep_a_property_named_required():
    field = tool_get(name="generateForm").parameters["properties"]["fields"]["items"]
    assert field["properties"]["required"]["anyOf"] == [{"type": "boolean"}, {"type": "null"}]
    assert field["required"] == ["id", "type", "label"]


def test_tools_spec_has_no_title_annotations():
    for tool in REGISTRY.values():
        titled = [path for path, node in schema_nodes(tool.parameters) if "title" in node]
        assert titled == [], tool.name


def test_tools_only_server_tools_have_an_output_limit():
    assert {name for name, tool in REGISTRY.items() if tool.output_limited} == {
        "search_notes",
        "analyze_complexity",
    }

"""Arguments a model could send, generated from a tool's JSON Schema (as sent upstream).

Only the keywords listed here are understood; any other validation keyword fails loudly, so a
schema that grows one (a `pattern`, a `format`) makes the tests extend this, not skip it.
"""

from typing import Any

ANNOTATIONS = {"description", "default", "examples", "title"}
UNDERSTOOD = ANNOTATIONS | {
    "type",
    "enum",
    "const",
    "anyOf",
    "oneOf",
    "allOf",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
}
STRING_FILL = "example text"


def schema_nodes(schema: Any, path: str = "$"):
    """Every schema inside `schema` (itself included), with its path: through properties,
    items, anyOf/oneOf/allOf and additionalProperties."""
    if not isinstance(schema, dict):
        return
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from schema_nodes(sub, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        yield from schema_nodes(schema.get(key), f"{path}[{key}]")
    for key in ("anyOf", "oneOf", "allOf"):
        for index, sub in enumerate(schema.get(key, ())):
            yield from schema_nodes(sub, f"{path}.{key}[{index}]")


def object_schemas(schema: Any):
    for path, node in schema_nodes(schema):
        if node.get("type") == "object" or "properties" in node or "required" in node:
            yield path, node


def example(schema: dict[str, Any], *, full: bool) -> Any:
    """A value valid for `schema`: with `full`, every property and the largest allowed sizes
    and numbers; without, only required properties and the smallest allowed."""
    unknown = set(schema) - UNDERSTOOD
    if unknown:
        raise NotImplementedError(f"schema keywords not handled: {sorted(unknown)}")
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][-1 if full else 0]
    if "allOf" in schema:
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for sub in schema["allOf"]:
            merged.update(sub)
        return example(merged, full=full)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            # A value, not null, when the schema allows one: that is what exercises validation.
            branches = [b for b in schema[key] if b.get("type") != "null"] or schema[key]
            return example(branches[0], full=full)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    generate = GENERATORS.get(kind)
    if generate is None:
        raise NotImplementedError(f"schema type not handled: {kind!r}")
    return generate(schema, full)


def _object(schema: dict[str, Any], full: bool) -> dict[str, Any]:
    properties = schema.get("properties", {})
    names = list(properties) if full else schema.get("required", [])
    missing = [name for name in names if name not in properties]
    if missing:
        raise AssertionError(f"required but not in properties: {missing}")
    return {name: example(properties[name], full=full) for name in names}


def _array(schema: dict[str, Any], full: bool) -> list[Any]:
    low = schema.get("minItems", 0)
    count = max(low, 2) if full else low
    count = min(count, schema.get("maxItems", count))
    return [example(schema.get("items", {"type": "string"}), full=full) for _ in range(count)]


def _string(schema: dict[str, Any], full: bool) -> str:
    low, high = schema.get("minLength", 0), schema.get("maxLength")
    if not full:
        return STRING_FILL[:low] if low <= len(STRING_FILL) else "x" * low
    length = high if high is not None else max(low, len(STRING_FILL))
    return (STRING_FILL * (length // len(STRING_FILL) + 1))[:length]


def _number(schema: dict[str, Any], full: bool, default: float) -> float:
    low, high = schema.get("minimum"), schema.get("maximum")
    if full:
        return high if high is not None else max(default, low if low is not None else default)
    return low if low is not None else min(default, high if high is not None else default)


GENERATORS = {
    "object": _object,
    "array": _array,
    "string": _string,
    "integer": lambda schema, full: int(_number(schema, full, 7 if full else 0)),
    "number": lambda schema, full: float(_number(schema, full, 2.5 if full else 0.5)),
    "boolean": lambda schema, full: full,
    "null": lambda schema, full: None,
}

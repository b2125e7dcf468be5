import pytest

from chat.openapi import ERRORS, openapi_document
from mamba_site import errors

ERROR_REF = "#/components/schemas/ErrorResponse"


def operations():
    for path, item in openapi_document()["paths"].items():
        for method, operation in item.items():
            yield f"{method.upper()} {path}", operation


def error_statuses(operation):
    return {
        status
        for status, response in operation["responses"].items()
        if response.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")
        == ERROR_REF
    }


def operation(name):
    return dict(operations())[name]


def refs(node):
    if isinstance(node, dict):
        if "$ref" in node:
            yield node["$ref"]
        for value in node.values():
            yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


@pytest.mark.parametrize("name", [name for name, _ in operations()])
def test_openapi_every_operation_documents_401_and_429(name):
    assert {"401", "429"} <= error_statuses(operation(name))


def test_openapi_chat_documents_every_error_it_can_answer():
    assert error_statuses(operation("POST /chat")) == {
        "400", "401", "403", "404", "405", "408", "413", "415", "422", "429", "431", "502",
        "503", "504",
    }  # fmt: skip


@pytest.mark.parametrize("name", ["POST /title/generate", "POST /generate-title"])
def test_openapi_title_documents_scope_and_size_errors_but_no_provider_error(name):
    # A provider failure gives a 200 with `useFallback`.
    assert error_statuses(operation(name)) == {
        "400", "401", "403", "405", "408", "413", "415", "422", "429", "431",
    }  # fmt: skip


def test_openapi_429_and_401_document_their_headers():
    responses = operation("POST /chat")["responses"]
    assert "Retry-After" in responses["429"]["headers"]
    assert "WWW-Authenticate" in responses["401"]["headers"]


def test_openapi_declares_the_credentials():
    document = openapi_document()
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert schemes["apiKey"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert document["security"] == [{"bearer": []}, {"apiKey": []}]


def test_openapi_documents_the_status_of_every_api_error():
    statuses = {
        str(cls.status) for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.ApiError)
    }  # fmt: skip
    assert statuses - set(ERRORS) == {"500"}  # the generic internal error is not documented


def test_openapi_refs_all_resolve():
    document = openapi_document()
    schemas = document["components"]["schemas"]
    for ref in refs(document):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref

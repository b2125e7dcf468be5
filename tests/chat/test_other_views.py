import asyncio
import json

import httpx
import pytest

from tests.chat.conftest import API_APPS, UPSTREAM_URL

pytestmark = [
    pytest.mark.django_db(transaction=True, available_apps=API_APPS),
    pytest.mark.usefixtures("main_agent"),
]


def completion(content):
    return {
        "id": "c",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


async def title(async_client, body, path="/title/generate"):
    return await async_client.post(path, body, content_type="application/json")


@pytest.mark.parametrize("path", ["/title/generate", "/generate-title"])
async def test_title_generates_and_cleans(async_client, respx_mock, path):
    route = respx_mock.post(UPSTREAM_URL).mock(
        return_value=httpx.Response(200, json=completion('  "Baking Bread at Home"  '))
    )
    response = await title(
        async_client, {"userMessage": "How do I bake bread?", "conversationId": "c1"}, path
    )
    assert response.status_code == 200
    assert response.json() == {"title": "Baking Bread at Home", "useFallback": False}
    sent = json.loads(route.calls[0].request.content)
    assert sent["model"] == "gpt-4o-mini"
    assert sent["messages"][-1]["content"] == "How do I bake bread?"


async def test_title_accepts_messages_form(async_client, respx_mock):
    route = respx_mock.post(UPSTREAM_URL).mock(
        return_value=httpx.Response(200, json=completion("T"))
    )
    body = {"messages": [{"id": "u", "role": "user", "parts": [{"type": "text", "text": "Cats?"}]}]}
    assert (await title(async_client, body)).json() == {"title": "T", "useFallback": False}
    assert json.loads(route.calls[0].request.content)["messages"][-1]["content"] == "user: Cats?"


async def test_title_truncates_to_max_length(async_client, respx_mock, settings):
    settings.TITLE_MAX_LENGTH = 20
    respx_mock.post(UPSTREAM_URL).mock(
        return_value=httpx.Response(200, json=completion("A very long title about many things"))
    )
    result = (await title(async_client, {"userMessage": "x", "conversationId": "c"})).json()
    assert len(result["title"]) <= 20
    assert result["title"].endswith("...")


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(500, json={"error": {"message": "SECRET"}}),
        httpx.Response(401, json={"error": {"message": "SECRET"}}),
        httpx.ConnectError("down"),
        httpx.Response(200, content=b"<html>SECRET</html>", headers={"content-type": "text/html"}),
        httpx.Response(200, content=b"not json", headers={"content-type": "application/json"}),
        httpx.Response(200, json={"choices": []}),
        httpx.Response(200, json=[1, 2]),
    ],
)
async def test_title_upstream_failure_is_fallback(async_client, respx_mock, failure):
    mock = respx_mock.post(UPSTREAM_URL)
    if isinstance(failure, Exception):
        mock.mock(side_effect=failure)
    else:
        mock.mock(return_value=failure)
    response = await title(async_client, {"userMessage": "x", "conversationId": "c"})
    assert response.status_code == 200
    assert response.json() == {"title": "", "useFallback": True}


async def test_title_timeout_is_fallback(async_client, respx_mock, settings):
    settings.TITLE_TIMEOUT_MS = 100

    async def slow(request):
        await asyncio.sleep(2)
        return httpx.Response(200, json=completion("late"))

    respx_mock.post(UPSTREAM_URL).mock(side_effect=slow)
    response = await title(async_client, {"userMessage": "x", "conversationId": "c"})
    assert response.json() == {"title": "", "useFallback": True}


@pytest.mark.parametrize(
    "body", [{}, {"userMessage": ""}, {"conversationId": "c"}, {"userMessage": "x" * 10001}]
)
async def test_title_validation_errors_are_422(async_client, body):
    response = await title(async_client, body)
    assert response.status_code == 422
    assert response.json()["code"] == "VALIDATION_ERROR"


async def test_models_lists_catalog_and_agents(async_client):
    body = (await async_client.get("/models")).json()
    assert [m["id"] for m in body["models"]] == ["gpt-4o", "gpt-4o-mini"]
    assert set(body["models"][0]) == {
        "id",
        "name",
        "provider",
        "description",
        "context_window",
        "supports_tools",
    }
    assert body["agents"] == [
        {
            "slug": "main",
            "name": "Mamba",
            "description": body["agents"][0]["description"],
            "tools": ["generateForm", "generateChart", "generateCode", "generateCard"],
        }
    ]


async def test_models_catalog_from_settings_with_mock(async_client, settings):
    settings.MODELS_CATALOG = ["gpt-oss-120b", {"id": "m2", "name": "Model two"}]
    settings.MOCK_MODEL_ENABLED = True
    models = (await async_client.get("/models")).json()["models"]
    assert [m["id"] for m in models] == ["gpt-oss-120b", "m2", "mock/echo"]
    assert models[1]["name"] == "Model two"


async def test_models_rejects_post(async_client):
    response = await async_client.post("/models")
    assert response.status_code == 405


async def test_openapi_document_is_built_from_request_schemas(async_client):
    document = (await async_client.get("/openapi.json")).json()
    assert document["openapi"] == "3.1.0"
    assert set(document["paths"]) == {
        "/chat",
        "/chat/{chatId}/stream",
        "/title/generate",
        "/generate-title",
        "/models",
    }
    schemas = document["components"]["schemas"]
    chat = schemas["ChatRequest"]
    assert chat["required"] == ["messages"]
    assert set(chat["properties"]) >= {"messages", "model", "agent", "tools", "messageId"}
    assert "UIMessage" in schemas
    assert "userMessage" in schemas["TitleRequest"]["properties"]
    ref = document["paths"]["/chat"]["post"]["requestBody"]["content"]["application/json"]
    assert ref["schema"] == {"$ref": "#/components/schemas/ChatRequest"}
    assert "$defs" not in json.dumps(document)

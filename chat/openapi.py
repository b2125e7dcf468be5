"""The OpenAPI 3.1 document of the API, built from the request and response schemas."""

from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

import mamba_site
from chat.schemas import ChatRequest, ErrorResponse, ModelsResponse, TitleRequest, TitleResponse

REF = "#/components/schemas/{model}"

ERRORS = {
    "400": "Invalid JSON, empty messages, an unknown tool, or a request that is not valid HTTP/1.1",
    "401": "No, wrong or expired credentials (AUTH_REQUIRED, AUTH_INVALID, AUTH_EXPIRED)",
    "403": "The credentials' scopes leave out the agent or model (FORBIDDEN)",
    "404": "Unknown agent (AGENT_NOT_FOUND) or model (MODEL_NOT_FOUND)",
    "405": "Wrong method",
    "408": "The request's head or body did not arrive in time (REQUEST_TIMEOUT); the "
    "connection is closed",
    "413": "Body over the size limit",
    "415": "Content-Type is not application/json",
    "422": "Body does not match the schema (see `errors`)",
    "431": "Headers over the server's limits: 16 KiB in all or in one line, 500 headers "
    "(HEADERS_TOO_LARGE)",
    "429": "A limit of the credentials (requests per minute, concurrent streams, tokens per "
    "day) or of the model provider",
    "502": "The model provider failed",
    "503": "The model provider is unreachable or not configured",
    "504": "The model provider timed out",
}


def _header(description: str, kind: str = "string") -> dict[str, Any]:
    return {"description": description, "schema": {"type": kind}}


HEADERS = {
    "401": {"WWW-Authenticate": _header('`Bearer realm="mamba"`, with `error="invalid_token"`')},
    "429": {
        "Retry-After": _header("Seconds to wait before trying again", "integer"),
        "RateLimit-Limit": _header("The limit that was reached", "integer"),
        "RateLimit-Remaining": _header("0", "integer"),
        "RateLimit-Reset": _header("Seconds until the window resets", "integer"),
    },
}
# Every route below needs credentials (MAMBA_AUTH__MODE), so each can answer 401 and 429.
AUTHENTICATED = ("401", "429")
SECURITY_SCHEMES = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (`mamba_…`) or a JWT, as MAMBA_AUTH__MODE allows",
    },
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _json(model: type[BaseModel]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": _ref(model)}}}


def _errors(*statuses: str) -> dict[str, Any]:
    """The error responses, in order of status; each carries the `ErrorResponse` body."""
    responses: dict[str, Any] = {}
    for status in sorted({*statuses, *AUTHENTICATED}):
        response = {"description": ERRORS[status], **_json(ErrorResponse)}
        if status in HEADERS:
            response["headers"] = HEADERS[status]
        responses[status] = response
    return responses


@cache
def openapi_document() -> dict[str, Any]:
    models = (ChatRequest, TitleRequest, TitleResponse, ModelsResponse, ErrorResponse)
    _, schemas = models_json_schema(
        [
            (m, "validation" if m in (ChatRequest, TitleRequest) else "serialization")
            for m in models
        ],
        ref_template=REF,
    )
    stream = {
        "description": "The AI SDK UI message stream: `data: <chunk JSON>` events, then "
        "`data: [DONE]`. Errors after the stream started arrive as an `error` chunk.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
    title = {
        "requestBody": {"required": True, **_json(TitleRequest)},
        "responses": {
            "200": {"description": "A title, or `useFallback`", **_json(TitleResponse)},
            # Provider failures give `useFallback`, not an error.
            **_errors("400", "403", "405", "408", "413", "415", "422", "431"),
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Mamba",
            "version": mamba_site.__version__,
            "description": "A streaming gateway between AI SDK chat frontends and "
            "OpenAI-compatible APIs.",
        },
        "paths": {
            "/chat": {
                "post": {
                    "summary": "Stream a reply as the AI SDK UI message stream",
                    "requestBody": {"required": True, **_json(ChatRequest)},
                    "responses": {"200": stream, **_errors(*ERRORS)},
                }
            },
            "/chat/{chatId}/stream": {
                "get": {
                    "summary": "Resume a stream (useChat resume): Mamba keeps none, so always 204",
                    "parameters": [
                        {
                            "name": "chatId",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {"204": {"description": "Nothing to resume"}, **_errors("405")},
                }
            },
            "/title/generate": {"post": {"summary": "Name a conversation", **title}},
            "/generate-title": {"post": {"summary": "Alias of /title/generate", **title}},
            "/models": {
                "get": {
                    "summary": "The models and agents a caller may use",
                    "responses": {
                        "200": {"description": "The catalog", **_json(ModelsResponse)},
                        **_errors("405"),
                    },
                }
            },
        },
        "security": [{"bearer": []}, {"apiKey": []}],
        "components": {"schemas": schemas["$defs"], "securitySchemes": SECURITY_SCHEMES},
    }

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

pytestmark = pytest.mark.django_db(transaction=True)

# The only routes that answer without API credentials (the admin has its own staff login).
PUBLIC = re.compile(r"^/(health(/.*)?|metrics)$")


def concrete(prefix: str, pattern) -> str:
    text = str(pattern.pattern)
    text = re.sub(r"<(?:int:)?\w+>", "1", text)  # path converters
    text = re.sub(r"\(\?P<\w+>[^)]*\)", "1", text)  # named regex groups
    text = re.sub(r"\(\?!.*?\)", "", text)  # lookaheads, such as the catch-all's
    return prefix + text.strip("^$")


def routes(resolver=None, prefix="/"):
    for pattern in (resolver or get_resolver()).url_patterns:
        path = concrete(prefix, pattern)
        if isinstance(pattern, URLResolver):
            yield from routes(pattern, path)
        elif isinstance(pattern, URLPattern):
            yield path


def api_routes():
    return sorted({path or "/" for path in routes() if not path.startswith("/admin/")})


def test_routes_walk_finds_every_api_route():
    found = api_routes()
    for path in ("/chat", "/title/generate", "/generate-title", "/models", "/openapi.json"):
        assert path in found
    assert "/" in found  # the catch-all 404


@pytest.mark.parametrize("path", api_routes())
@pytest.mark.parametrize("method", ["get", "post", "put", "delete"])
async def test_routes_no_api_route_answers_without_auth(async_client, api_key_mode, path, method):
    response = await getattr(async_client, method)(path)
    if PUBLIC.match(path):
        assert response.status_code != 401
    else:
        assert response.status_code == 401, f"{method.upper()} {path} answered without auth"
        assert response.json()["code"] == "AUTH_REQUIRED"


async def test_routes_admin_needs_a_staff_login(async_client, api_key_mode):
    for path in ("/admin/", "/admin/agents/agent/", "/admin/mamba_site/apikey/"):
        response = await async_client.get(path)
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")
    response = await async_client.post(
        "/admin/playground/chat", {}, content_type="application/json"
    )
    assert response.status_code == 403

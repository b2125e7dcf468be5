import uuid

import pytest
from django.conf import settings
from prometheus_client import REGISTRY


def test_host_validation_runs_right_after_the_request_id():
    middleware = settings.MIDDLEWARE
    request_id = middleware.index("mamba_site.middleware.RequestIdMiddleware")
    assert middleware[request_id + 1] == "mamba_site.middleware.HostValidationMiddleware"


async def test_host_validation_error_carries_the_request_id(async_client):
    request_id = str(uuid.uuid4())

    response = await async_client.get(
        "/openapi.json", headers={"Host": "evil.example", "X-Request-ID": request_id}
    )

    assert response.status_code == 400
    assert response["X-Request-ID"] == request_id
    assert response.json() == {
        "detail": "The Host header is not one this service answers to.",
        "code": "INVALID_REQUEST",
        "request_id": request_id,
    }


def requests_counted(route, method, status):
    labels = {"route": route, "method": method, "status": str(status)}
    return REGISTRY.get_sample_value("mamba_http_requests_total", labels) or 0.0


def access_routes(caplog):
    return [r.route for r in caplog.records if r.name == "mamba.access"]


@pytest.mark.django_db(transaction=True)
async def test_access_log_counts_a_401_under_its_route(async_client, api_key_mode, caplog):
    before = requests_counted("/chat", "POST", 401)
    unmatched = requests_counted("unmatched", "POST", 401)

    response = await async_client.post("/chat")

    assert response.status_code == 401
    assert requests_counted("/chat", "POST", 401) == before + 1
    assert requests_counted("unmatched", "POST", 401) == unmatched
    assert access_routes(caplog) == ["/chat"]


@pytest.mark.django_db(transaction=True)
async def test_access_log_counts_a_429_under_its_route(
    async_client, api_key_mode, issue_key, caplog
):
    _, secret = await issue_key(requests_per_minute=1)
    before = requests_counted("/models", "GET", 429)

    await async_client.get("/models", headers={"X-API-Key": secret})
    response = await async_client.get("/models", headers={"X-API-Key": secret})

    assert response.status_code == 429
    assert requests_counted("/models", "GET", 429) == before + 1
    assert access_routes(caplog) == ["/models", "/models"]


async def test_access_log_counts_a_redirect_under_its_route(async_client, settings, caplog):
    settings.SECURE_SSL_REDIRECT = True
    before = requests_counted("/title/generate", "POST", 301)

    response = await async_client.post("/title/generate")

    assert response.status_code == 301
    assert requests_counted("/title/generate", "POST", 301) == before + 1
    assert access_routes(caplog) == ["/title/generate"]

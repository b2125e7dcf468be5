import uuid

from django.conf import settings


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

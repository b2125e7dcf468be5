import inspect
import threading

import pytest
from django.conf import settings as django_settings
from django.utils.module_loading import import_string

pytestmark = pytest.mark.django_db(transaction=True)

HTTPS = {"X-Forwarded-Proto": "https"}


def middleware_files():
    """The source files of every class in MIDDLEWARE and its bases (MiddlewareMixin too)."""
    return {
        inspect.getfile(klass)
        for path in django_settings.MIDDLEWARE
        for klass in import_string(path).__mro__
        if klass is not object
    }


async def middleware_calls_off_the_loop(send):
    """(file, function) of middleware code that ran in another thread than the event loop's
    while `send()` was awaited: each is a thread hop (sync_to_async) of some middleware."""
    loop_thread = threading.get_ident()
    files = middleware_files()
    seen = set()

    def profile(frame, event, arg):
        off_loop = threading.get_ident() != loop_thread
        if event == "call" and off_loop and frame.f_code.co_filename in files:
            seen.add((frame.f_code.co_filename, frame.f_code.co_name))

    threading.setprofile_all_threads(profile)
    try:
        response = await send()
    finally:
        threading.setprofile_all_threads(None)
    return response, seen


async def test_security_api_request_runs_no_middleware_in_a_worker_thread(
    async_client, issue_key, api_key_mode
):
    _, secret = await issue_key(requests_per_minute=100)

    response, hops = await middleware_calls_off_the_loop(
        lambda: async_client.get("/models", headers={"X-API-Key": secret, **HTTPS})
    )

    assert response.status_code == 200
    assert response["X-Content-Type-Options"] == "nosniff"
    assert hops == set()


async def test_security_admin_request_hops_are_seen(async_client):
    # The admin's session, CSRF and auth middleware are Django's sync hooks: the detector
    # above sees their hops, so its empty answer for the API means something.
    response, hops = await middleware_calls_off_the_loop(
        lambda: async_client.get("/admin/login/", headers=HTTPS)
    )

    assert response.status_code == 200
    assert {name for _, name in hops} >= {"process_request", "process_response"}


SECURITY_HEADERS = {
    "Strict-Transport-Security": "max-age=31536000",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def security_headers(response):
    return {name: response.get(name) for name in SECURITY_HEADERS}


async def test_security_headers_on_an_api_response(async_client):
    response = await async_client.get("/openapi.json", headers=HTTPS)

    assert response.status_code == 200
    assert security_headers(response) == SECURITY_HEADERS


async def test_security_headers_on_an_error_response(async_client, api_key_mode):
    response = await async_client.post("/chat", headers=HTTPS)

    assert response.status_code == 401
    assert security_headers(response) == SECURITY_HEADERS


async def test_security_headers_on_an_admin_response(async_client):
    response = await async_client.get("/admin/login/", headers=HTTPS)

    assert response.status_code == 200
    assert security_headers(response) == SECURITY_HEADERS
    assert response["X-Frame-Options"] == "DENY"


async def test_security_sends_no_hsts_over_plain_http(async_client):
    response = await async_client.get("/openapi.json")

    assert "Strict-Transport-Security" not in response
    assert response["X-Content-Type-Options"] == "nosniff"


async def test_security_hsts_carries_subdomains_and_preload_when_set(async_client, settings):
    settings.SECURE_HSTS_SECONDS = 600
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = settings.SECURE_HSTS_PRELOAD = True

    response = await async_client.get("/openapi.json", headers=HTTPS)

    assert response["Strict-Transport-Security"] == "max-age=600; includeSubDomains; preload"


async def test_security_redirects_plain_http_when_ssl_redirect_is_on(async_client, settings):
    settings.SECURE_SSL_REDIRECT = True

    response = await async_client.get("/models?page=2")

    assert response.status_code == 301
    assert response["Location"] == "https://testserver/models?page=2"
    assert response["X-Content-Type-Options"] == "nosniff"


async def test_security_redirect_comes_before_authentication(async_client, settings, api_key_mode):
    settings.SECURE_SSL_REDIRECT = True

    response = await async_client.post("/chat")

    assert response.status_code == 301
    assert response["Location"] == "https://testserver/chat"


async def test_security_redirect_goes_to_the_ssl_host_when_set(async_client, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_SSL_HOST = "api.example.com"

    response = await async_client.get("/models")

    assert response["Location"] == "https://api.example.com/models"


async def test_security_does_not_redirect_https(async_client, settings):
    settings.SECURE_SSL_REDIRECT = True

    response = await async_client.get("/openapi.json", headers=HTTPS)

    assert response.status_code == 200


@pytest.mark.parametrize("path", ["/health/live", "/health/ready", "/health", "/metrics"])
async def test_security_does_not_redirect_the_probes_and_metrics(async_client, settings, path):
    settings.SECURE_SSL_REDIRECT = True
    settings.HEALTH_OPENAI_CHECK_ENABLED = False  # no background check of the test upstream

    response = await async_client.get(path)

    assert response.status_code != 301

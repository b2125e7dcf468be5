"""API keys and frontends for tests, issued and registered through the services as the admin
does."""

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from mamba_site import quotas
from mamba_site.services import api_key_create, frontend_create


@pytest.fixture(autouse=True)
def _fresh_quotas():
    # In-process counters outlive a test otherwise.
    quotas.quotas_reset()
    yield
    quotas.quotas_reset()


@pytest.fixture
def issue_key(transactional_db):
    """Issue a key from async code: `api_key, secret = await issue_key(...)`."""

    async def issue(name="test key", **fields):
        return await sync_to_async(api_key_create)(name=name, **fields)

    return issue


@pytest.fixture
def api_key_mode(settings):
    settings.AUTH_MODE = "api_key"
    return settings


@pytest.fixture
def register_frontend(transactional_db):
    """Register a frontend from async code: `frontend = await register_frontend(...)`; no limits
    unless given (the model's defaults would hide what a test is about)."""

    async def register(name="site", origins=("https://chat.example.com",), **fields):
        limits = dict.fromkeys(
            ("requests_per_minute", "concurrent_streams", "tokens_per_day", "total_tokens_per_day")
        )
        return await sync_to_async(frontend_create)(
            name=name, origins=list(origins), **{**limits, **fields}
        )

    return register


@pytest.fixture
def origin_mode(settings):
    settings.AUTH_MODE = "api_key,origin"
    return settings


class AsyncClientAt(AsyncClient):
    """Django's async test client, connecting from `address` (the ASGI scope's client)."""

    def __init__(self, address, **kwargs):
        super().__init__(**kwargs)
        self.address = address

    def _base_scope(self, **request):
        return {**super()._base_scope(**request), "client": [self.address, 50000]}

"""API keys for tests, issued through the service as the admin does."""

import pytest
from asgiref.sync import sync_to_async

from mamba_site import quotas
from mamba_site.services import api_key_create


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

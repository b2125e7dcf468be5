"""Shared fixtures."""

import pytest

from chat import upstream


@pytest.fixture(autouse=True)
def _fresh_upstream_clients():
    # Clients are cached per event loop and built from settings; tests change both.
    upstream.reset_clients()
    yield
    upstream.reset_clients()

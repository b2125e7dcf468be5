"""The fake upstream and a load-generator connection, for the bench's tests over real HTTP."""

import pytest

from bench.rawhttp import RawConnection
from tests.fake_upstream import FakeUpstream


@pytest.fixture
async def upstream():
    server = FakeUpstream()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def conn():
    connection = RawConnection()
    yield connection
    await connection.aclose()

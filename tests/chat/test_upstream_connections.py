import pytest

from tests.chat.conftest import API_APPS, parse_sse, read_stream, user
from tests.fake_upstream import FakeUpstream

pytestmark = [
    pytest.mark.django_db(transaction=True, available_apps=API_APPS),
    pytest.mark.usefixtures("main_agent"),
]


@pytest.fixture
async def fake_upstream(settings):
    server = FakeUpstream()
    await server.start()
    settings.OPENAI_BASE_URL = server.base_url
    yield server
    await server.stop()


async def test_upstream_connection_is_reused_across_streams(async_client, fake_upstream):
    for text in ("first", "second", "third"):
        body = {"messages": [user(text)], "model": "gpt-4o"}
        response = await async_client.post("/chat", body, content_type="application/json")
        events = parse_sse(await read_stream(response))
        assert events[-1] == "[DONE]"
    assert fake_upstream.completed == 3
    # The body was read to its end after [DONE], so one keep-alive connection served all.
    assert fake_upstream.connections == 1

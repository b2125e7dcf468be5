import gc
import weakref

import httpx
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


async def test_an_open_upstream_reply_does_not_keep_its_request(fake_upstream):
    """A stream may run for minutes: the reply it reads does not keep the request (its
    headers, its URL) meanwhile."""
    from chat.upstream import ProviderClient
    from mamba_site.providers import Provider

    client = ProviderClient(Provider("fake", fake_upstream.base_url, "sk-fake"))
    try:
        body = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        response = await client.post(body)
        assert response.status_code == 200
        assert response._request is None
        assert not [v for v in vars(response.stream).values() if isinstance(v, httpx.Request)]
        await response.aclose()
    finally:
        await client.aclose()


async def test_an_open_stream_keeps_neither_headers_nor_the_httpx_response(fake_upstream):
    """For as long as a stream runs it keeps the body and its connection: not the request's
    headers (the provider's key among them), not the reply's, not httpx's response."""
    from chat.upstream import ProviderClient, open_stream
    from mamba_site.providers import Provider

    client = ProviderClient(Provider("fake", fake_upstream.base_url, "sk-fake"))
    try:
        made = []
        handle = client.transport.handle_async_request

        async def noted(request):
            response = await handle(request)
            made.append(weakref.ref(response))
            return response

        client.transport.handle_async_request = noted
        messages = [{"role": "user", "content": "drip:3"}]  # 3 chunks 0.2 s apart
        stream = await open_stream(
            client, body={"model": "gpt-4o", "stream": True, "messages": messages}
        )
        gc.collect()
        assert made[0]() is None  # httpx's response
        reply = stream._body._response  # aiohttp's
        assert not reply.request_info.headers
        assert not reply.headers
        assert not reply.raw_headers
        # Its silence is watched by the step reading it: no read timer per chunk.
        assert stream.silence == client.provider.timeout_seconds
        assert reply.connection.protocol._read_timeout is None
        chunks = []
        while (batch := await stream.batch()) is not None:
            chunks += batch
        assert len(chunks) >= 3
        assert stream.done
        await stream.aclose()
    finally:
        await client.aclose()

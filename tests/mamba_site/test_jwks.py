import asyncio
import base64
import itertools
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
CONCURRENCY = 50


def jwk(private_key, kid):
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private_key.public_key()))
    return {**public, "kid": kid, "use": "sig", "alg": "RS256"}


class JwksServer:
    """A JWKS endpoint over real HTTP that counts its fetches (and when they arrived)."""

    def __init__(self):
        self.keys = [jwk(RSA_KEY, "k1")]
        self.status = 200
        self.delay = 0.0
        self.released = asyncio.Event()  # cleared: answers wait until it is set
        self.released.set()
        self.fetched_at = []
        self.fetched = asyncio.Event()  # set at each fetch's arrival
        self.url = ""

    @property
    def fetches(self):
        return len(self.fetched_at)

    async def handle(self, reader, writer):
        try:
            await reader.readuntil(b"\r\n\r\n")
            self.fetched_at.append(time.monotonic())
            self.fetched.set()
            await asyncio.sleep(self.delay)
            await self.released.wait()
            body = json.dumps({"keys": self.keys}).encode() if self.status == 200 else b"{}"
            head = (
                f"HTTP/1.1 {self.status} X\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        finally:
            writer.close()


@pytest.fixture
async def jwks_server(settings):
    server = JwksServer()
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    server.url = f"http://127.0.0.1:{port}/jwks.json"
    settings.AUTH_MODE = "jwt"
    settings.AUTH_JWT_ALGORITHMS = ["RS256"]
    settings.AUTH_JWT_SECRET = settings.AUTH_JWT_PUBLIC_KEY = ""
    settings.AUTH_JWT_JWKS_URL = server.url
    settings.AUTH_JWT_ISSUER = settings.AUTH_JWT_AUDIENCE = ""
    try:
        yield server
    finally:
        server.released.set()
        listener.close()
        await listener.wait_closed()


def token(kid="k1", key=RSA_KEY, **header):
    claims = {"sub": "user-1", "exp": int(time.time()) + 300}
    return jwt.encode(claims, key, "RS256", headers={"kid": kid, **header})


async def call(async_client, bearer):
    # /openapi.json needs credentials and no database.
    response = await async_client.get(
        "/openapi.json", headers={"Authorization": f"Bearer {bearer}"}
    )
    return response.status_code


async def calls(async_client, bearers):
    return await asyncio.gather(*(call(async_client, bearer) for bearer in bearers))


async def test_jwks_first_tokens_share_one_fetch(async_client, jwks_server):
    jwks_server.delay = 0.2  # all 50 arrive while the first fetch is in flight

    statuses = await calls(async_client, [token()] * CONCURRENCY)

    assert statuses == [200] * CONCURRENCY
    assert jwks_server.fetches == 1


async def test_jwks_unknown_kids_within_the_interval_fetch_nothing(async_client, jwks_server):
    assert await call(async_client, token()) == 200

    statuses = await calls(async_client, [token(kid=f"unknown-{i}") for i in range(CONCURRENCY)])

    assert statuses == [401] * CONCURRENCY
    assert jwks_server.fetches == 1


async def test_jwks_unknown_kids_refetch_once_per_interval(async_client, jwks_server, settings):
    # Long enough for both batches of 50 to fit in one interval on a busy machine.
    settings.AUTH_JWT_JWKS_MIN_INTERVAL_SECONDS = 1.0
    assert await call(async_client, token()) == 200
    await asyncio.sleep(1.05)
    jwks_server.delay = 0.1

    first = await calls(async_client, [token(kid=f"unknown-{i}") for i in range(CONCURRENCY)])
    second = await calls(async_client, [token(kid=f"other-{i}") for i in range(CONCURRENCY)])

    assert first == second == [401] * CONCURRENCY
    assert jwks_server.fetches == 2


async def test_jwks_rotated_key_is_found_by_a_refetch(async_client, jwks_server, settings):
    settings.AUTH_JWT_JWKS_MIN_INTERVAL_SECONDS = 0.1
    assert await call(async_client, token()) == 200
    jwks_server.keys = [jwk(RSA_KEY, "k1"), jwk(OTHER_KEY, "k2")]
    await asyncio.sleep(0.15)

    assert await call(async_client, token(kid="k2", key=OTHER_KEY)) == 200
    assert jwks_server.fetches == 2


def segment(value):
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


GARBAGE = [
    "garbage",
    "a.b.c",
    "a.b",
    f"{segment(b'not json')}.{segment({'sub': 'x'})}.c2ln",
    f"{segment({'alg': 'none', 'kid': 'k9'})}.{segment({'sub': 'x'})}.",
    f"{segment({'alg': 'HS256', 'kid': 'k9'})}.{segment({'sub': 'x'})}.c2ln",
    f"{segment({'alg': 'RS256', 'kid': 42})}.{segment({'sub': 'x'})}.c2ln",
    f"{segment({'alg': 'RS256', 'kid': 'k' * 300})}.{segment({'sub': 'x'})}.c2ln",
    f"{segment({'alg': 'RS256', 'kid': 'k9'})}.{segment({'sub': 'x'})}.!!!!",
]


async def test_jwks_garbage_tokens_never_fetch(async_client, jwks_server):
    statuses = await calls(async_client, GARBAGE * 6)

    assert statuses == [401] * len(GARBAGE) * 6
    assert jwks_server.fetches == 0


async def test_jwks_failures_back_off(async_client, jwks_server, settings):
    interval = settings.AUTH_JWT_JWKS_MIN_INTERVAL_SECONDS = 0.1
    jwks_server.status = 500
    deadline = time.monotonic() + 1.6

    while time.monotonic() < deadline:  # a token every 20 ms, each asking for a fetch
        assert await call(async_client, token()) == 503  # the issuer is down, not the token
        await asyncio.sleep(0.02)

    times = jwks_server.fetched_at
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    # The interval doubles after each failure: 0.2 s, 0.4 s, 0.8 s; 4 fetches fit in 1.6 s.
    assert 2 <= len(times) <= 4
    for failures, gap in enumerate(gaps, start=1):
        assert gap >= interval * 2**failures - 0.05


async def test_jwks_success_after_failures_verifies(async_client, jwks_server, settings):
    settings.AUTH_JWT_JWKS_MIN_INTERVAL_SECONDS = 0.1
    jwks_server.status = 500
    assert await call(async_client, token()) == 503
    jwks_server.status = 200
    await asyncio.sleep(0.25)

    assert await call(async_client, token()) == 200
    assert jwks_server.fetches == 2


async def test_jwks_stale_keys_refresh_in_the_background(async_client, jwks_server, settings):
    settings.AUTH_JWT_JWKS_MIN_INTERVAL_SECONDS = 0.05
    settings.AUTH_JWT_JWKS_REFRESH_SECONDS = 0.1
    assert await call(async_client, token()) == 200
    await asyncio.sleep(0.15)
    jwks_server.released.clear()
    jwks_server.fetched.clear()

    statuses = await calls(async_client, [token()] * CONCURRENCY)

    # All answered while the refresh's answer was held back: nobody waited for it.
    assert statuses == [200] * CONCURRENCY
    async with asyncio.timeout(5):
        await jwks_server.fetched.wait()
    jwks_server.released.set()
    await asyncio.sleep(0.1)
    assert jwks_server.fetches == 2  # one refresh for the 50


async def test_jwks_issuer_down_is_a_503_with_retry_after_not_a_401(
    async_client, jwks_server, settings, caplog
):
    """A valid token whose keys cannot be fetched is not an invalid token: the client is
    told to retry (a 401 would make a frontend sign its user out)."""
    settings.AUTH_JWT_JWKS_MIN_INTERVAL_SECONDS = 10
    jwks_server.status = 500
    response = await async_client.get(
        "/openapi.json", headers={"Authorization": f"Bearer {token()}"}
    )
    assert response.status_code == 503
    assert response.json()["code"] == "AUTH_UNAVAILABLE"
    assert "signing keys cannot be fetched" in response.json()["detail"]
    assert 1 <= int(response["Retry-After"]) <= 20  # the next fetch, after the backoff
    assert "WWW-Authenticate" not in response
    assert jwks_server.url not in caplog.text  # the log names the failure, not the issuer


async def test_jwks_unknown_key_of_a_reachable_issuer_is_still_a_401(async_client, jwks_server):
    assert await call(async_client, token()) == 200  # the issuer answered: keys known
    assert await call(async_client, token(kid="k-unknown", key=OTHER_KEY)) == 401

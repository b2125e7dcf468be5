import base64
import json
import time
import uuid

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "a-test-hmac-secret-that-is-long-enough-32b"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_PUBLIC_PEM = (
    RSA_KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
# One per test run: each JWKS URL has its own cache of keys.
JWKS_URL = f"https://idp.test/{uuid.uuid4()}/jwks.json"


def claims(**overrides):
    now = int(time.time())
    base = {
        "sub": "user-42",
        "iss": "https://idp.test",
        "aud": "mamba",
        "exp": now + 300,
        "iat": now,
    }
    return {**base, **overrides}


@pytest.fixture
def hs256(settings):
    settings.AUTH_MODE = "jwt"
    settings.AUTH_JWT_ALGORITHMS = ["HS256"]
    settings.AUTH_JWT_SECRET = SECRET
    settings.AUTH_JWT_ISSUER = "https://idp.test"
    settings.AUTH_JWT_AUDIENCE = "mamba"
    return settings


@pytest.fixture
def rs256(hs256):
    hs256.AUTH_JWT_ALGORITHMS = ["RS256"]
    hs256.AUTH_JWT_SECRET = ""
    hs256.AUTH_JWT_PUBLIC_KEY = RSA_PUBLIC_PEM
    return hs256


async def call(async_client, token):
    return await async_client.get("/models", headers={"Authorization": f"Bearer {token}"})


async def assert_rejected(async_client, token, code="AUTH_INVALID"):
    response = await call(async_client, token)
    assert response.status_code == 401, response.content
    assert response.json()["code"] == code
    assert response["WWW-Authenticate"] == 'Bearer realm="mamba", error="invalid_token"'


async def test_jwt_hs256_valid_token(async_client, hs256):
    assert (await call(async_client, jwt.encode(claims(), SECRET, "HS256"))).status_code == 200


async def test_jwt_rs256_valid_token(async_client, rs256):
    assert (await call(async_client, jwt.encode(claims(), RSA_KEY, "RS256"))).status_code == 200


async def test_jwt_alg_none_is_rejected(async_client, hs256):
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    payload = base64.urlsafe_b64encode(json.dumps(claims()).encode()).rstrip(b"=").decode()
    await assert_rejected(async_client, f"{header}.{payload}.")


async def test_jwt_hs256_signed_with_the_public_key_is_rejected(async_client, rs256):
    # The classic confusion attack: HMAC with the RSA public key as the secret.
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")
    payload = base64.urlsafe_b64encode(json.dumps(claims()).encode()).rstrip(b"=")
    import hashlib
    import hmac

    signature = hmac.new(RSA_PUBLIC_PEM.encode(), header + b"." + payload, hashlib.sha256).digest()
    token = b".".join([header, payload, base64.urlsafe_b64encode(signature).rstrip(b"=")]).decode()
    await assert_rejected(async_client, token)


async def test_jwt_algorithm_outside_the_list_is_rejected(async_client, rs256):
    await assert_rejected(async_client, jwt.encode(claims(), EC_KEY, "ES256"))


@pytest.mark.parametrize(
    "overrides", [{"iss": "https://evil.test"}, {"aud": "someone-else"}, {"sub": None}]
)
async def test_jwt_wrong_issuer_audience_or_subject(async_client, hs256, overrides):
    body = {k: v for k, v in claims(**overrides).items() if v is not None}
    await assert_rejected(async_client, jwt.encode(body, SECRET, "HS256"))


async def test_jwt_expired_token(async_client, hs256):
    token = jwt.encode(claims(exp=int(time.time()) - 120), SECRET, "HS256")
    await assert_rejected(async_client, token, code="AUTH_EXPIRED")


async def test_jwt_expiry_within_leeway_is_accepted(async_client, hs256):
    token = jwt.encode(claims(exp=int(time.time()) - 5), SECRET, "HS256")
    assert (await call(async_client, token)).status_code == 200


async def test_jwt_not_yet_valid_token(async_client, hs256):
    token = jwt.encode(claims(nbf=int(time.time()) + 600), SECRET, "HS256")
    await assert_rejected(async_client, token)


async def test_jwt_tampered_payload_is_rejected(async_client, hs256):
    header, _, signature = jwt.encode(claims(), SECRET, "HS256").split(".")
    forged = base64.urlsafe_b64encode(json.dumps(claims(sub="admin")).encode()).rstrip(b"=")
    await assert_rejected(async_client, f"{header}.{forged.decode()}.{signature}")


async def test_jwt_from_jwks_url(async_client, rs256, respx_mock):
    rs256.AUTH_JWT_PUBLIC_KEY = ""
    rs256.AUTH_JWT_JWKS_URL = JWKS_URL
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(RSA_KEY.public_key()))
    route = respx_mock.get(JWKS_URL).mock(
        return_value=httpx.Response(200, json={"keys": [{**public, "kid": "k1", "use": "sig"}]})
    )
    token = jwt.encode(claims(), RSA_KEY, "RS256", headers={"kid": "k1"})
    assert (await call(async_client, token)).status_code == 200
    assert (await call(async_client, token)).status_code == 200
    assert route.call_count == 1  # cached
    unknown = jwt.encode(claims(), RSA_KEY, "RS256", headers={"kid": "other"})
    await assert_rejected(async_client, unknown)


async def test_jwt_and_api_key_mode_accepts_both(async_client, hs256, transactional_db):
    from asgiref.sync import sync_to_async

    from mamba_site.services import api_key_create

    hs256.AUTH_MODE = "api_key,jwt"
    _, secret = await sync_to_async(api_key_create)(name="both")
    assert (await call(async_client, secret)).status_code == 200
    assert (await call(async_client, jwt.encode(claims(), SECRET, "HS256"))).status_code == 200
    await assert_rejected(async_client, "garbage")


async def test_jwt_scope_claims_narrow_agents_and_models(async_client, hs256, seeded_agents):
    token = jwt.encode(
        claims(mamba_agents=["research"], mamba_models=["gpt-4o-mini"]), SECRET, "HS256"
    )
    listing = (await call(async_client, token)).json()
    assert [a["slug"] for a in listing["agents"]] == ["research"]
    assert [m["id"] for m in listing["models"]] == ["gpt-4o-mini"]
    response = await async_client.post(
        "/chat",
        {"messages": [{"role": "user", "content": "x"}], "agent": "main"},
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 403
    assert "agent 'main'" in response.json()["detail"]


async def test_jwt_malformed_scope_claim_is_rejected(async_client, hs256):
    token = jwt.encode(claims(mamba_agents="research"), SECRET, "HS256")
    await assert_rejected(async_client, token)

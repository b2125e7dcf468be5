"""Who is calling: API keys (from an in-process snapshot of the key table), JWTs, and browser
frontends admitted by their registered origin."""

import asyncio
import contextlib
import logging
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt
from django.conf import settings
from django.http import HttpRequest

from mamba_site.background import run_in_background
from mamba_site.db import DatabaseUnavailable, db_call
from mamba_site.dependencies import database_state
from mamba_site.errors import ApiError, AuthExpired, AuthInvalid, AuthRequired, AuthUnavailable
from mamba_site.frontends import client_of, frontend_principal, request_frontend
from mamba_site.jwks import jwks_cache
from mamba_site.keys import KEY_PREFIX, key_lookup_prefix, key_matches
from mamba_site.models import ApiKey
from mamba_site.principals import ANONYMOUS as ANONYMOUS  # re-exported: callers import them
from mamba_site.principals import Principal as Principal  # from here
from mamba_site.tables import CachedTable, Snapshot

logger = logging.getLogger(__name__)

LAST_USED_INTERVAL_SECONDS = 60.0
UNKNOWN_KEY_RELOAD_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class _KeyRecord:
    digest: str
    expires_at: datetime | None
    principal: Principal


def _record(key: ApiKey) -> _KeyRecord:
    principal = Principal(
        kind="api_key",
        id=f"key:{key.pk}",
        name=key.name,
        allowed_agents=frozenset(key.allowed_agents or ()),
        allowed_models=frozenset(key.allowed_models or ()),
        requests_per_minute=key.requests_per_minute,
        concurrent_streams=key.concurrent_streams,
        tokens_per_day=key.tokens_per_day,
        api_key_id=key.pk,
    )
    return _KeyRecord(digest=key.digest, expires_at=key.expires_at, principal=principal)


def _key_table_load() -> dict[str, _KeyRecord]:
    """Every active key, by look-up prefix; a prefix not in it is unknown, with no query.
    Revoked keys stay out; expired ones stay in, to answer AUTH_EXPIRED."""
    return {key.prefix: _record(key) for key in ApiKey.objects.filter(revoked_at__isnull=True)}


# Read again by one task at a time; requests use the current copy meanwhile, and the last good
# copy while the database fails (mamba_site/tables.py).
key_table: CachedTable[dict[str, _KeyRecord]] = CachedTable("api_keys", _key_table_load, {})
_last_used_written: dict[int, float] = {}
_background: set[asyncio.Task[Any]] = set()


def api_keys_invalidate(**kwargs: object) -> None:
    """Forget the snapshot (connected to ApiKey's save and delete signals)."""
    key_table.invalidate()


async def _key_snapshot(
    max_age: float, *, refresh_after: float | None = None, patient: bool = False
) -> Snapshot[dict[str, _KeyRecord]]:
    try:
        return await key_table.get(max_age=max_age, refresh_after=refresh_after, patient=patient)
    except DatabaseUnavailable:
        raise AuthUnavailable() from None


async def api_key_authenticate(secret: str) -> Principal:
    prefix = key_lookup_prefix(secret)
    if prefix is None:
        raise AuthInvalid("The API key is malformed.")
    bound = settings.AUTH_KEY_CACHE_SECONDS
    record = (await _key_snapshot(bound, refresh_after=bound / 2)).value.get(prefix)
    if record is None:
        # Perhaps a key issued on another replica since the last read: read again, but at
        # most once a second, so a flood of unknown keys costs one query a second, not one each.
        snapshot = await _key_snapshot(UNKNOWN_KEY_RELOAD_SECONDS, patient=True)
        if not snapshot.fresh:  # the database fails: whether the key exists is unknown
            raise AuthUnavailable()
        record = snapshot.value.get(prefix)
    if record is None or not key_matches(secret, record.digest):
        raise AuthInvalid("The API key is not valid or has been revoked.")
    if record.expires_at is not None and record.expires_at <= datetime.now(UTC):
        raise AuthExpired("The API key has expired.")
    _note_used(record.principal.api_key_id)
    return record.principal


def _note_used(key_id: int | None) -> None:
    """Update `last_used_at` at most once a minute per key, in the background; skipped while
    the database is down (it is a hint, never retried)."""
    if key_id is None or not database_state.up:
        return
    now = time.monotonic()
    if now - _last_used_written.get(key_id, -math.inf) < LAST_USED_INTERVAL_SECONDS:
        return
    _last_used_written[key_id] = now
    run_in_background(_last_used_save(key_id))


def _last_used_update(key_id: int, when: datetime) -> None:
    ApiKey.objects.filter(pk=key_id).update(last_used_at=when)


async def _last_used_save(key_id: int) -> None:
    with contextlib.suppress(DatabaseUnavailable):
        await db_call(
            _last_used_update, key_id, datetime.now(UTC), meanwhile="last_used_at is not updated"
        )


# -- JWT ------------------------------------------------------------------------------------


# A key id longer than this is no issuer's: refused before any look-up.
MAX_KID_LENGTH = 256
JWKS_UNAVAILABLE_TEXT = (
    "Tokens cannot be checked right now (the issuer's signing keys cannot be fetched). "
    "Retry shortly."
)


async def _verification_key(token: str) -> Any:
    """The key to verify `token` with. A JWKS fetch may follow only from a well-formed token
    with an allowed algorithm whose key id is unknown (and at most once per interval); raises
    `jwt.PyJWTError` for a malformed one."""
    if not settings.AUTH_JWT_JWKS_URL:
        return settings.AUTH_JWT_PUBLIC_KEY or settings.AUTH_JWT_SECRET
    header = jwt.get_unverified_header(token)  # the three segments, and the header's JSON
    if header.get("alg") not in settings.AUTH_JWT_ALGORITHMS:
        raise jwt.InvalidAlgorithmError("The algorithm is not allowed")
    kid = header.get("kid") or ""
    if len(kid) > MAX_KID_LENGTH:
        raise jwt.InvalidTokenError("The key id is too long")
    keys = jwks_cache(settings.AUTH_JWT_JWKS_URL)
    key = await keys.key(kid)
    if key is None:
        if keys.failing:
            # The issuer could not be asked, so the key may well exist: a 401 would tell the
            # client its token is bad (and a frontend would sign its user out).
            raise AuthUnavailable(JWKS_UNAVAILABLE_TEXT, retry_after=keys.retry_after())
        raise AuthInvalid("The token's signing key is unknown.")
    return key.key


async def jwt_authenticate(token: str) -> Principal:
    try:
        key = await _verification_key(token)
        claims = jwt.decode(
            token,
            key,
            algorithms=settings.AUTH_JWT_ALGORITHMS,
            issuer=settings.AUTH_JWT_ISSUER or None,
            audience=settings.AUTH_JWT_AUDIENCE or None,
            leeway=settings.AUTH_JWT_LEEWAY_SECONDS,
            options={"require": ["exp", "sub"], "verify_aud": bool(settings.AUTH_JWT_AUDIENCE)},
        )
    except jwt.ExpiredSignatureError:
        raise AuthExpired("The token has expired.") from None
    except jwt.ImmatureSignatureError:
        raise AuthInvalid("The token is not valid yet.") from None
    except jwt.PyJWTError as error:
        logger.info("JWT rejected: %s", type(error).__name__)
        raise AuthInvalid("The token is not valid.") from None
    subject = str(claims["sub"])
    return Principal(
        kind="jwt",
        id=f"jwt:{subject}",
        name=subject,
        allowed_agents=_names_claim(claims, settings.AUTH_JWT_AGENTS_CLAIM),
        allowed_models=_names_claim(claims, settings.AUTH_JWT_MODELS_CLAIM),
        requests_per_minute=settings.AUTH_JWT_REQUESTS_PER_MINUTE,
        concurrent_streams=settings.AUTH_JWT_CONCURRENT_STREAMS,
        tokens_per_day=settings.AUTH_JWT_TOKENS_PER_DAY,
    )


def _names_claim(claims: dict[str, Any], name: str) -> frozenset[str]:
    value = claims.get(name) if name else None
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise AuthInvalid(f"The token's {name} claim must be a list of names.")
    return frozenset(value)


# -- Requests -------------------------------------------------------------------------------


def credentials_of(request: HttpRequest) -> str | None:
    api_key = request.headers.get("X-API-Key")
    if api_key is not None:
        return api_key.strip()
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    return None


def carries_credentials(request: HttpRequest) -> bool:
    """Whether the request holds credentials of any kind, even empty or unusable ones."""
    return "X-API-Key" in request.headers or "Authorization" in request.headers


def auth_modes() -> frozenset[str]:
    return frozenset(mode.strip() for mode in settings.AUTH_MODE.split(","))


async def authenticate(request: HttpRequest) -> Principal:
    """The caller of an API request under `AUTH_MODE`; raises a 401 `ApiError`.

    Credentials, when the request carries any, decide alone (a bad key is a 401 from a
    registered origin too); only a request without any is admitted by its `Origin`."""
    modes = auth_modes()
    if "none" in modes:
        return ANONYMOUS
    if carries_credentials(request) or "origin" not in modes:
        return await credentials_authenticate(credentials_of(request), modes)
    frontend = await request_frontend(request)
    if frontend is None:
        if "Origin" in request.headers:
            raise AuthRequired(
                "Authentication required: this origin is not a registered frontend's; send "
                "X-API-Key or Authorization: Bearer."
            )
        raise AuthRequired()
    return frontend_principal(frontend, client=client_of(request))


async def credentials_authenticate(credentials: str | None, modes: frozenset[str]) -> Principal:
    if not credentials:
        raise AuthRequired()
    if "api_key" in modes and (credentials.startswith(KEY_PREFIX) or "jwt" not in modes):
        return await api_key_authenticate(credentials)
    if "jwt" in modes:
        return await jwt_authenticate(credentials)
    raise AuthInvalid("This service takes no credentials; call it from a registered origin.")


def www_authenticate(error: ApiError) -> str:
    if isinstance(error, AuthRequired):
        return 'Bearer realm="mamba"'
    return 'Bearer realm="mamba", error="invalid_token"'

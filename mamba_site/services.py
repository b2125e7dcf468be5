"""Writes with rules for API keys (issuing: the secret exists only in the return value;
revoking), frontends (registering), and the daily usage counters of both."""

import contextlib
from dataclasses import dataclass
from datetime import date
from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from mamba_site.db import DatabaseUnavailable, db_call
from mamba_site.keys import key_digest, key_generate, key_lookup_prefix
from mamba_site.models import ApiKey, ApiKeyUsage, Frontend, FrontendUsage
from mamba_site.origins import OriginError, origins_parse


def api_key_prepare(api_key: ApiKey) -> str:
    """Give an unsaved key a fresh secret's prefix and digest; returns the secret."""
    while True:
        secret = key_generate()
        prefix = key_lookup_prefix(secret)
        assert prefix is not None
        if not ApiKey.objects.filter(prefix=prefix).exists():
            break
    api_key.prefix = prefix
    api_key.digest = key_digest(secret)
    return secret


def api_key_create(*, name: str, **fields: Any) -> tuple[ApiKey, str]:
    """A new key and its secret, which is not stored and cannot be shown again."""
    api_key = ApiKey(name=name, **fields)
    secret = api_key_prepare(api_key)
    api_key.full_clean()
    api_key.save()
    return api_key, secret


def api_key_revoke(*, api_key: ApiKey, by: User | AnonymousUser | None) -> bool:
    """Revoke the key (at once on this replica); False if it already was."""
    if api_key.revoked_at is not None:
        return False
    api_key.revoked_at = timezone.now()
    api_key.revoked_by = by if isinstance(by, User) and by.pk else None
    api_key.save(update_fields=("revoked_at", "revoked_by"))
    return True


@dataclass(slots=True)
class UsageTotal:
    """What one key used on one day, summed over some records."""

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    errors: int = 0


@transaction.atomic
def usage_write(*, totals: dict[tuple[int, date], UsageTotal]) -> list[tuple[int, date]]:
    """Add `totals` (by key id and day) to the daily counters, in one transaction; returns the
    totals left out because their key no longer exists."""
    keys = {key_id for key_id, _ in totals}
    existing = set(ApiKey.objects.filter(pk__in=keys).values_list("pk", flat=True))
    for (key_id, day), total in totals.items():
        if key_id not in existing:
            continue
        usage, _ = ApiKeyUsage.objects.get_or_create(api_key_id=key_id, day=day)
        # F() increments: concurrent writers (other replicas) must not overwrite each other.
        ApiKeyUsage.objects.filter(pk=usage.pk).update(
            requests=F("requests") + total.requests,
            input_tokens=F("input_tokens") + total.input_tokens,
            output_tokens=F("output_tokens") + total.output_tokens,
            errors=F("errors") + total.errors,
        )
    return [group for group in totals if group[0] not in existing]


def frontend_create(*, name: str, origins: list[str], **fields: Any) -> Frontend:
    """A new frontend, validated as the admin does (a unique name; origins written as browsers
    send them, each registered once); raises `ValidationError`."""
    try:
        origins = origins_parse(" ".join(origins))
    except OriginError as error:
        raise ValidationError({"origins": str(error)}) from None
    frontend = Frontend(name=name, origins=origins, **fields)
    frontend.full_clean()
    frontend.save()
    return frontend


@transaction.atomic
def _frontend_usage_add(
    frontend_id: int, input_tokens: int, output_tokens: int, error: bool
) -> None:
    day = timezone.now().date()
    usage, _ = FrontendUsage.objects.get_or_create(frontend_id=frontend_id, day=day)
    FrontendUsage.objects.filter(pk=usage.pk).update(
        requests=F("requests") + 1,
        input_tokens=F("input_tokens") + input_tokens,
        output_tokens=F("output_tokens") + output_tokens,
        errors=F("errors") + int(error),
    )


async def frontend_usage_record(
    *, frontend_id: int, input_tokens: int, output_tokens: int, error: bool
) -> None:
    with contextlib.suppress(DatabaseUnavailable):
        await db_call(
            _frontend_usage_add,
            frontend_id,
            input_tokens,
            output_tokens,
            error,
            operation="frontend_usage",
            meanwhile="this frontend usage record is lost",
        )

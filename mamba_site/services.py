"""Writes with rules for API keys (issuing: the secret exists only in the return value;
revoking), frontends (registering), and the daily usage counters of both."""

from dataclasses import dataclass
from datetime import date
from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

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
    """What one key or frontend used on one day, summed over some records."""

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    errors: int = 0


# Whose usage a total is: an API key's or a registered frontend's, and its id.
KEY, FRONTEND = "api_key", "frontend"
type UsageOwner = tuple[str, int]
_USAGE_MODELS = {
    KEY: (ApiKey, ApiKeyUsage, "api_key_id"),
    FRONTEND: (Frontend, FrontendUsage, "frontend_id"),
}


@transaction.atomic
def usage_write(
    *, totals: dict[tuple[UsageOwner, date], UsageTotal]
) -> list[tuple[UsageOwner, date]]:
    """Add `totals` (by owner and day) to the daily counters, in one transaction; returns the
    totals left out because their key or frontend no longer exists."""
    existing: set[UsageOwner] = set()
    for kind, (model, _, _) in _USAGE_MODELS.items():
        ids = {owner_id for (owner_kind, owner_id), _ in totals if owner_kind == kind}
        if ids:
            found = model._default_manager.filter(pk__in=ids).values_list("pk", flat=True)
            existing.update((kind, pk) for pk in found)
    for (owner, day), total in totals.items():
        if owner not in existing:
            continue
        _, usage_model, owner_field = _USAGE_MODELS[owner[0]]
        lookup: dict[str, Any] = {owner_field: owner[1], "day": day}
        usage, _ = usage_model._default_manager.get_or_create(**lookup)
        # F() increments: concurrent writers (other replicas) must not overwrite each other.
        usage_model._default_manager.filter(pk=usage.pk).update(
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

"""`manage.py createapikey NAME`: issue an API key; the secret is the last line of output."""

from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from mamba_site.services import api_key_create


def _names(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


class Command(BaseCommand):
    help = "Issue an API key. The secret is printed once, alone on the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="What the key is for (shown in the admin).")
        parser.add_argument("--agents", type=_names, default=[], help="Allowed agents: a,b")
        parser.add_argument("--models", type=_names, default=[], help="Allowed models: m1,m2")
        parser.add_argument("--rpm", type=int, help="Requests per minute.")
        parser.add_argument("--streams", type=int, help="Concurrent streams.")
        parser.add_argument("--tokens-per-day", type=int, help="Tokens per day.")
        parser.add_argument("--expires", type=int, metavar="DAYS", help="Expire after DAYS days.")

    def handle(self, *args: Any, **options: Any) -> None:
        expires = options["expires"]
        try:
            api_key, secret = api_key_create(
                name=options["name"],
                allowed_agents=options["agents"],
                allowed_models=options["models"],
                requests_per_minute=options["rpm"],
                concurrent_streams=options["streams"],
                tokens_per_day=options["tokens_per_day"],
                expires_at=timezone.now() + timedelta(days=expires) if expires else None,
            )
        except ValidationError as error:
            raise CommandError("; ".join(error.messages)) from None
        self.stderr.write(
            f"Created API key {api_key.name!r} ({api_key.prefix}…). "
            "Store the secret below now: it cannot be shown again."
        )
        self.stdout.write(secret)

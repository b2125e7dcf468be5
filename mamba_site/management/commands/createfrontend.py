"""`manage.py createfrontend NAME --origins URL[,URL]`: register a browser frontend."""

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from mamba_site.models import Frontend
from mamba_site.services import frontend_create


def _names(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


def _limit(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError(value)
    return number


class Command(BaseCommand):
    help = (
        "Register a browser frontend: requests without credentials from its origins are "
        "admitted (MAMBA_AUTH__MODE with origin) under its per-client limits and daily budget. "
        "A limit left out takes the default shown in the admin; 0 means no limit."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="A slug, shown in logs and metrics (frontend:NAME).")
        parser.add_argument(
            "--origins", required=True, help="Exact origins: https://chat.example.com,URL…"
        )
        parser.add_argument("--agents", type=_names, default=[], help="Allowed agents: a,b")
        parser.add_argument("--models", type=_names, default=[], help="Allowed models: m1,m2")
        parser.add_argument("--rpm", type=_limit, help="Requests per minute, per client.")
        parser.add_argument("--streams", type=_limit, help="Concurrent streams, per client.")
        parser.add_argument("--tokens-per-day", type=_limit, help="Tokens per day, per client.")
        parser.add_argument(
            "--total-tokens-per-day", type=_limit, help="Tokens per day, all clients together."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        given = {
            "requests_per_minute": options["rpm"],
            "concurrent_streams": options["streams"],
            "tokens_per_day": options["tokens_per_day"],
            "total_tokens_per_day": options["total_tokens_per_day"],
        }
        limits = {name: value or None for name, value in given.items() if value is not None}
        try:
            frontend = frontend_create(
                name=options["name"],
                origins=options["origins"].split(","),
                allowed_agents=options["agents"],
                allowed_models=options["models"],
                **limits,
            )
        except ValidationError as error:
            raise CommandError("; ".join(error.messages)) from None
        self.stdout.write(f"Registered frontend {frontend.name!r}: {describe(frontend)}")


def describe(frontend: Frontend) -> str:
    def limit(value: int | None) -> str:
        return "no limit" if value is None else str(value)

    return (
        f"origins {', '.join(frontend.origins)}; per client: "
        f"{limit(frontend.requests_per_minute)} requests/min, "
        f"{limit(frontend.concurrent_streams)} streams, "
        f"{limit(frontend.tokens_per_day)} tokens/day; "
        f"all clients: {limit(frontend.total_tokens_per_day)} tokens/day."
    )

"""App config of the health probes."""

from django.apps import AppConfig


class HealthConfig(AppConfig):
    name = "health"

    def ready(self) -> None:
        from health.reports import service_version

        # Read pyproject.toml at start-up, not during the first probe.
        service_version()

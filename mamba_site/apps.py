"""App config of the project package (checks, and later API keys and metrics)."""

from django.apps import AppConfig


class MambaSiteConfig(AppConfig):
    name = "mamba_site"
    verbose_name = "Mamba"

    def ready(self) -> None:
        from mamba_site import checks  # noqa: F401  (registers the system checks)

"""App config of the health probes."""

from django.apps import AppConfig


class HealthConfig(AppConfig):
    name = "health"

"""App config of the agent and tool registry."""

from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"

"""App config of the agent and tool registry."""

from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class AgentsConfig(AppConfig):
    name = "agents"

    def ready(self) -> None:
        from agents.models import Agent
        from agents.selectors import agents_invalidate

        post_save.connect(agents_invalidate, sender=Agent, dispatch_uid="agents_invalidate_save")
        post_delete.connect(agents_invalidate, sender=Agent, dispatch_uid="agents_invalidate_del")

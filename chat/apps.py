"""App config of the chat API: its connection pools are closed when the server stops."""

from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"

    def ready(self) -> None:
        from chat.routing import routers_close_at_shutdown
        from mamba_site import lifecycle

        lifecycle.at_shutdown(routers_close_at_shutdown)

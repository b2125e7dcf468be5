"""App config of the chat API."""

from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"

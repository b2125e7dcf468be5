"""Mamba: a streaming gateway between AI SDK chat frontends and OpenAI-compatible APIs."""

__version__ = "0.1.0"

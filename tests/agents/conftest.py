"""Agent rows for tests, made with the ORM (or the seed migration's own function)."""

import importlib

from agents.models import Agent

seed_migration = importlib.import_module("agents.migrations.0002_seed_agents")


def make_agent(slug="helper", **fields):
    defaults = {
        "name": slug.title(),
        "system_prompt": f"You are {slug}.",
        "tools": ["generateChart"],
    }
    return Agent.objects.create(slug=slug, **{**defaults, **fields})

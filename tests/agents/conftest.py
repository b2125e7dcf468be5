"""Agent rows for tests, made with the ORM (or the seed migration's own function)."""

import importlib

import pytest
from django.apps import apps

from agents.models import Agent

seed_migration = importlib.import_module("agents.migrations.0002_seed_agents")


def make_agent(slug="helper", **fields):
    defaults = {
        "name": slug.title(),
        "system_prompt": f"You are {slug}.",
        "tools": ["generateChart"],
    }
    return Agent.objects.create(slug=slug, **{**defaults, **fields})


@pytest.fixture
def seeded_agents(transactional_db):
    """The three agents of the seed migration, whatever earlier tests left."""
    Agent.objects.all().delete()
    seed_migration.seed(apps, None)
    return {agent.slug: agent for agent in Agent.objects.all()}

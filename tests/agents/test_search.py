import pytest
from django.db import connection

from agents.models import Note
from agents.search import _word_search, notes_search
from mamba_site.db import db_call

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def notes(transactional_db):
    Note.objects.all().delete()
    return [
        Note.objects.create(
            title="Kubernetes probes",
            body="Liveness probes must never call the model provider. "
            "Readiness checks the database.",
            tags="ops, kubernetes",
            source_url="https://wiki.test/probes",
        ),
        Note.objects.create(
            title="Release checklist",
            body="Run the migrations job before the rollout. Probes are configured per deployment.",
            tags="ops",
        ),
        Note.objects.create(title="Lunch menu", body="Pasta on Friday.", tags="food"),
    ]


async def test_notes_search_ranks_title_matches_first(notes):
    results = await notes_search(query="probes", limit=5)
    assert [r["title"] for r in results] == ["Kubernetes probes", "Release checklist"]
    assert results[0]["tags"] == ["ops", "kubernetes"]
    assert results[0]["source_url"] == "https://wiki.test/probes"
    assert results[0]["score"] > results[1]["score"]
    assert "**" in results[0]["snippet"]


async def test_notes_search_respects_limit_and_finds_nothing_for_unknown(notes):
    assert len(await notes_search(query="probes", limit=1)) == 1
    assert await notes_search(query="zebra", limit=5) == []


async def test_notes_search_matches_stemmed_words_on_postgres(notes):
    if connection.vendor != "postgresql":
        pytest.skip("stemming is PostgreSQL full-text search")
    results = await notes_search(query="migration", limit=5)
    assert [r["title"] for r in results] == ["Release checklist"]


async def test_word_search_fallback_ranks_and_snippets(notes):
    results = await db_call(_word_search, "kubernetes liveness", 5)
    assert results[0]["title"] == "Kubernetes probes"
    assert "**Liveness**" in results[0]["snippet"]
    assert await db_call(_word_search, "?!", 5) == []

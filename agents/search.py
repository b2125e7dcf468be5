"""Full-text search over notes: PostgreSQL's text search, or a word match on other databases."""

import re
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Q

from agents.models import Note
from mamba_site.db import db_call

CONFIG = "english"
SNIPPET_CHARS = 200
MARK_START, MARK_END = "**", "**"
CANDIDATES = 200


async def notes_search(*, query: str, limit: int) -> list[dict[str, Any]]:
    """The best matches first, each with a snippet around the match. Raises
    `DatabaseUnavailable` when the database fails or does not answer within the tools'
    timeout."""
    search = _postgres_search if connection.vendor == "postgresql" else _word_search
    return await db_call(
        search,
        query,
        limit,
        timeout=settings.TOOLS_TIMEOUT_SECONDS,
        operation="notes_search",
        meanwhile="search_notes tells the model the notes are unavailable",
    )


def _result(note: Note, snippet: str, score: float) -> dict[str, Any]:
    return {
        "id": note.pk,
        "title": note.title,
        "snippet": snippet,
        "tags": note.tag_list,
        "source_url": note.source_url,
        "score": round(score, 4),
    }


def _postgres_search(query: str, limit: int) -> list[dict[str, Any]]:
    # Imported here: it loads psycopg, which the embedded SQLite default does without.
    from django.contrib.postgres.search import (
        SearchHeadline,
        SearchQuery,
        SearchRank,
        SearchVector,
    )

    vector = (
        SearchVector("title", weight="A", config=CONFIG)
        + SearchVector("tags", weight="B", config=CONFIG)
        + SearchVector("body", weight="C", config=CONFIG)
    )
    search = SearchQuery(query, search_type="websearch", config=CONFIG)
    notes = (
        Note.objects.annotate(
            document=vector,
            rank=SearchRank(vector, search),
            snippet=SearchHeadline(
                "body",
                search,
                config=CONFIG,
                start_sel=MARK_START,
                stop_sel=MARK_END,
                max_words=35,
                min_words=15,
            ),
        )
        .filter(document=search)
        .order_by("-rank", "-updated_at")[:limit]
    )
    return [_result(note, note.snippet, note.rank) for note in notes]


def _words(query: str) -> list[str]:
    words = [w for w in re.findall(r"\w+", query.lower()) if len(w) > 1]
    return list(dict.fromkeys(words))[:10]


def _word_search(query: str, limit: int) -> list[dict[str, Any]]:
    words = _words(query)
    if not words:
        return []
    match = Q()
    for word in words:
        match |= Q(title__icontains=word) | Q(body__icontains=word) | Q(tags__icontains=word)
    scored = []
    for note in Note.objects.filter(match)[:CANDIDATES]:
        score = _score(note, words)
        if score > 0:
            scored.append((score, note))
    scored.sort(key=lambda pair: (-pair[0], -pair[1].updated_at.timestamp()))
    return [_result(note, _snippet(note.body, words), score) for score, note in scored[:limit]]


def _score(note: Note, words: list[str]) -> float:
    """Title matches weigh most, then tags, then the body (occurrences, capped)."""
    title, tags, body = note.title.lower(), note.tags.lower(), note.body.lower()
    return sum(
        3.0 * (word in title) + 2.0 * (word in tags) + min(body.count(word), 5) * 0.5
        for word in words
    )


def _snippet(body: str, words: list[str]) -> str:
    lowered = body.lower()
    positions = [p for p in (lowered.find(w) for w in words) if p >= 0]
    if not positions:
        return body[:SNIPPET_CHARS]
    start = max(0, min(positions) - SNIPPET_CHARS // 4)
    window = body[start : start + SNIPPET_CHARS]
    pattern = re.compile("|".join(re.escape(w) for w in words), re.IGNORECASE)
    marked = pattern.sub(lambda m: f"{MARK_START}{m.group(0)}{MARK_END}", window)
    return ("..." if start else "") + marked + ("..." if start + SNIPPET_CHARS < len(body) else "")

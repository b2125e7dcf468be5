import pytest

from chat.schemas import UIMessage
from chat.titles import clean_title, conversation_text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Baking bread  ", "Baking bread"),
        ('"Baking bread"', "Baking bread"),
        ("'Baking bread'", "Baking bread"),
        ("“Baking bread”", "Baking bread"),
        ('"Only one quote', '"Only one quote'),
        ('""Double""', '"Double"'),
    ],
)
def test_clean_title_strips_whitespace_and_one_pair_of_quotes(raw, expected):
    assert clean_title(raw, max_length=50) == expected


def test_clean_title_cuts_at_word_boundary_past_sixty_percent():
    title = clean_title("How to bake sourdough bread at home quickly", max_length=25)
    assert title == "How to bake sourdough..."
    assert len(title) <= 25


def test_clean_title_cuts_hard_when_last_space_is_early():
    title = clean_title("Supercalifragilistic expialidocious", max_length=20)
    assert title == "Supercalifragilis..."
    assert len(title) == 20


def test_clean_title_keeps_short_titles():
    assert clean_title("Short", max_length=5) == "Short"
    assert clean_title("anything", max_length=0) == ""


def test_conversation_text_prefers_user_message_and_skips_system():
    assert conversation_text(user_message="hi", messages=None) == "hi"
    messages = [
        UIMessage.model_validate(m)
        for m in (
            {"role": "system", "content": "secret prompt"},
            {"role": "user", "content": "Tell me about cats"},
            {"role": "assistant", "content": "Cats are great"},
        )
    ]
    assert conversation_text(user_message=None, messages=messages) == (
        "user: Tell me about cats\nassistant: Cats are great"
    )

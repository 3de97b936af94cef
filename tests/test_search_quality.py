"""Retrieval quality through the real daemon and the real model: neighbour context (a reply is
found through the turn before it) and stop words left out of the keyword query."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import give_models

from tests.conftest import Db0
from tests.test_embeddings import models_dir  # noqa: F401  (the session-wide models folder)

pytestmark = pytest.mark.slow

# (created_at, content): two-turn exchanges days apart; the answer to the query below is a
# reply that shares no word with it, right after the turn that names the subject.
TURNS = [
    ("2024-03-01T10:00:00Z", "Bob: What got you into long-distance running, Alice?"),
    ("2024-03-01T10:00:00Z", "Alice: Honestly it clears my head after a stressful week."),
    ("2024-03-05T18:00:00Z", "Alice: I tried a new pasta recipe with fresh basil."),
    ("2024-03-05T18:00:00Z", "Bob: Nice, I mostly cook rice and beans these days."),
    ("2024-03-09T08:00:00Z", "Bob: My car broke down on the highway again."),
    ("2024-03-09T08:00:00Z", "Alice: That sounds awful, did you call a tow truck?"),
    ("2024-03-14T20:00:00Z", "Alice: The quarterly report is due next Thursday."),
    ("2024-03-14T20:00:00Z", "Bob: I will send my numbers on Monday then."),
]
ANSWER = TURNS[1][1]


@pytest.fixture
def conv(db0: Db0, models_dir: Path) -> Db0:  # noqa: F811
    give_models(db0.home, models_dir)
    lines = "".join(json.dumps({"content": c, "created_at": t}) + "\n" for t, c in TURNS)
    db0.run("import", "-", "--wait", input=lines)
    return db0


def recall(db: Db0, query: str, k: int = 8) -> list[dict[str, Any]]:
    res: list[dict[str, Any]] = db.json("recall", query, "-n", str(k))["results"]
    return res


def test_reply_is_found_through_the_turn_before_it(conv: Db0) -> None:
    res = recall(conv, "Why does Alice go long-distance running?")
    contents = [r["content"] for r in res]
    # The reply names neither running nor why; the question before it does, and lends it
    # REPLY_WEIGHT of its relevance; the question itself is weighted down (it only asks).
    assert contents[:2] == [ANSWER, TURNS[0][1]], contents
    parts = res[0]["score_parts"]
    assert parts["context"] > parts["relevance"] and "question_weight" not in parts
    assert res[1]["score_parts"]["question_weight"] < 1
    assert res[1]["score_parts"]["relevance"] > parts["relevance"]
    # Turns days apart are not neighbours: the pasta turn written after the answer gets none
    # of the question turn's relevance.
    pasta = next(r for r in res if r["content"] == TURNS[2][1])
    assert "context" not in pasta["score_parts"] or \
        pasta["score_parts"]["context"] < parts["context"] / 2


def test_question_words_are_not_keywords(conv: Db0) -> None:
    # "what", "did" and "you" are in other turns; only "basil" says what is asked about.
    res = recall(conv, "What did you think of the basil?")
    assert res[0]["content"] == TURNS[2][1] and "bm25" in res[0]["score_parts"]
    tow = next((r for r in res if r["content"] == TURNS[5][1]), None)
    # "did you" alone is no keyword match: the turn is found by meaning, or not at all.
    assert tow is None or "bm25" not in tow["score_parts"]


# The other party names John as often as John does; what John said answers questions about him.
SUNDAYS = [
    ("2024-05-02T19:00:00Z", "Maria: John, what do you usually do on Sundays?"),
    ("2024-05-02T19:00:00Z", "John: On Sundays I go fishing at the lake with my dad."),
    ("2024-05-09T12:00:00Z", "Maria: I started volunteering at the shelter on Saturdays."),
    ("2024-05-09T12:00:00Z", "John: That is kind of you, the shelter needs the help."),
]


def test_what_the_named_speaker_said_comes_first(db0: Db0, models_dir: Path) -> None:  # noqa: F811
    give_models(db0.home, models_dir)
    db0.run("import", "-", "--wait", input="".join(
        json.dumps({"content": c, "created_at": t}) + "\n" for t, c in SUNDAYS))
    res = recall(db0, "What does John do on Sundays?")
    assert res[0]["content"] == SUNDAYS[1][1], [r["content"] for r in res]
    by = {r["content"]: r["score_parts"] for r in res}
    assert by[SUNDAYS[1][1]]["speaker_weight"] > 1
    assert "speaker_weight" not in by[SUNDAYS[0][1]]  # Maria said it, naming John
    # A question about Maria weighs her turns, not John's.
    res = recall(db0, "What did Maria start doing on Saturdays?")
    assert res[0]["content"] == SUNDAYS[2][1]
    for r in res:
        assert ("speaker_weight" in r["score_parts"]) == r["content"].startswith("Maria:")
    # metadata {"speaker": ...} names the speaker when the content has no prefix.
    db0.run("remember", "I keep bees behind the barn.", "--meta", "speaker=Ana", "--wait")
    res = recall(db0, "What does Ana keep behind the barn?")
    assert res[0]["content"] == "I keep bees behind the barn."
    assert res[0]["score_parts"]["speaker_weight"] > 1


def test_a_day_or_month_named_in_the_query_weighs_what_was_written_then(
        db0: Db0, models_dir: Path) -> None:  # noqa: F811
    give_models(db0.home, models_dir)
    notes = [("2023-06-03T10:00:00Z", "Ana: We planted tomatoes in the garden yesterday."),
             ("2023-08-20T10:00:00Z", "Ana: We planted sunflowers in the garden today."),
             ("2023-12-28T10:00:00Z", "Ana: We planted garlic in the garden for winter.")]
    db0.run("import", "-", "--wait", input="".join(
        json.dumps({"content": c, "created_at": t}) + "\n" for t, c in notes))
    for query, want in (("What did Ana plant on 2 June, 2023?", 0),
                        ("What did Ana plant in August 2023?", 1),
                        ("What did Ana plant in December 2023?", 2),
                        ("What did Ana plant in August?", 1)):  # a month alone: any year
        res = recall(db0, query)
        assert res[0]["content"] == notes[want][1], (query, [r["content"] for r in res])
        assert res[0]["score_parts"]["date_weight"] > 1
        assert all("date_weight" not in r["score_parts"] for r in res[1:])
    for query in ("What did Ana plant in the garden?",  # no date: no date weight
                  "What may Ana plant in the garden?"):  # "may" alone is a verb
        res = recall(db0, query)
        assert all("date_weight" not in r["score_parts"] for r in res), query

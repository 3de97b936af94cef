"""The store on a real SQLite file: migrations, the op log's atomicity, FTS query safety."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import apsw
import pytest
from conftest import held_clock, vm_steps
from hypothesis import given, settings
from hypothesis import strategies as st

from db0.store import core, search, write
from db0.store import db as dbmod
from db0.store.context import Context
from db0.store.core import Store
from db0.store.errors import InvalidError


def test_op_log_in_the_same_transaction(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "x.db")
    ctx = Context("u")
    with pytest.raises(RuntimeError), store.transaction():
        write.remember(store, ctx, write.prepare({"content": "never committed"}))
        raise RuntimeError("crash between the row and the commit")
    c = store.conn
    assert c.execute("SELECT count(*) FROM memories").fetchone()[0] == 0
    assert c.execute("SELECT count(*) FROM ops").fetchone()[0] == 0
    with store.transaction():
        write.remember(store, ctx, write.prepare({"content": "committed"}))
    assert c.execute("SELECT count(*) FROM ops").fetchone()[0] == 1
    with pytest.raises(apsw.ConstraintError, match="append-only"):
        c.execute("UPDATE ops SET kind='x'")


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_any_text_is_a_safe_query(text: str) -> None:
    q = search.fts_query(text)
    conn = apsw.Connection(":memory:")
    conn.execute("CREATE VIRTUAL TABLE f USING fts5(x, tokenize='porter unicode61')")
    conn.execute("INSERT INTO f VALUES ('some words here')")
    if q is not None:
        conn.execute("SELECT * FROM f WHERE f MATCH ?", (q,)).fetchall()


@pytest.mark.parametrize("n", [0, 1, search.KEYWORD_WORDS, search.KEYWORD_WORDS + 1, 500])
def test_a_long_query_is_searched_by_the_words_at_its_two_ends(tmp_path: Path, n: int) -> None:
    """Up to KEYWORD_WORDS distinct content words are all searched; past that, the first and
    the last KEYWORD_WORDS / 2 of them (a question before or after a pasted log keeps its
    words, the log's middle is not searched), each once, in the text's order."""
    store = Store.open(tmp_path / "db.sqlite")
    body = [f"w{i}" for i in range(n)]
    text = " ".join(["the", *body, *body[-3:], "what", "zebra?"])  # repeats, stop words
    got = search.keyword_words(store, text)
    distinct = [*body, "zebra"]
    half = search.KEYWORD_WORDS // 2
    if len(distinct) <= search.KEYWORD_WORDS:
        assert got == distinct
    else:
        assert got == distinct[:half] + distinct[-half:]
    assert len(got) == len(set(got)) <= search.KEYWORD_WORDS


@pytest.mark.parametrize("n", [5, 200])
def test_bulk_and_single_inserts_index_full_text_alike(tmp_path: Path, n: int) -> None:
    """Outside the daemon (Store.fts_lag 0) each transaction indexes the full text of what it
    wrote, a batch in one statement: nothing is missed, nothing waits after the commit."""
    store = Store.open(tmp_path / "db.sqlite")
    ctx = Context(user="u")
    items = [write.prepare({"content": f"bulkword{i} shared"}, where=f"line {i}") for i in range(n)]
    with store.transaction():
        write.remember_many(store, ctx, items)
    with store.transaction():
        write.remember(store, ctx, write.prepare({"content": "lonely zebra"}, where="x"))
    conn = store.conn
    assert len(set(core.full_text_tail(conn))) == 1
    assert dbmod.scalar(conn, "SELECT count(*) FROM memories_fts WHERE memories_fts MATCH "
                        "'shared'") == n
    for i in (0, n - 1):
        assert dbmod.scalar(conn, "SELECT count(*) FROM memories_fts WHERE memories_fts MATCH ?",
                            (f"bulkword{i}",)) == 1
    assert dbmod.scalar(conn, "SELECT count(*) FROM memories_fts WHERE memories_fts MATCH "
                        "'zebra'") == 1


def test_an_ended_session_or_task_takes_no_more_memories(tmp_path: Path) -> None:
    from db0.store import sessions

    store = Store.open(tmp_path / "db0.sqlite3")
    ctx = Context("ada", agent="cli", session="ci-run-42", task="fix-ci")
    for scope in ("session", "task"):
        with store.transaction():
            r = write.remember(store, ctx, write.prepare({"content": f"a {scope} note",
                                                          "scope": scope}))
        assert r["status"] == "stored"
    with store.transaction():
        sessions.end_task(store, "fix-ci")
        sessions.end_session(store, "ci-run-42")
    for scope, what in (("session", "session ci-run-42"), ("task", "task fix-ci")):
        before = store.conn.execute("SELECT count(*) FROM memories").fetchone()[0]
        with pytest.raises(InvalidError, match=f"{what} has ended"), store.transaction():
            write.remember(store, ctx, write.prepare({"content": "late", "scope": scope}))
        assert store.conn.execute("SELECT count(*) FROM memories").fetchone()[0] == before
    with store.transaction():  # other scopes of the same context still write
        assert write.remember(store, ctx, write.prepare({"content": "a user fact"}))["status"] \
            == "stored"


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_bm25_from_the_text_equals_fts5s(tmp_path_factory: pytest.TempPathFactory,
                                         data: st.DataObject) -> None:
    """search.bm25_of (a few memories scored from their text) gives FTS5's own bm25() for
    the same scoped query, memory by memory, and leaves out the same non-matches."""
    import random

    rng = random.Random(data.draw(st.integers(0, 10**6)))
    vocab = ["deploy", "deploys", "running", "runs", "staging", "port", "coffee", "budget",
             "postgres", "the", "a", "cat", "editor", "helix", "Über", "naïve", "x1", "Happy",
             "happiness", "mobility", "filing", "hoping", "agreed", "ponies", "relational",
             "Ubers", "uber", "café", "cafe",
             # words of several tokens, which FTS5 reads as phrases, and their parts alone
             "fts_lag", "fts", "lag", "lag_fts", "max_frame_mb", "frame", "a_a", "x1_2"]
    store = Store.open(tmp_path_factory.mktemp("bm") / "db0.sqlite3")
    users = [Context(u) for u in ("ada", "bob")]
    for i in range(data.draw(st.integers(1, 80))):
        text = " ".join(rng.choice(vocab) for _ in range(rng.randint(1, 25)))
        with store.transaction():
            write.remember(store, users[i % 2], write.prepare(
                {"content": f"{text} n{i}", "scope": rng.choice(["user", "agent"])}))
    words = data.draw(st.lists(st.sampled_from(vocab), min_size=1, max_size=4, unique=True))
    words = search.keyword_words(store, " ".join(words)) or ["deploy"]
    match = search.scoped_match(search.fts_query(" ".join(words)) or '"deploy"', users[0],
                                None)
    every = {int(r): float(s) for r, s in store.conn.execute(
        "SELECT rowid, -bm25(memories_fts, 1.0, 0.0) FROM memories_fts "
        "WHERE memories_fts MATCH ?", (match,))}
    visible = [int(r) for (r,) in store.conn.execute(
        "SELECT rid FROM memories WHERE owner IN ('ada', 'cli') OR scope='agent'")]
    mine = search.bm25_of(store, words, visible)
    assert mine is not None
    assert set(mine) == set(every), (words, sorted(set(mine) ^ set(every)))
    for rid, score in every.items():
        assert mine[rid] == pytest.approx(score, rel=1e-9, abs=1e-12), (rid, words)


def test_bm25_of_takes_a_document_count_above_the_row_count(tmp_path: Path) -> None:
    """A cached document count (feedback's, up to _DF_TTL_S old) may exceed the rows there
    are now: the term's idf is FTS5's floor, not a math domain error."""
    store = Store.open(tmp_path / "db0.sqlite3")
    ctx = Context("ada")
    for text in ("deploy the kiwi", "mango deploy", "a third note"):
        with store.transaction():
            write.remember(store, ctx, write.prepare({"content": text}))
    with store.transaction():
        core.flush_full_text(store.conn)
    rids = [int(r) for (r,) in store.conn.execute("SELECT rid FROM memories")]
    fresh = search.bm25_of(store, ["kiwi"], rids)
    stale = search.bm25_of(store, ["kiwi"], rids, counts={"kiwi": 100})
    assert fresh is not None and stale is not None and set(stale) == set(fresh) and stale
    assert all(0 < v < min(fresh.values()) for v in stale.values())


PORTER_ENDINGS = ["", "s", "es", "sses", "ies", "ed", "eed", "ing", "y", "e", "ly", "ational",
                  "tional", "enci", "anci", "izer", "bli", "abli", "alli", "entli", "eli", "ousli",
                  "ization", "ation", "ator", "alism", "iveness", "fulness", "ousness", "aliti",
                  "iviti", "biliti", "bility", "logi", "icate", "ative", "alize", "iciti", "ical",
                  "ful", "ness", "al", "ance", "ence", "er", "ic", "able", "ible", "ant", "ement",
                  "ment", "ent", "ion", "tion", "ou", "ism", "ate", "iti", "ity", "ous", "ive",
                  "ize", "at", "bl", "iz", "ating", "ated", "ingly", "ities", "nesses"]


@settings(max_examples=400, deadline=None)
@given(st.text("abcdefghijklmnopqrstuvwxyzAEIOUY0", min_size=1, max_size=8),
       st.sampled_from(PORTER_ENDINGS), st.sampled_from(PORTER_ENDINGS))
def test_a_porter_stem_less_its_last_letter_is_a_prefix_of_the_word(
        root: str, first: str, second: str) -> None:
    """bm25_of skips tokenizing an ASCII text holding no term's stem-less-last-letter: that
    holds only if porter keeps the word up to its stem's last letter (it rewrites endings)."""
    word = root + first + second
    tokenize = apsw.Connection(":memory:").fts5_tokenizer("porter", ["unicode61"])
    for t in search._tokens(tokenize, word, search._FTS5_TOKENIZE_DOCUMENT):
        assert word.lower().startswith(t[:-1]), (word, t)


def _tokens_by_the_rules(text: str) -> int:
    """db0-conservative-v1 read literally from store/tokens.py's docstring, one piece at a time."""
    import re

    n = 0
    for piece in re.findall(r"[A-Za-z]+|[0-9]+|\n|[ \t]{2,}|[ \t]|[\x21-\x7e]|[^\x00-\x7f]"
                            r"|[\x00-\x1f\x7f]", text):
        if piece.isascii() and piece.isalpha():
            n += -(-len(piece) // 4)
        elif piece.isascii() and piece.isdigit():
            n += -(-len(piece) // 3)
        elif piece in (" ", "\t"):
            pass
        elif piece.isascii():
            n += 1
        else:
            n += len(piece.encode("utf-8", "surrogatepass"))
    return n


@settings(max_examples=500, deadline=None)
@given(st.text(st.one_of(st.sampled_from("aZ09 \t\n\r\x00\x7f.-_~`{é中🙂"), st.characters()),
               max_size=60))
def test_token_count_follows_its_rules_and_adds_over_lines(text: str) -> None:
    from db0.store import tokens

    assert tokens.count(text) == _tokens_by_the_rules(text)
    assert tokens.count(text + "\n" + text) == 2 * tokens.count(text) + 1


def test_token_count_examples() -> None:
    from db0.store import tokens

    assert [tokens.count(t) for t in ("", " ", "  ", "abcd", "abcde", "1234", "a, b", "é",
                                      "\ud800", "x\ty")] == [0, 0, 1, 1, 2, 2, 3, 2, 3, 2]


def test_feedback_words_find_what_the_first_hit_names(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Pseudo-relevance feedback: the only memory sharing a word with the query names its
    subject ("pottery"), and a memory about that subject, sharing no word with the query, is
    found through it; a query no memory matches still finds nothing."""
    store = Store.open(tmp_path / "db0.sqlite3")
    ctx = Context("ada")
    first = "Melanie: I signed up for a pottery class to destress after work."
    then = "Melanie: The kiln fired our new pottery bowls, glazed blue."
    with store.transaction():
        for i in range(100):  # unrelated memories: the subject's words are rare in the store
            write.remember(store, ctx, write.prepare({"content": f"filler note {i} w{i}"}))
        for text in (first, then):
            write.remember(store, ctx, write.prepare({"content": text}))
    assert "pottery" in search.feedback_words(
        store, ["destress"], [int(dbmod.scalar(store.conn, "SELECT max(rid) FROM memories")) - 1])
    assert then not in [r["content"] for r in search.recall(store, ctx, "What helps me destress?",
                                                             5)]  # off unless asked for
    res = search.recall(store, ctx, "What helps me destress?", 5, feedback=True)
    assert [r["content"] for r in res[:2]] == [first, then]
    assert "bm25" not in res[1]["score_parts"] and res[1]["score_parts"]["feedback"] > 0
    assert search.recall(store, ctx, "quasar zeppelin", 5, feedback=True) == []
    # "auto" (None): on in a store of at most FEEDBACK_AUTO_ROWS memories, off above it
    def ranked(feedback: bool | None) -> list[tuple[str, dict[str, Any]]]:
        found = search.recall(store, ctx, "What helps me destress?", 5, feedback=feedback)
        return [(r["id"], r["score_parts"]) for r in found]

    assert ranked(None) == ranked(True) != ranked(False)
    rows = search.store_rows(store)
    assert rows == 102
    monkeypatch.setattr(search, "FEEDBACK_AUTO_ROWS", rows - 1)
    assert ranked(None) == ranked(False)


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_first_passing_reads_ranked_rows_in_order_and_only_as_many_as_it_needs(
        tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    """search._first_passing: the first `want` rows of a ranking (rids of any memory, or of
    none) that pass the filters, in the ranking's order, against a filter of every row. Rows
    are looked at in order (each look is a read of the memory): when the first `want` all
    pass, no row after them is looked at."""
    store = Store.open(tmp_path_factory.mktemp("fp") / "db0.sqlite3")
    ctx, other = Context("ada"), Context("bob")
    for i in range(data.draw(st.integers(0, 40))):
        with store.transaction():
            write.remember(store, data.draw(st.sampled_from([ctx, other])),
                           write.prepare({"content": f"note {i}", "scope": "user"}))
    rids = [int(r) for (r,) in store.conn.execute("SELECT rid FROM memories")]
    ranked = [(r, float(i)) for i, r in enumerate(data.draw(st.permutations(
        [*rids, 10**9 + 1, 10**9 + 2])))]  # the last two: no memory has them
    want = data.draw(st.integers(0, len(ranked) + 2))
    where, args = search.Filters().sql(ctx)
    ok = search._passing(store, where, args, [r for r, _ in ranked])
    looked: list[int] = []
    real = search._passing

    def counted(s: Store, w: str, a: list[Any], chunk: list[int]) -> set[int]:
        looked.extend(chunk)
        return real(s, w, a, chunk)

    search._passing = counted  # type: ignore[assignment]
    try:
        got = search._first_passing(store, where, args, ranked, want)
    finally:
        search._passing = real  # type: ignore[assignment]
    assert got == [x for x in ranked if x[0] in ok][:want]
    assert looked == [r for r, _ in ranked[:len(looked)]]  # in order, each once
    if all(r in ok for r, _ in ranked[:want]):
        assert len(looked) == min(want, len(ranked))
    store.close()


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_keyword_candidates_are_the_best_of_the_newest_visible_matches(
        tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    """keyword_candidates against its definition, computed the slow way. Past KEYWORD_SCAN
    matches in a big visible scope: the `limit` best (bm25) visible ones of the store's
    KEYWORD_SCAN newest matches, when `limit` of the best SPARE x `limit` of those are
    visible; else the `limit` best of the KEYWORD_SCAN newest matches the context may see,
    whichever way it ranks them (a big visible scope is ranked without its partition
    phrase, visibility checked after, batch by batch; the best rows may all belong to
    someone else)."""
    import random

    rng = random.Random(data.draw(st.integers(0, 10**6)))
    scan = data.draw(st.integers(3, 40))
    old = search.KEYWORD_SCAN, search.PRUNE_MIN_ROWS
    search.KEYWORD_SCAN, search.PRUNE_MIN_ROWS = scan, 10**9
    try:
        vocab = ["deploy", "staging", "port", "coffee", "budget", "postgres", "cat", "helix"]
        store = Store.open(tmp_path_factory.mktemp("kc") / "db0.sqlite3")
        people = [Context("ada", agent=a) for a in ("x", "y")] + [Context("bob")]
        share = data.draw(st.sampled_from([0.1, 0.5, 0.9]))  # of rows the reader may see
        for i in range(data.draw(st.integers(1, 150))):
            text = " ".join(rng.choice(vocab) for _ in range(rng.randint(1, 12)))
            who = people[0] if rng.random() < share else rng.choice(people[1:])
            with store.transaction():
                write.remember(store, who, write.prepare(
                    {"content": f"{text} n{i}", "scope": rng.choice(["user", "agent"])}))
        ctx = people[0]
        scopes = data.draw(st.sampled_from([None, ["agent"], ["user"]]))
        limit = data.draw(st.integers(1, 20))
        query = " ".join(data.draw(st.lists(st.sampled_from(vocab), min_size=1, max_size=3)))
        f = search.Filters(scopes=scopes)
        got = search.keyword_candidates(store, ctx, query, f, limit)
        plain = search.keyword_query(store, query)
        assert plain is not None
        where, args = f.sql(ctx)
        every = store.conn.execute(
            "SELECT m.rid, -bm25(memories_fts, 1.0, 0.0) FROM memories_fts JOIN memories m "
            f"ON m.rid = memories_fts.rowid WHERE memories_fts MATCH ? AND {where} "
            "ORDER BY m.rid DESC", [plain, *args]).fetchall()
        seen = {r for r, _ in every}

        def best_of(rows: list[Any]) -> bool:
            want = sorted(rows, key=lambda r: -r[1])[:limit]
            cut = want[-1][1] if want else None
            return ([s for _, s in got] == pytest.approx([s for _, s in want], rel=1e-9)
                    and {r for r, s in got if s != cut} == {r for r, s in want if s != cut}
                    and all(r in {x for x, _ in rows} for r, _ in got))

        # The store's newest `scan` matches, whoever may see them (in a big visible scope):
        # which of them a batch of SPARE x limit holds is open only among equal scores.
        store_wide = store.conn.execute(
            "SELECT rowid, -bm25(memories_fts, 1.0, 0.0) FROM memories_fts "
            "WHERE memories_fts MATCH ? ORDER BY rowid DESC", [plain]).fetchall()
        big = dbmod.scalar(store.conn, f"SELECT count(*) FROM memories m WHERE {where}",
                           args) > scan
        if not big or len(store_wide) < scan:
            assert best_of(every[:scan])
        else:
            window = [r for r in store_wide[:scan] if r[0] in seen]
            edge = sorted(store_wide[:scan], key=lambda r: -r[1])[:search.SPARE * limit][-1][1]
            surely = sum(s > edge for _, s in window) >= limit  # in the batch whatever the order
            maybe = sum(s >= edge for _, s in window) >= limit
            if surely:
                assert best_of(window)
            elif not maybe:
                assert best_of(every[:scan])
            else:
                assert best_of(window) or best_of(every[:scan])
    finally:
        search.KEYWORD_SCAN, search.PRUNE_MIN_ROWS = old


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_recall_skips_bm25_of_the_others_only_when_the_keyword_side_holds_every_match(
        tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    """When the keyword candidates are every visible match (fewer than the pool, no scan cut),
    recall gives the other candidates no BM25 without computing it: the same results and
    score parts as when it computes every one, whatever the store, scopes and query."""
    import random

    import numpy as np

    from db0.store import vectors

    rng = random.Random(data.draw(st.integers(0, 10**6)))
    nrng = np.random.default_rng(rng.randrange(10**6))
    store = Store.open(tmp_path_factory.mktemp("km") / "db0.sqlite3")
    with store.transaction():
        mid = vectors.model_id(store, "test-model", "0" * 64, 8)
    vocab = ["deploy", "staging", "port", "coffee", "budget", "postgres", "cat", "helix",
             "the", "a", "of"]
    people = [Context("ada", agent=a, session=s) for a in ("x", "y") for s in ("s1", "s2")]
    for i in range(data.draw(st.integers(1, 120))):
        text = " ".join(rng.choice(vocab) for _ in range(rng.randint(1, 10)))
        if rng.random() < 0.2:
            text += "?"
        with store.transaction():
            write.remember(store, rng.choice(people), write.prepare(
                {"content": f"{text} n{i}", "scope": rng.choice(["user", "agent", "session"])}))
            if rng.random() < 0.9:  # a few still wait for their vector
                (rid, h), = store.conn.execute(
                    "SELECT rid, content_hash FROM memories ORDER BY rid DESC LIMIT 1")
                v = nrng.normal(size=8).astype(np.float32)
                v /= np.linalg.norm(v)
                vectors.put(store, mid, [(int(rid), str(h), vectors.to_blob(v))])
    ctx = people[0]
    f = search.Filters(scopes=data.draw(st.sampled_from([None, ["agent"], ["user", "session"]])))
    k = data.draw(st.integers(1, 12))
    query = " ".join(data.draw(st.lists(st.sampled_from(vocab), min_size=1, max_size=3)))
    q = nrng.normal(size=8).astype(np.float32)
    qv = search.QueryVector(mid, q / np.linalg.norm(q))
    indexed, pool = search._indexed_candidates, search.POOL

    def never_complete(*a: Any, **kw: Any) -> Any:
        return indexed(*a, **kw)[0], False

    search.POOL = 4  # pools smaller than the matches, as well as larger
    try:
        with held_clock():  # the two recalls age their memories alike
            shortcut = search.recall(store, ctx, query, k, f, qvec=qv, feedback=True)
            search._indexed_candidates = never_complete  # type: ignore[assignment]
            full = search.recall(store, ctx, query, k, f, qvec=qv, feedback=True)
    finally:
        search._indexed_candidates, search.POOL = indexed, pool  # type: ignore[assignment]
    assert [(r["id"], r["score_parts"]) for r in shortcut] == \
        [(r["id"], r["score_parts"]) for r in full]


def _conversations(store: Store, rng: Any, n: int, dim: int = 8) -> tuple[int, list[Context]]:
    """`n` memories of a few agents and sessions, some questions, some minutes or hours apart,
    some tagged, some without a vector yet, some superseded or forgotten; the model id."""
    import numpy as np

    from db0.store import memories, vectors

    nrng = np.random.default_rng(rng.randrange(10**6))
    with store.transaction():
        mid = vectors.model_id(store, "test-model", "0" * 64, dim)
    vocab = ["deploy", "staging", "port", "coffee", "budget", "postgres", "cat", "helix",
             "the", "a", "of"]
    people = [Context("ada", agent=a, session=s) for a in ("x", "y") for s in ("s1", "s2")]
    ts, ids = 1.7e9, []
    for i in range(n):
        ts += rng.choice([30, 600, 5000])
        text = " ".join(rng.choice(vocab) for _ in range(rng.randint(1, 10)))
        with store.transaction():
            got = write.remember(store, rng.choice(people), write.prepare(
                {"content": f"{text} n{i}{'?' if rng.random() < 0.2 else ''}",
                 "scope": rng.choice(["user", "agent", "session"]), "created_at": ts,
                 "tags": ["t"] if rng.random() < 0.3 else []}))
            ids.append(got["id"])
            if rng.random() < 0.9:  # a few still wait for their vector
                (rid, h), = store.conn.execute(
                    "SELECT rid, content_hash FROM memories ORDER BY rid DESC LIMIT 1")
                v = nrng.normal(size=dim).astype(np.float32)
                v /= np.linalg.norm(v)
                vectors.put(store, mid, [(int(rid), str(h), vectors.to_blob(v))])
            if rng.random() < 0.1:
                memories.forget(store, rng.choice(ids))
    return mid, people


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_a_small_scope_read_at_once_ranks_as_the_statements_do(
        tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    """A scope of at most SMALL_SCOPE memories is read whole while the query is embedded
    (search.SmallScope): its neighbours equal the neighbours statement's for any memories and
    filters, and recall gives the results it gives through the statements and the index."""
    import random

    import numpy as np

    rng = random.Random(data.draw(st.integers(0, 10**6)))
    store = Store.open(tmp_path_factory.mktemp("ss") / "db0.sqlite3")
    mid, people = _conversations(store, rng, data.draw(st.integers(1, 80)))
    ctx = rng.choice(people)
    f = search.Filters(scopes=data.draw(st.sampled_from([None, ["agent"], ["user", "session"]])),
                       tags=data.draw(st.sampled_from([[], ["t"]])))
    small = search.SmallScope.read(store, ctx, f)
    assert small is not None
    every = [int(r) for (r,) in store.conn.execute("SELECT rid FROM memories")]
    some = rng.sample(every, rng.randint(0, len(every)))
    assert search.neighbours(store, some, f, ctx, small) == search.neighbours(store, some, f, ctx)
    k = data.draw(st.integers(1, 12))
    query = " ".join(data.draw(st.lists(st.sampled_from(["deploy", "port", "cat", "the"]),
                                        min_size=1, max_size=3)))
    q = np.random.default_rng(rng.randrange(10**6)).normal(size=8).astype(np.float32)
    qv = search.QueryVector(mid, q / np.linalg.norm(q))
    limit = search.SMALL_SCOPE
    try:
        fast = search.recall(store, ctx, query, k, f, qvec=qv, feedback=True)
        search.SMALL_SCOPE = 0
        slow = search.recall(store, ctx, query, k, f, qvec=qv, feedback=True)
    finally:
        search.SMALL_SCOPE = limit
    assert [r["id"] for r in fast] == [r["id"] for r in slow]
    for a, b in zip(fast, slow, strict=True):
        assert a["score_parts"].keys() == b["score_parts"].keys()
        assert a["score"] == pytest.approx(b["score"], abs=1e-5)


def test_a_scope_past_the_small_size_is_searched_as_before(tmp_path: Path) -> None:
    """SmallScope reads no scope larger than SMALL_SCOPE memories or SMALL_BYTES of text,
    nor filters that see other than the live memories (superseded ones, or as of a time)."""
    import random

    store = Store.open(tmp_path / "db0.sqlite3")
    _, people = _conversations(store, random.Random(7), 30)
    ctx = people[0]
    assert search.SmallScope.read(store, ctx, search.Filters()) is not None
    assert search.SmallScope.read(store, ctx, search.Filters(include_superseded=True)) is None
    assert search.SmallScope.read(store, ctx, search.Filters(as_of=2e9)) is None
    limit, most = search.SMALL_SCOPE, search.SMALL_BYTES
    search.SMALL_SCOPE = 3
    try:
        assert search.SmallScope.read(store, ctx, search.Filters()) is None
        search.SMALL_SCOPE, search.SMALL_BYTES = limit, 100
        assert search.SmallScope.read(store, ctx, search.Filters()) is None
    finally:
        search.SMALL_SCOPE, search.SMALL_BYTES = limit, most


def test_reading_a_small_scope_costs_what_it_holds_not_the_store(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SmallScope reads its memories through the owner index and by row: no statement of it
    scans the table, however many memories other scopes hold (the filters' OR of partitions
    alone would be run as a scan)."""
    import json

    from db0.store import sqlstats

    out = tmp_path / "stats.json"
    monkeypatch.setenv(sqlstats.ENV, str(out))
    store = Store.open(tmp_path / "db0.sqlite3")
    try:
        with store.transaction():
            for a in range(20):
                write.remember_many(store, Context("u", agent=f"other-{a}"), [
                    write.prepare({"content": f"note {i} of {a}", "scope": "agent"})
                    for i in range(200)])
            write.remember_many(store, Context("u", agent="me"), [
                write.prepare({"content": f"mine {i}", "scope": s})
                for i in range(10) for s in ("user", "agent")])
        sqlstats.dump()
        before = json.loads(out.read_text())
        small = search.SmallScope.read(store, Context("u", agent="me", session="s"),
                                       search.Filters(tags=[]))
        assert small is not None and len(small.passing) == 20
    finally:
        store.close()
    sqlstats.dump()
    after = json.loads(out.read_text())
    ran = {k: v for k, v in after.items() if v["runs"] > before.get(k, {}).get("runs", 0)}
    assert ran
    for sql, st_ in ran.items():
        assert st_["fullscan_steps"] == 0, sql
        assert st_["max_vm_steps"] < 4_000, sql  # the store holds 4,020 memories


def test_recall_asks_for_a_pending_query_vector_only_after_its_keyword_side(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon embeds a query on another thread while recall reads the keyword side (which
    needs no vector): recall calls a pending vector once its keyword candidates are in, and
    ranks as it does with the vector given at once."""
    import numpy as np

    store = Store.open(tmp_path / "db0.sqlite3")
    ctx = Context("ada")
    for text in ("deploy staging on port 8080", "coffee budget for march",
                 "staging postgres upgrade tonight"):
        with store.transaction():
            write.remember(store, ctx, write.prepare({"content": text}))
    calls: list[str] = []
    keyword = search.keyword_side

    def spy(*a: Any, **kw: Any) -> Any:
        calls.append("keyword")
        return keyword(*a, **kw)

    monkeypatch.setattr(search, "keyword_side", spy)
    qv = search.QueryVector(1, np.full(384, 384 ** -0.5, dtype=np.float32))

    def pending() -> search.QueryVector:
        calls.append("vector")
        return qv

    got = search.recall(store, ctx, "staging deploy", 5, qvec=pending)
    assert calls == ["keyword", "vector"]
    want = search.recall(store, ctx, "staging deploy", 5, qvec=qv)
    assert got and [r["id"] for r in got] == [r["id"] for r in want]
    assert {r["content"] for r in got} >= {"deploy staging on port 8080"}


def _index_sql(conn: apsw.Connection) -> dict[str, str]:
    return {str(n): str(s) for n, s in conn.execute(
        "SELECT name, sql FROM sqlite_schema WHERE type='index' AND sql IS NOT NULL")}


def test_a_large_batch_rebuilds_the_indexes_in_its_transaction(tmp_path: Path) -> None:
    """A batch that is a large share of its table drops the secondary indexes of `memories`
    and `ops` and creates them again in the same transaction: afterwards the schema is the one
    the migrations make, the planner statistics are kept, lookups find the new rows through
    the indexes; a batch that fails halfway leaves neither its rows nor a missing index."""
    from db0.store import core

    store = Store.open(tmp_path / "db.sqlite")
    conn = store.conn
    ctx = Context(user="u")
    with store.transaction():
        write.remember_many(store, ctx, [write.prepare({"content": f"seed {i}"})
                                         for i in range(50)])
    conn.execute("ANALYZE")
    stats = sorted(conn.execute("SELECT tbl, idx, stat FROM sqlite_stat1"))
    before = _index_sql(conn)
    n = core.REBUILD_MIN
    statements: list[str] = []

    def trace(_cur: object, sql: str, _bindings: object) -> bool:
        statements.append(sql)
        return True

    conn.exec_trace = trace
    with store.transaction():
        res = write.remember_many(store, ctx, [write.prepare({"content": f"bulk line {i}"})
                                               for i in range(n)])
    conn.exec_trace = None
    assert any(s.startswith("CREATE INDEX memories_owner_hash") for s in statements)
    assert any(s.startswith("CREATE INDEX ops_memory") for s in statements)
    assert _index_sql(conn) == before and dbmod.schema_drift(conn) == []
    assert sorted(conn.execute("SELECT tbl, idx, stat FROM sqlite_stat1")) == stats
    assert dbmod.scalar(conn, "SELECT count(*) FROM memories") == 50 + n
    assert dbmod.scalar(conn, "SELECT count(*) FROM ops") == 50 + n
    plan = " ".join(str(r) for r in conn.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM memories WHERE content_hash=? AND scope=? "
        "AND owner=? AND superseded_by IS NULL AND forgotten_ts IS NULL", ("x", "user", "u")))
    assert "memories_owner_hash" in plan
    with store.transaction():
        again = write.remember_many(store, ctx, [write.prepare({"content": "bulk line 7"})])
    assert again[0] == {"id": res[7]["id"], "status": "duplicate", "scope": "user"}
    with pytest.raises(RuntimeError), store.transaction():
        write.remember_many(store, ctx, [write.prepare({"content": f"lost {i}"})
                                         for i in range(3 * n)])
        raise RuntimeError("killed before the commit")
    assert dbmod.scalar(conn, "SELECT count(*) FROM memories") == 50 + n
    assert _index_sql(conn) == before


def test_op_text_is_what_json_dumps_writes() -> None:
    """The op log's payload text, built without json.dumps on the bulk path, is the same."""
    import json

    from db0.store import core

    base = {"id": "01jabc", "content": "x", "content_hash": "ab" * 32, "scope": "agent",
            "owner": "bü\"lk\n", "user_id": "u", "agent_id": "a", "session_id": None,
            "task_id": "t\u2028", "key": None, "metadata": '{"k": "\\n"}', "tags": '["a"]',
            "pinned": 0, "created_at": "2026-12-02T20:00:00.123Z",
            "created_ts": 1764707726.1234567, "updated_ts": 1e-7, "expires_ts": None,
            "superseded_by": None, "superseded_ts": None, "supersede_reason": None,
            "forgotten_ts": None, "hlc": "1764707726123.00000.abcdef", "device_id": "abcdef"}
    assert tuple(base) == core.NEW_STATE_KEYS
    for state in (base, {**base, "pinned": True, "created_ts": 5},
                  {**base, "expires_ts": float("inf")}, {**base, "metadata": {"a": 1}},
                  {k: v for k, v in base.items() if k != "tags"}):
        want = json.dumps(core.op_payload(state), ensure_ascii=False, separators=(",", ":"))
        assert core.op_json(state) == want
        assert core.new_op_json(state) == want


def test_a_staged_import_commits_like_one_batch_and_touches_no_row_before(
        tmp_path: Path) -> None:
    """Staged batches commit with the same outcome as one remember_many of all their lines, in
    line order whatever order they came in: duplicates within the import and against stored
    memories, the redaction totals. Staging writes nothing to the database; a batch sent again
    replaces itself; drop and clear report what they dropped, and clear keeps a fresh import."""
    store = Store.open(tmp_path / "db.sqlite")
    conn = store.conn
    ctx = Context(user="u")
    with store.transaction():
        old = write.remember(store, ctx, write.prepare({"content": "already here"}))
    changes = conn.total_changes()
    b1 = [write.prepare({"content": f"line {i}"}) for i in range(5)]
    b2 = [write.prepare({"content": "line 3"}), write.prepare({"content": "already here"}),
          write.prepare({"content": "password=hunter2345"})]
    last = [write.prepare({"content": "line 0"}), write.prepare({"content": "the end"})]
    staging = write.Staging()
    assert staging.stage("imp", 6, b2) == 3
    assert staging.stage("imp", 1, b1) == 8
    assert staging.stage("imp", 6, b2) == 8  # sent again
    assert staging.lines() == 8
    assert conn.total_changes() == changes
    staged = staging.take("imp")
    assert staging.lines() == 0 and staging.take("imp") == []
    with store.transaction():
        out, redacted = write.commit_import(store, ctx, "imp", staged, last, expect=10)
    assert [st for _, st in out] == ["stored"] * 5 + [
        "duplicate", "duplicate", "stored", "duplicate", "stored"]
    assert out[5][0] == out[3][0] and out[8][0] == out[0][0]
    assert out[6][0] == old["id"]
    assert redacted == {"password-assignment": 1}
    assert dbmod.scalar(conn, "SELECT count(*) FROM memories") == 8
    assert write.import_done(store, "imp") is not None
    staging.stage("a", 1, b1)
    staging.stage("a", 6, b2)
    staging.stage("b", 1, last)
    assert staging.drop("a") == 8 and staging.drop("a") == 0
    assert staging.clear(idle=60.0) == 0 and staging.lines() == 2
    assert staging.clear(idle=0.0) == 2 and staging.lines() == 0


@pytest.mark.parametrize("case", ["plain, a large share", "one line has a key",
                                  "a small share of the table"])
def test_a_large_import_commits_chunk_by_chunk_as_one_batch_would(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    """commit_import writes an import a chunk at a time (its memory is a chunk's) with the
    outcome of one remember_many of all its lines, in another store: each line stored or the
    duplicate of the same earlier line or stored memory, across chunks; the same rows, ops,
    full text and redaction totals. An import of plain lines that is a large share of the
    table rebuilds each index once, around all the chunks; one that is a small share leaves
    them in place; both leave the schema as it was."""
    monkeypatch.setattr(write, "COMMIT_CHUNK", 70)
    monkeypatch.setattr(core, "REBUILD_MIN", 100)
    n, seed = 400, 2_000 if case == "a small share of the table" else 30
    ctx = Context(user="u")

    def line(i: int) -> dict[str, Any]:
        item: dict[str, Any] = {"content": f"line {i % 250}"}  # lines 250+ repeat earlier ones
        if i == 310:
            item["content"] = "seed 3"  # a stored memory again
        if i == 320:
            item["content"] = "token password=hunter2345"
        if i == 330 and case == "one line has a key":
            item["key"] = "k"
        return item

    def run(path: Path, staged: bool) -> tuple[list[str], dict[str, int], list[Any], list[str]]:
        store = Store.open(path)
        conn = store.conn
        with store.transaction():
            seeded = write.remember_many(store, ctx, [write.prepare({"content": f"seed {i}"})
                                                      for i in range(seed)])
        label = {r["id"]: f"seed {i}" for i, r in enumerate(seeded)}
        before = _index_sql(conn)
        ps = [write.prepare(line(i)) for i in range(n)]
        statements: list[str] = []
        conn.exec_trace = lambda _c, sql, _b: statements.append(sql) or True
        with store.transaction():
            if staged:
                staging = write.Staging()
                for first in range(0, n - 50, 50):
                    staging.stage("imp", first + 1, ps[first:first + 50])
                out, redacted = write.commit_import(store, ctx, "imp", staging.take("imp"),
                                                    ps[n - 50:], expect=n)
            else:
                res = write.remember_many(store, ctx, ps)
                out, redacted = [(r["id"], r["status"]) for r in res], write.redacted_total(ps)
        conn.exec_trace = None
        for i, (mid, status) in enumerate(out):
            if status == "stored":
                label[mid] = f"line {i}"
        shape = [f"{status} {label[mid]}" for mid, status in out]
        assert _index_sql(conn) == before and dbmod.schema_drift(conn) == []
        rows = [conn.execute("SELECT count(*) FROM memories").fetchone(),
                conn.execute("SELECT count(*) FROM ops").fetchone(),
                conn.execute("SELECT count(*) FROM memories_fts WHERE memories_fts MATCH "
                             "'line'").fetchone()]
        store.close()
        return shape, redacted, rows, [s for s in statements if s.startswith("CREATE INDEX")]

    got, redacted, rows, rebuilt = run(tmp_path / "chunks.sqlite", staged=True)
    want, want_redacted, want_rows, _ = run(tmp_path / "one.sqlite", staged=False)
    assert got == want and redacted == want_redacted and rows == want_rows
    assert got[260] == "duplicate line 10" and got[310] == "duplicate seed 3"
    assert redacted == {"password-assignment": 1}
    if case == "plain, a large share":
        names = [s.split()[2] for s in rebuilt]
        assert sorted(names) == sorted(set(names)) and "memories_owner_hash" in names
        assert "ops_memory" in names
    elif case == "a small share of the table":
        assert rebuilt == []


@pytest.mark.parametrize(("expect", "message"), [
    (6, "2 of its 5 staged lines were lost"), (2, "4 lines staged, more than the 2")])
def test_an_import_that_lost_staged_lines_keeps_none(tmp_path: Path, expect: int,
                                                     message: str) -> None:
    """A commit that finds fewer lines staged than the import has (its daemon restarted), or
    more, keeps none and says how many."""
    store = Store.open(tmp_path / "db.sqlite")
    ctx = Context(user="u")
    staging = write.Staging()
    staging.stage("imp", 1, [write.prepare({"content": f"line {i}"}) for i in range(3)])
    with pytest.raises(InvalidError, match=message), store.transaction():
        write.commit_import(store, ctx, "imp", staging.take("imp"),
                            [write.prepare({"content": "last"})], expect=expect)
    assert dbmod.scalar(store.conn, "SELECT count(*) FROM memories") == 0
    assert write.import_done(store, "imp") is None


def test_a_state_change_leaves_the_full_text_index_alone_and_a_new_text_is_indexed(
        tmp_path: Path) -> None:
    """Forgetting or superseding a memory upserts its whole row; the full-text row is
    rewritten only when its text or partition changes (m015), and then it is."""
    from db0.store import memories

    store = Store.open(tmp_path / "db0.sqlite3")
    ctx = Context("ada")
    with store.transaction():
        first = write.remember(store, ctx, write.prepare({"content": "helix is my editor",
                                                          "key": "editor"}))
        other = write.remember(store, ctx, write.prepare({"content": "staging port 8080"}))

    def blocks() -> list[tuple[int, bytes]]:
        return [(int(i), bytes(b)) for i, b in store.conn.execute(
            "SELECT id, block FROM memories_fts_data ORDER BY id")]

    before = blocks()
    with store.transaction():
        memories.forget(store, other["id"])
        write.remember(store, ctx, write.prepare({"content": "helix is my editor",
                                                  "key": "editor", "pinned": True}))
    assert blocks() == before  # no segment written for rows whose text did not change
    with store.transaction():
        store.conn.execute("UPDATE memories SET content='kakoune is my editor' WHERE id=?",
                           (first["id"],))

    def found(word: str) -> list[int]:
        return [int(r) for (r,) in store.conn.execute(
            "SELECT rowid FROM memories_fts WHERE memories_fts MATCH ?", (word,))]

    rid = int(dbmod.scalar(store.conn, "SELECT rid FROM memories WHERE id=?", (first["id"],)))
    assert rid in found("kakoune") and rid not in found("helix")


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_list_reads_the_newest_first_and_gives_the_full_querys_page(
        tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    """list_memories answers from the store's newest memories when they hold the page (ties of
    created_ts included), else from each visible partition's index (superseded ones: the full
    query): the same page as the full query either way, for any scope mix, ties, offset and
    limit (LIST_SCAN made small so every way is taken)."""
    import random

    from db0.store import memories
    from db0.store.memories import visible_sql

    rng = random.Random(data.draw(st.integers(0, 10**6)))
    store = Store.open(tmp_path_factory.mktemp("ls") / "db0.sqlite3")
    people = [Context("ada", agent=a) for a in ("cli", "bot", "cron")] + [Context("bob")]
    stamps = [f"2026-01-0{d}T00:00:00Z" for d in range(1, 6)]  # few: many ties
    with store.transaction():
        for i in range(data.draw(st.integers(0, 60))):
            item = {"content": f"note {i}", "scope": rng.choice(["user", "agent"]),
                    "created_at": rng.choice(stamps)}
            if rng.random() < 0.2:
                item["key"] = f"k{rng.randint(0, 3)}"  # supersedes: not live any more
            write.remember(store, rng.choice(people), write.prepare(item))
    ctx = data.draw(st.sampled_from(people))
    scopes = data.draw(st.sampled_from([None, ["user"], ["agent"], ["user", "agent"]]))
    limit, offset = data.draw(st.integers(1, 12)), data.draw(st.integers(0, 20))
    every = data.draw(st.booleans())  # superseded ones too
    where, args = visible_sql(ctx, scopes, live=not every)
    if every:
        where += " AND m.forgotten_ts IS NULL"
    want = [str(r[0]) for r in store.conn.execute(
        f"SELECT m.id FROM memories m WHERE {where} ORDER BY m.created_ts DESC, m.id DESC "
        "LIMIT ? OFFSET ?", [*args, limit, offset])]
    old = memories.LIST_SCAN
    memories.LIST_SCAN = data.draw(st.sampled_from([1, 2, 20]))
    try:
        got = [r["id"] for r in memories.list_memories(store, ctx, scopes=scopes, limit=limit,
                                                       offset=offset, include_superseded=every)]
    finally:
        memories.LIST_SCAN = old
    assert got == want, (len(got), len(want))


def test_bulk_rows_and_ops_are_the_states_one_by_one_would_write(tmp_path: Path) -> None:
    """remember_many builds its rows and op texts from shared templates, not a state per
    line: every stored row is the state `_new_state` makes for its item (with the id, clock
    and time the batch gave it), every op's payload is `json.dumps` of that state without its
    text, the clock stamps rise in line order, and tags land in memory_tags."""
    import json

    from db0.store import core

    store = Store.open(tmp_path / "db.sqlite")
    ctx = Context(user="u", agent="a\u00e9", session="s1")
    raw: list[dict[str, object]] = []
    for i in range(120):
        it: dict[str, object] = {"content": f"line {i} caf\u00e9 \"q\" \u2028", "scope":
                                 ("user", "agent", "session")[i % 3]}
        if i % 4 == 1:
            it["tags"] = ["b", f"t{i % 3}", "a\u00fc"]
        if i % 5 == 2:
            it["metadata"] = {"k": i % 2, "n\u00e9": "v\n", "f": 0.1}
        if i % 7 == 3:
            it["pinned"] = True
        if i % 6 == 4:
            it["created_at"] = "2023-05-08T13:56:00.5"
        if i % 9 == 5:
            it["ttl"] = "2h"
        if i % 11 == 6:
            it["expires_at"] = "2031-01-01T00:00:00Z"
        raw.append(it)
    raw.append({"content": "line 4 caf\u00e9 \"q\" \u2028", "scope": "agent"})  # a duplicate
    ps = [write.prepare(it) for it in raw]
    with store.transaction():
        out = write.remember_many(store, ctx, ps)
    assert [r["status"] for r in out] == ["stored"] * 120 + ["duplicate"]
    cols = ", ".join(core.STATE_COLUMNS)
    rows = {r[0]: dict(zip(core.STATE_COLUMNS, r, strict=True)) for r in store.conn.execute(
        f"SELECT {cols} FROM memories")}
    ops = list(store.conn.execute("SELECT memory_id, hlc, device_id, kind, payload, created_ts "
                                  "FROM ops ORDER BY seq"))
    assert [o[0] for o in ops] == [r["id"] for r in out[:120]]
    assert [o[1] for o in ops] == sorted(o[1] for o in ops) and len({o[1] for o in ops}) == 120
    for p, res, (mid, hlc, dev, kind, payload, created_ts) in zip(ps, out, ops, strict=False):
        row = rows[mid]
        now = row["updated_ts"]
        want = write._new_state(ctx, p.item, p.item["scope"], ctx.owner(p.item["scope"]),
                                row["content_hash"], now, (row["created_at"], now)
                                if p.item["created_at"] is None else None)
        want.update(id=res["id"], hlc=hlc, device_id=store.device_id)
        assert row == want
        assert (dev, kind, created_ts) == (store.device_id, "import", now)
        assert payload == json.dumps(core.op_payload(want), ensure_ascii=False,
                                     separators=(",", ":"))
        tags = [t for (t,) in store.conn.execute(
            "SELECT tag FROM memory_tags JOIN memories USING (rid) WHERE id=? ORDER BY tag",
            (mid,))]
        assert tags == sorted(p.item["tags"])


def test_bulk_ids_and_stamps_keep_their_formats() -> None:
    from db0.store import ids

    got = ids.new_ids(1764707726123, 2000)
    assert len(set(got)) == 2000 and got == sorted(got)
    one = ids.new_id(1764707726123)
    for i in got:
        assert len(i) == 26 and i[:10] == one[:10]
        assert set(i) <= set(ids._CROCKFORD)
    assert {i[10] for i in got} == set(ids._CROCKFORD)  # every character, the first too
    clock = ids.HybridClock("dev1")
    stamps = [clock.now(), *clock.stamps(250_001), clock.now(), *clock.stamps(3)]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert all(len(s) == 13 + 1 + 5 + 1 + 4 for s in stamps)
    clock._counter = 99_999
    clock._ms = int(stamps[-1].split(".")[0])
    after = clock.now()
    assert after > stamps[-1] and after.split(".")[1] == "00000"


def test_a_plain_memory_validates_as_one_with_every_field() -> None:
    """`_validate`'s short path (content and scope only) gives what the whole path gives when
    the same memory names its other fields with their defaults, errors included."""
    from db0.store.errors import InvalidError

    extra = {"key": None, "tags": [], "metadata": {}, "pinned": False, "ttl": None,
             "created_at": None, "expires_at": None, "id": None}
    for content in (" x ", "caf\u00e9\n", "a" * 100, "", "  ", "a\x00b", "\ud800x", 5, None,
                    "b" * (64 * 1024 + 1)):
        for scope in ("agent", None, "", "galaxy", 3):
            plain: dict[str, object] = {"content": content}
            if scope is not None:
                plain["scope"] = scope
            results = []
            for item in (plain, {**plain, **extra}):
                try:
                    results.append(write._validate(item, "line 7"))
                except InvalidError as e:
                    results.append((str(e), e.hint))
            assert results[0] == results[1], (content, scope)
            if isinstance(results[0], dict):
                assert list(results[0]) == list(results[1])


def test_changes_since_a_checkpoint_cost_the_changes_not_the_store(tmp_path: Path) -> None:
    """Restoring a checkpoint (and the UI's preview of it) lists the session's and task's
    memories changed since its op: read from the ops after it, so memories written before
    the checkpoint, however many, add nothing to the cost."""
    from db0.store import checkpoints, memories

    sess = Context("u", session="s1", task="t1")

    def scenario(store: Store, fillers: int) -> tuple[list[str], int]:
        def remember(ctx: Context, scope: str, texts: list[str]) -> list[str]:
            with store.transaction():
                out = write.remember_many(store, ctx, [write.prepare(
                    {"content": t, "scope": scope}) for t in texts])
            return [str(r["id"]) for r in out]

        if fillers:
            remember(Context("u"), "user", [f"filler {i}" for i in range(fillers)])
        before = remember(sess, "session", ["kept as it was", "to be forgotten"])
        store.conn.execute("ANALYZE")  # statistics present, as another tool may leave them
        mark = int(dbmod.scalar(store.conn, "SELECT max(seq) FROM ops"))
        assert checkpoints.changed_since(store, "s1", "t1", mark) == []
        with store.transaction():
            memories.forget(store, before[1])
        new = remember(sess, "task", ["a task note after the mark"])
        remember(Context("u", session="s2"), "session", ["another session's note"])
        remember(sess, "user", ["a user note: not the session's"])
        got, steps = vm_steps(store.conn, lambda: checkpoints.changed_since(store, "s1", "t1",
                                                                             mark))
        assert got == [before[1], *new]
        assert checkpoints.changed_since(store, "s1", "t1", mark, limit=1) == [before[1]]
        assert checkpoints.changed_since(store, None, None, mark) == []
        return got, steps

    small_store = Store.open(tmp_path / "small.sqlite3")
    big_store = Store.open(tmp_path / "big.sqlite3")
    try:
        _, small = scenario(small_store, 0)
        _, big = scenario(big_store, 3000)
    finally:
        small_store.close()
        big_store.close()
    assert big <= 2 * small + 10, (small, big)


def test_sql_stats_count_each_statement_only_when_asked(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """DB0_SQL_STATS traces the connections opened while it is set (tests/test_scaling.py
    reads it); unset, nothing is traced and no file is written."""
    import json

    from db0.store import sqlstats

    out = tmp_path / "stats.json"
    monkeypatch.delenv(sqlstats.ENV, raising=False)
    store = Store.open(tmp_path / "off.sqlite3")
    store.conn.execute("SELECT count(*) FROM memories").fetchall()
    store.close()
    sqlstats.dump()
    assert not out.exists()
    monkeypatch.setenv(sqlstats.ENV, str(out))
    store = Store.open(tmp_path / "on.sqlite3")
    try:
        with store.transaction():
            write.remember_many(store, Context("u"), [write.prepare({"content": f"n {i}"})
                                                      for i in range(50)])
        for _ in range(3):
            store.conn.execute("SELECT rid FROM memories WHERE content LIKE ?",
                               ("%7%",)).fetchall()
            store.conn.execute("SELECT rid FROM memories WHERE rid IN (?, ?, ?)",
                               (1, 2, 3)).fetchall()
    finally:
        store.close()
    sqlstats.dump()
    stats = json.loads(out.read_text())
    scan = stats["SELECT rid FROM memories WHERE content LIKE ?"]
    assert scan["runs"] == 3 and scan["fullscan_steps"] >= 3 * 49
    assert scan["max_vm_steps"] * 3 >= scan["vm_steps"] > 0
    seek = stats["SELECT rid FROM memories WHERE rid IN (?,...)"]
    assert seek["runs"] == 3 and seek["fullscan_steps"] == 0


def test_opening_for_writing_forgets_planner_statistics(tmp_path: Path) -> None:
    """Statistics left in the file (an ANALYZE, an older db0's `PRAGMA optimize`) are gone
    once the store is opened for writing, for that connection and for readers opened after;
    a memory's tags are then deleted through memory_tags_rid, not a pass over every tag."""
    path = tmp_path / "db0.sqlite3"
    store = Store.open(path)
    with store.transaction():
        write.remember_many(store, Context("u"), [write.prepare(
            {"content": f"note {i}", "tags": ["a" if i % 2 else "b"]}) for i in range(300)])
    store.conn.execute("ANALYZE")
    assert store.conn.execute("SELECT count(*) FROM sqlite_stat1").fetchone()[0] > 0
    store.close()
    store = Store.open(path)
    reader = Store.open(path, readonly=True)
    try:
        assert store.conn.execute("SELECT count(*) FROM sqlite_stat1").fetchone()[0] == 0
        for conn in (store.conn, reader.conn):
            plan = " ".join(str(r) for r in conn.execute(
                "EXPLAIN QUERY PLAN DELETE FROM memory_tags WHERE rid=?", (1,)))
            assert "memory_tags_rid" in plan, plan
    finally:
        reader.close()
        store.close()


def test_purge_erases_a_compaction_summary_that_holds_the_text(tmp_path: Path) -> None:
    """An agent's compaction summary is kept on its agent session and its db0 session; a
    memory whose text it holds, purged, takes both with it, and another session's stays."""
    from db0.store import capture, memories

    store = Store.open(tmp_path / "db0.sqlite3")
    ctx = Context("u", "claude-code")
    with store.transaction():
        for sid, summary in (("a1", "We chose the bucket named quillfrost for backups."),
                             ("a2", "We renamed the CI job.")):
            capture.map_session(store, ctx, "claude-code", sid, "/tmp/p", None)
            capture.set_summary(store, "claude-code", sid, summary)
        mid = write.remember(store, ctx, write.prepare(
            {"content": "the bucket named quillfrost for backups"}))["id"]
        memories.purge(store, mid)
    agent = dict(store.conn.execute("SELECT agent_session, summary FROM agent_sessions"))
    db0 = [r[0] for r in store.conn.execute("SELECT summary FROM sessions ORDER BY summary")]
    assert agent == {"a1": None, "a2": "We renamed the CI job."}
    assert db0 == [None, "We renamed the CI job."]


def test_purge_of_a_short_text_erases_whole_copies_only(tmp_path: Path) -> None:
    """A text under capture.COPY_MIN characters is found inside unrelated texts by chance, so
    purge erases it where it is the whole copy (a prompt of its own) and leaves longer texts
    that merely contain it."""
    from db0.store import capture, memories

    store = Store.open(tmp_path / "db0.sqlite3")
    ctx = Context("u", "claude-code")
    with store.transaction():
        for sid in ("a1", "a2"):
            capture.map_session(store, ctx, "claude-code", sid, "/tmp/p", None)
        capture.note_turn(store, "claude-code", "a1", "user", "ship it")
        capture.note_turn(store, "claude-code", "a2", "user", "did we ship it to staging?")
        mid = write.remember(store, ctx, write.prepare({"content": "ship it"}))["id"]
        memories.purge(store, mid)
    got = dict(store.conn.execute("SELECT agent_session, first_prompt FROM agent_sessions"))
    assert got == {"a1": None, "a2": "did we ship it to staging?"}


def _harbour_store(tmp_path: Path, n: int) -> tuple[Store, Context]:
    """`n` memories that all match "harbour", each by other words too (none near another)."""
    store = Store.open(tmp_path / "db0.sqlite3")
    ctx = Context("u")
    words = ["ferry", "crane", "tide", "pier", "gull", "rope", "buoy", "mast", "keel", "dock"]
    with store.transaction():
        write.remember_many(store, ctx, [write.prepare(
            {"content": f"harbour note {i}: " + " ".join(
                words[(i * 7 + j) % 10] + str(i) for j in range(1 + i % 5))}, where=f"m{i}")
            for i in range(n)])
    return store, ctx


@pytest.mark.usefixtures("still_clock")
def test_recall_leaves_out_what_the_reader_has_and_ranks_the_rest_as_before(
        tmp_path: Path) -> None:
    """recall(exclude=E) is recall without E: the same memories in the same order with the
    same scores, the excluded ones left out (they still lend context, so nothing moves)."""
    store, ctx = _harbour_store(tmp_path, 40)
    full = search.recall(store, ctx, "harbour ferry3 tide", 20)
    assert len(full) == 20
    left_out = {full[0]["id"], full[3]["id"], full[7]["id"]}
    got = search.recall(store, ctx, "harbour ferry3 tide", 10, exclude=left_out)
    want = [r for r in full if r["id"] not in left_out][:10]
    assert [(r["id"], r["score"]) for r in got] == [(r["id"], r["score"]) for r in want]
    assert search.recall(store, ctx, "harbour", 5, exclude=[]) == search.recall(
        store, ctx, "harbour", 5)


@pytest.mark.parametrize("n", [0, 1, 19, 20, 100])
def test_pack_ranks_deeper_only_when_every_result_fitted(tmp_path: Path, n: int) -> None:
    """pack asks recall for pack.FIRST results; only when all of them fitted and recall had
    that many does it ask for the next ones, up to pack.POOL in all. A small budget (a
    prompt's) is filled from the first step; a large one still gets every match up to POOL."""
    from db0.store import pack

    store, ctx = _harbour_store(tmp_path, n)
    small = pack.pack(store, ctx, "harbour", 60)
    big = pack.pack(store, ctx, "harbour", 200_000)
    assert big["considered"] == len(big["items"]) == min(n, pack.POOL)
    assert small["considered"] == min(n, pack.FIRST)
    assert 0 < len(small["items"]) < pack.FIRST if n else small["items"] == []
    first = [r["id"] for r in search.recall(store, ctx, "harbour", pack.FIRST)]
    taken = {i["id"] for i in big["items"]}
    assert set(first) <= taken
    given = {i["id"] for i in small["items"]}
    again = pack.pack(store, ctx, "harbour", 60, exclude=given)
    assert not given & {i["id"] for i in again["items"]}
    assert again["items"] or n <= len(given)
    staged: list[list[dict[str, object]]] = []  # a second stage is given all POOL at once
    late = pack.pack(store, ctx, "harbour", 60, reorder=staged.append)
    assert [len(s) for s in staged] == [min(n, pack.POOL)] == [late["considered"]]


def test_memories_waiting_for_their_full_text_rank_as_they_will_once_indexed(
        tmp_path: Path) -> None:
    """With Store.fts_lag, new memories wait for their full-text indexing (m018). Recall finds
    them from their text with the BM25 score FTS5 gives them once indexed (the row count,
    average length and document counts include them), for a word of several tokens (a
    phrase) too; changing or purging one that waits
    touches no index; a purged newest row's rid used again is indexed at once. Once nothing
    waits, the index and the rows agree (FTS5's integrity check, which counts a waiting row
    as missing)."""
    from db0.store import memories

    def check() -> None:
        store.conn.execute("INSERT INTO memories_fts(memories_fts, rank) "
                           "VALUES ('integrity-check', 1)")

    store = Store.open(tmp_path / "db0.sqlite3")
    ctx = Context("u")
    with store.transaction():
        write.remember_many(store, ctx, [write.prepare(
            {"content": f"indexed otter note {i}" + " river" * (i % 4)
             + " lodge" * (i % 5 == 0)}, where=f"l{i}")
            for i in range(40)])
    store.fts_lag = 64
    ids = []
    for i in range(20):
        with store.transaction():
            ids.append(write.remember(store, ctx, write.prepare(
                {"content": f"waiting otter {i}" + " river bank" * (i % 3)
                 + " otter lodge" * (i % 4 == 1)}))["id"])
    mark, top = core.full_text_tail(store.conn)
    assert top - mark == 20
    with store.transaction():
        memories.purge(store, ids[3])  # waits: no index entry to delete
    # "otter_lodge" is two tokens: a phrase, which only the waiting "otter lodge" memories
    # match (the indexed ones hold both words apart), so every match is scored from its text
    queries = ["otter", "river otter", "waiting bank", "indexed river", "otter_lodge",
               "bank otter_lodge"]

    def ranked(q: str) -> list[tuple[str, float]]:
        return sorted((r["content"], r["score_parts"]["bm25"])
                      for r in search.recall(store, ctx, q, 60))

    before = {q: ranked(q) for q in queries}
    assert any(c.startswith("waiting") for c, _ in before["otter"])
    assert not any(c == "waiting otter 3" for c, _ in before["otter"])
    assert any(c.startswith("waiting") for c, _ in before["otter_lodge"])
    with store.transaction():
        assert core.flush_full_text(store.conn) == 20
    check()
    for q in queries:
        after = ranked(q)
        assert [c for c, _ in after] == [c for c, _ in before[q]], q
        assert [s for _, s in after] == pytest.approx([s for _, s in before[q]], rel=1e-9), q
    newest = ids[-1]
    with store.transaction():
        memories.purge(store, newest)
    with store.transaction():
        write.remember(store, ctx, write.prepare({"content": "a reused heron"}))
    assert core.full_text_tail(store.conn)[1] <= core.full_text_tail(store.conn)[0]
    assert dbmod.scalar(store.conn, "SELECT count(*) FROM memories_fts WHERE memories_fts "
                        "MATCH 'heron'") == 1
    check()


def test_a_bulk_flush_of_the_full_text_takes_a_large_hash_and_indexes_every_memory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A flush of at least FTS_BULK waiting memories raises FTS5's hashsize first, so it
    writes fewer, larger segments; whatever the size, every memory is indexed (FTS5's
    integrity check) and found. A smaller flush leaves the setting alone. The control: the
    same flush with a tiny hash writes more pages of segments."""
    monkeypatch.setattr(core, "FTS_BULK", 500)

    def flushed(name: str, n: int, hash_bytes: int) -> tuple[int, dict[str, object]]:
        monkeypatch.setattr(core, "FTS_HASH_BYTES", hash_bytes)
        store = Store.open(tmp_path / name)
        store.fts_lag = 1 << 30  # everything waits for the one flush below
        with store.transaction():
            write.remember_many(store, Context("u"), [write.prepare(
                {"content": f"bulk heron {i} word{i % 97} other{i % 13} marsh"}, where=f"l{i}")
                for i in range(n)])
        with store.transaction():
            assert core.flush_full_text(store.conn) == n
        store.conn.execute("INSERT INTO memories_fts(memories_fts, rank) "
                           "VALUES ('integrity-check', 1)")
        assert dbmod.scalar(store.conn, "SELECT count(*) FROM memories_fts WHERE "
                            "memories_fts MATCH 'heron'") == n
        pages = int(dbmod.scalar(store.conn, "SELECT count(*) FROM memories_fts_data"))
        config = dict(store.conn.execute("SELECT k, v FROM memories_fts_config").fetchall())
        store.close()
        return pages, config

    _, config = flushed("a.sqlite3", 400, 16 << 20)
    assert "hashsize" not in config
    big, config = flushed("b.sqlite3", 3000, 16 << 20)
    assert config["hashsize"] == 16 << 20
    tiny, config = flushed("c.sqlite3", 3000, 4 << 10)
    assert config["hashsize"] == 4 << 10
    assert tiny > big, (tiny, big)


def test_a_writer_that_stopped_with_memories_waiting_leaves_them_to_the_next_open(
        tmp_path: Path) -> None:
    """A daemon killed (or stopped) while new memories wait for their full text leaves them
    above the mark; the next writable open indexes them before anything else, a read-only
    open leaves them (and recall still finds them)."""
    path = tmp_path / "db0.sqlite3"
    store = Store.open(path)
    store.fts_lag = 64
    ctx = Context("u")
    for i in range(5):
        with store.transaction():
            write.remember(store, ctx, write.prepare({"content": f"stranded puffin {i}"}))
    store.close()
    reader = Store.open(path, readonly=True)
    mark, top = core.full_text_tail(reader.conn)
    assert top - mark == 5
    assert len(search.recall(reader, ctx, "puffin", 10)) == 5
    reader.close()
    store = Store.open(path)
    mark, top = core.full_text_tail(store.conn)
    assert mark == top
    assert dbmod.scalar(store.conn, "SELECT count(*) FROM memories_fts WHERE memories_fts "
                        "MATCH 'puffin'") == 5
    store.conn.execute("INSERT INTO memories_fts(memories_fts, rank) VALUES ('integrity-check', 1)")


def _stream_pages(path: Path, others: int) -> int:
    """Distinct database pages that 150 single remembers into one agent's scope (holding 50
    memories) write to the WAL, in a store where 39 other agents hold `others` each. The
    full-text index is left to lag through the stream: its merges are not the subject."""
    store = Store.open(path)
    for a in range(40):
        with store.transaction():
            write.remember_many(store, Context("u", agent=f"a{a}"), [
                write.prepare({"content": f"agent {a} wrote note {i}", "scope": "agent"})
                for i in range(50 if a == 3 else others)])
    store.fts_lag = 1_000
    store.conn.execute("PRAGMA wal_autocheckpoint=0")
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    ctx = Context("u", agent="a3")
    for i in range(150):
        with store.transaction():
            write.remember(store, ctx, write.prepare({"content": f"fact {i} of the stream",
                                                      "scope": "agent"}))
    wal = Path(f"{path}-wal").read_bytes()
    page_size = int.from_bytes(wal[8:12], "big")
    frames = range(32, len(wal) - 24 + 1, 24 + page_size)
    pages = {int.from_bytes(wal[f:f + 4], "big") for f in frames}
    store.close()
    return len(pages)


def test_a_stream_of_remembers_into_one_scope_writes_the_same_pages_however_large_the_store(
        tmp_path: Path) -> None:
    """Every index a remember writes takes the new row's key beside its scope's keys or the
    table's newest (m021: the duplicate check's index leads with scope and owner, not the
    text's hash). One led by the hash put each write's key at a random place among all the
    store's memories: one more page read, logged and checkpointed per write, more as the
    store grew."""
    small = _stream_pages(tmp_path / "small.db", 20)
    large = _stream_pages(tmp_path / "large.db", 500)
    assert large <= small * 1.2 + 3, (small, large)

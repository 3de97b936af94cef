"""Recall: keyword search with FTS5 BM25, filtered to what the context may see.

User text never reaches FTS5's query syntax: it is split into words and each word is quoted,
so `C++ "quotes AND OR NEAR( *` is a search for those words, not a syntax error.
Hybrid: BM25 and vector neighbours (store/vectors.py), every candidate scored on both, plus
a second keyword pass for the rare words of the first hits (feedback), with context from the
turns beside it, then weighted by recency, scope, speaker, date and whether
it is a question (see "hybrid ranking" below); every part is in the result's `score_parts`.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from db0.store import db as dbmod
from db0.store.context import Context, visible_sql
from db0.store.core import STATE_COLUMNS, Store
from db0.store.memories import parse_time, to_public

_WORD = re.compile(r"\w+", re.UNICODE)


def fts_query(text: str) -> str | None:
    """An FTS5 MATCH expression OR-ing the quoted words of `text`; None when it has none."""
    words = list(dict.fromkeys(w.lower() for w in _WORD.findall(text)))
    if not words:
        return None
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in words)


@dataclass
class Filters:
    scopes: list[str] | None = None
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    key: str | None = None
    since: float | None = None
    until: float | None = None
    include_superseded: bool = False
    as_of: float | None = None
    exclude_tags: list[str] = field(default_factory=list)

    @classmethod
    def from_params(cls, p: dict[str, Any]) -> Filters:
        return cls(
            scopes=p.get("scopes") or None,
            tags=list(p.get("tags") or []),
            metadata=dict(p.get("metadata") or {}),
            key=p.get("key"),
            since=parse_time(p["since"])[1] if p.get("since") else None,
            until=parse_time(p["until"])[1] if p.get("until") else None,
            include_superseded=bool(p.get("include_superseded")),
            as_of=parse_time(p["as_of"])[1] if p.get("as_of") else None,
        )

    def sql(self, ctx: Context, alias: str = "m") -> tuple[str, list[Any]]:
        where, args = visible_sql(ctx, self.scopes, alias, live=not self.include_superseded,
                                  as_of=self.as_of)
        if self.include_superseded:
            where += f" AND {alias}.forgotten_ts IS NULL"
        for tag in self.tags:
            where += f" AND {alias}.rid IN (SELECT rid FROM memory_tags WHERE tag=?)"
            args.append(tag)
        for tag in self.exclude_tags:
            where += f" AND {alias}.rid NOT IN (SELECT rid FROM memory_tags WHERE tag=?)"
            args.append(tag)
        for k, v in self.metadata.items():
            where += f" AND json_extract({alias}.metadata, ?) = ?"
            args += ["$." + json.dumps(str(k)), v]
        if self.key:
            where += f" AND {alias}.key = ?"
            args.append(self.key)
        if self.since is not None:
            where += f" AND {alias}.created_ts >= ?"
            args.append(self.since)
        if self.until is not None:
            where += f" AND {alias}.created_ts <= ?"
            args.append(self.until)
        return where, args


# At scale the most common words cost the most to score (every memory holding one is ranked)
# and say the least (their IDF is near zero): with more than PRUNE_MIN_ROWS memories, words found
# in more than PRUNE_DF of them are left out of the keyword query (the rarest word always stays).
PRUNE_MIN_ROWS = 5_000
PRUNE_DF = 0.02
# A query of more distinct content words than this (a long prompt: a pasted log or file) is
# searched by the first and the last half of them, as its embedding reads its two ends: it asks
# at its start or its end, and every word searched costs in proportion to its matches
# (docs/ranking.md, "Long prompts").
KEYWORD_WORDS = 32
KEYWORD_SCAN = 5_000  # matches a keyword search ranks at most (the most recent ones)
PASS_MARGIN = 1.25  # _first_passing looks at this many times the rows the share passing asks
SPARE = 2  # rows of other partitions a big scope's keyword ranking may pass over, per row ranked
_df_cache: dict[tuple[str, str], tuple[int, float]] = {}
_part_len: dict[str, int] = {}  # tokens of a `part` column value (one per scope and owner)
_DF_TTL_S = 300.0
_FTS5_TOKENIZE_QUERY = 0x0001  # apsw.FTS5_TOKENIZE_QUERY
_FTS5_TOKENIZE_DOCUMENT = 0x0004  # apsw.FTS5_TOKENIZE_DOCUMENT


def _tokenizer(store: Store) -> Any:
    """The memories_fts table's tokenizer (porter over unicode61), or None on an apsw without
    tokenizer access."""
    try:
        return store.conn.fts5_tokenizer("porter", ["unicode61"])
    except Exception:
        return None


def _docs_with(store: Store, term: str) -> int:
    """How many memories hold an already tokenized `term` (FTS5's own count, fts5vocab)."""
    store.conn.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.memories_fts_vocab "
                       "USING fts5vocab(main, memories_fts, row)")
    return int(dbmod.scalar(store.conn, "SELECT doc FROM temp.memories_fts_vocab WHERE term=?",
                            (term,)) or 0)


def _doc_freq(store: Store, word: str, tokenize: Any) -> int:
    """How many memories hold `word` (after the FTS tokenizer's stemming), cached a while."""
    key = (store.conn.filename, word)
    hit = _df_cache.get(key)
    now = time.monotonic()
    if hit is not None and now - hit[1] < _DF_TTL_S:
        return hit[0]
    df = min((_docs_with(store, t) for t in _tokens(tokenize, word, _FTS5_TOKENIZE_QUERY)),
             default=0)
    if len(_df_cache) > 100_000:
        _df_cache.clear()
    _df_cache[key] = (df, now)
    return df


# Function words and question words say nothing about which memory holds the answer, yet
# BM25 scores them: "What did Melanie do to destress?" ranked short turns full of "what" and
# "did" ("Cool! What did it look like?") above the answer. They are left out of the keyword
# query unless nothing else is left (docs/ranking.md has what each rule measured).
_STOP_TEXT = """
a an the and or but if then else of to in on at by for with from into onto about as is are was
were be been being am do does did doing done have has had having will would shall should can
could may might must i me my mine myself you your yours yourself he him his himself she her hers
herself it its itself we us our ours ourselves they them their theirs themselves what which who
whom whose when where why how that this these those there here not no nor so than too very just
also any some all both each few more most other such own same only s t ll d re ve m don didn
doesn isn aren wasn weren hasn haven hadn won wouldn shouldn couldn up down out over under again
further once"""
STOP_WORDS = frozenset(_STOP_TEXT.split())


def content_words(text: str) -> list[str]:
    """The distinct lower-cased words of `text` without stop words (all of them if only stop
    words remain, so "who are you" still searches)."""
    return _content(_WORD.findall(text))


def _content(found: list[str]) -> list[str]:
    """content_words of a text already split into its words, in that order."""
    words = list(dict.fromkeys(w.lower() for w in found))
    return [w for w in words if w not in STOP_WORDS] or words


def store_rows(store: Store) -> int:
    """About how many memories the store holds (the largest rid: one index step, not a count;
    purged and forgotten rows still count), for rules that depend on the store's size."""
    return int(dbmod.scalar(store.conn, "SELECT max(rid) FROM memories") or 0)


def keyword_query(store: Store, text: str) -> str | None:
    """`fts_query` of the content words of `text`, without the words too common to be worth
    scoring in a large store."""
    return fts_query(" ".join(keyword_words(store, text)))


def keyword_words(store: Store, text: str) -> list[str]:
    """The words `keyword_query` searches for, as `fts_query` quotes them."""
    found = _WORD.findall(text)
    words = _content(found)
    cut = len(words) > KEYWORD_WORDS
    if cut:  # the first and the last KEYWORD_WORDS / 2 distinct words
        half = KEYWORD_WORDS // 2
        last = _content(found[::-1])[:half]
        words = list(dict.fromkeys(words[:half] + last[::-1]))
    if len(words) > 1:
        rows = store_rows(store)
        if rows > PRUNE_MIN_ROWS:
            tokenize = _tokenizer(store)
            if tokenize is None:  # an apsw without tokenizer access: score every word
                words = words if cut else _WORD.findall(text)
            else:
                df = {w: _doc_freq(store, w, tokenize) for w in words}
                words = ([w for w in words if df[w] <= PRUNE_DF * rows]
                         or [min(words, key=lambda w: df[w])])
    return list(dict.fromkeys(w.lower() for w in _WORD.findall(" ".join(words))))


def scoped_match(match: str, ctx: Context, scopes: list[str] | None) -> str:
    """A MATCH expression narrowed to the (scope, owner) partitions the context sees, so FTS5
    scores only their rows (the `part` column, m012)."""
    from db0.store.context import visible_partitions
    from db0.store.migrations.m012_fts_partitions import token

    parts = " OR ".join(token(s, o) for s, o in visible_partitions(ctx, scopes))
    return f"({match}) AND part : ({parts})" if parts else match


def _holds_more(store: Store, ctx: Context, scopes: list[str] | None, n: int) -> bool:
    """Whether the partitions the context sees hold more than `n` current memories (each
    count stops at what is left of `n`, so a big scope costs at most `n` index steps)."""
    from db0.store.context import visible_partitions

    left = n
    for scope, owner in visible_partitions(ctx, scopes):
        left -= int(dbmod.scalar(
            store.conn, "SELECT count(*) FROM (SELECT 1 FROM memories INDEXED BY memories_owner "
            "WHERE scope=? AND owner=? AND superseded_by IS NULL AND forgotten_ts IS NULL "
            "LIMIT ?)",
            (scope, owner, left + 1)) or 0)
        if left < 0:
            return True
    return False


def keyword_candidates(store: Store, ctx: Context, query: str, filters: Filters,
                       limit: int, plain: str | None = None, words: list[str] | None = None,
                       ) -> list[tuple[int, float]]:
    """(rid, bm25 score, higher is better) of the best keyword matches in what the context
    sees (`plain` is the query's fts_query already, when given, and `words` its words):
    those of the full-text index and those of the newest memories, not in it yet."""
    return keyword_side(store, ctx, query, filters, limit, plain, words)[0]


def keyword_side(store: Store, ctx: Context, query: str, filters: Filters, limit: int,
                 plain: str | None = None, words: list[str] | None = None,
                 ) -> tuple[list[tuple[int, float]], bool]:
    """keyword_candidates(), and whether they are every match the context sees (fewer than
    `limit`, none left out by the KEYWORD_SCAN cut): then a visible memory not among them
    matches no word of `plain`, and its BM25 need not be computed."""
    if plain is None:
        words = keyword_words(store, query)
        plain = fts_query(" ".join(words))
        if plain is None:
            return [], True
    if words is None:
        words = keyword_words(store, query) if query else []
    # The waiting ones first: if the writer indexes them between the two statements, the
    # index finds them too (and its score is kept), where the other order would miss them.
    tail = _unindexed_candidates(store, ctx, filters, words)
    found, complete = _indexed_candidates(store, ctx, plain, filters, limit)
    if tail:
        scores = dict(tail)
        scores.update(found)
        complete = complete and len(scores) <= limit
        found = sorted(scores.items(), key=lambda x: -x[1])[:limit]
    return found, complete


def _unindexed_candidates(store: Store, ctx: Context, filters: Filters, words: list[str],
                          ) -> list[tuple[int, float]]:
    """(rid, bm25) of the visible memories not in the full-text index yet (at most a commit's
    worth: core.flush_full_text) that hold a word, scored from their text as FTS5 will once
    they are indexed."""
    if not words:
        return []
    where, args = filters.sql(ctx)
    rids = [int(r) for (r,) in store.conn.execute(
        f"SELECT m.rid FROM memories m WHERE m.rid > (SELECT mark FROM fts_lag) AND {where}",
        args)]
    if not rids:
        return []
    scored = bm25_of(store, words, rids, unindexed=True) or {}
    return list(scored.items())


def _indexed_candidates(store: Store, ctx: Context, plain: str, filters: Filters,
                        limit: int) -> tuple[list[tuple[int, float]], bool]:
    match = scoped_match(plain, ctx, filters.scopes)
    where, args = filters.sql(ctx)
    # Ranking every match of a word held by a large share of a big store costs in proportion
    # to its matches: past KEYWORD_SCAN matches, the most recent KEYWORD_SCAN are ranked (FTS5
    # walks its doclists from a rowid, so the cut costs KEYWORD_SCAN steps, not the matches).
    # Scopes that hold fewer memories than that cannot have more matches: no cut to look for.
    # The store's newest KEYWORD_SCAN matches come first, whoever may see them: when at least
    # `limit` of their best SPARE x `limit` are visible (an unscoped recall sees the user's
    # scope, which holds most memories), the best visible ones are the answer. Only otherwise
    # is the cut made within the visible partitions, with the partition phrase, which walks a
    # big scope's doclist over the whole window (docs/performance.md, "Work that grows with
    # the store").
    big = _holds_more(store, ctx, filters.scopes, KEYWORD_SCAN)
    since = bound = None
    newest = _newest(store, plain, KEYWORD_SCAN) if big else None
    if newest is not None:
        visible = _best_visible(store, plain, newest, where, args, limit, one_batch=True)
        if len(visible) >= limit:
            return visible[:limit], False
        since = _newest(store, match, KEYWORD_SCAN)
        bound = _newest(store, plain, SPARE * KEYWORD_SCAN)
    # The partition phrase only narrows what is matched: its column weighs 0, so bm25 gives a
    # row the same score without it, but FTS5 counts the phrase's matches over the whole table
    # for its idf, a pass over every memory of a big visible scope. So when the visible
    # partitions are big and the plain match holds at most SPARE times the rows to rank (past
    # the cut), the plain match is ranked and visibility checked from the best down, a batch
    # at a time, until `limit` visible rows are found: the same rows, the same scores.
    if big and (bound is None or (since is not None and bound <= since)):
        kept = _best_visible(store, plain, since, where, args, limit)
        return kept[:limit], since is None and len(kept) < limit
    recent = "" if since is None else f"AND memories_fts.rowid >= {int(since)} "
    rows = store.conn.execute(
        f"SELECT m.rid, -bm25(memories_fts, 1.0, 0.0) AS s FROM memories_fts "
        "JOIN memories m ON m.rid = memories_fts.rowid "
        f"WHERE memories_fts MATCH ? {recent}AND {where} ORDER BY s DESC LIMIT ?",
        [match, *args, limit]).fetchall()
    return ([(int(r), float(s)) for r, s in rows],  # type: ignore[arg-type]
            since is None and len(rows) < limit)


def _best_visible(store: Store, plain: str, since: int | None, where: str, args: list[Any],
                  limit: int, one_batch: bool = False) -> list[tuple[int, float]]:
    """(rid, bm25) of the plain match (from rowid `since`) ranked best first, visibility
    checked a batch at a time (SPARE x `limit` rows, then four times as many each time) until
    `limit` visible rows are found or every match is looked at; with `one_batch`, only the
    first batch is ranked and looked at."""
    recent = "" if since is None else f"AND memories_fts.rowid >= {int(since)} "
    batch = SPARE * limit
    ranked = store.conn.execute(
        "SELECT rowid, -bm25(memories_fts, 1.0, 0.0) AS s FROM memories_fts "
        f"WHERE memories_fts MATCH ? {recent}ORDER BY s DESC LIMIT ?",
        (plain, batch if one_batch else -1))
    kept: list[tuple[int, float]] = []
    while len(kept) < limit:
        best = [(int(r), float(s)) for r, s in itertools.islice(ranked, batch)]
        kept += _first_passing(store, where, args, best, limit - len(kept))
        if one_batch or len(best) < batch:
            break
        batch *= 4
    ranked.close()
    return kept


def _newest(store: Store, match: str, n: int) -> int | None:
    """The rowid of the n-th newest match (None when there are fewer)."""
    rid = dbmod.scalar(store.conn, "SELECT rowid FROM memories_fts WHERE memories_fts MATCH ? "
                       "ORDER BY rowid DESC LIMIT 1 OFFSET ?", (match, n - 1))
    return None if rid is None else int(rid)  # type: ignore[arg-type]


def keyword_scores(store: Store, match: str, rids: list[int], words: list[str] | None = None,
                   tokens: dict[int, tuple[list[str], int]] | None = None,
                   rows: Rows | None = None, counts: dict[str, int] | None = None,
                   ) -> dict[int, float]:
    """BM25 scores (higher is better) of these memories for a MATCH expression (scoped); a
    memory that does not match is left out. With the query's `words` (as `keyword_query` kept
    them) the few memories are scored by `bm25_of` without FTS5; else every match is scored and
    the wanted ones kept (FTS5 with `rowid IN (...)` re-runs the match per rowid, counting each
    word's matches again every time). `tokens` keeps each memory's tokens for a next call;
    `counts`, bm25_of's."""
    if words is not None and rids:
        scored = bm25_of(store, words, rids, tokens, rows, counts=counts)
        if scored is not None:
            return scored
    want = set(rids)
    return {int(r): float(s) for r, s in store.conn.execute(
        "SELECT rowid, -bm25(memories_fts, 1.0, 0.0) FROM memories_fts "
        "WHERE memories_fts MATCH ?", (match,)) if r in want}


BM25_K1, BM25_B = 1.2, 0.75  # FTS5's bm25() constants


def bm25_of(store: Store, words: list[str], rids: list[int],
            tokens: dict[int, tuple[list[str], int]] | None = None,
            rows: Rows | None = None, *, unindexed: bool = False,
            counts: dict[str, int] | None = None) -> dict[int, float] | None:
    """FTS5's own bm25(memories_fts, 1.0, 0.0) of these memories for the OR of `words`, computed
    from their text: the same formula over the index's row count and average length (its
    averages record), each word's document count and the memory's tokens by the table's
    tokenizer. Cost: the few texts, not every match of a common word. A word of several tokens
    ("fts_lag") is a phrase, as FTS5 reads it: it counts where its tokens stand side by side.
    `tokens`, when given, holds (tokens, length) of memories tokenized before and gets those
    tokenized now; `rows`, when given, is where the texts are read (the recall's rows, read
    once). `unindexed`: the memories are not in the index yet (core.flush_full_text), and
    count in the row count, the average length and the document counts as they will once they
    are. `counts` holds document counts already known for some terms (fts5vocab reads a term's
    whole doclist to count it): feedback_words', up to _DF_TTL_S old, which its relative score
    can take. None on an apsw without tokenizer access."""
    tokenize = _tokenizer(store)
    if tokenize is None:
        return None
    # Each word as FTS5 reads it: a phrase of its tokens (one, mostly). A word of no token
    # ("_") matches nothing and adds nothing.
    phrases: list[tuple[str, ...]] = []
    said: dict[tuple[str, ...], str] = {}
    for w in words:
        phrase = tuple(_tokens(tokenize, w, _FTS5_TOKENIZE_QUERY))
        if phrase:
            phrases.append(phrase)
            said.setdefault(phrase, w)
    averages = dbmod.scalar(store.conn, "SELECT block FROM memories_fts_data WHERE id=1")
    if not averages and not unindexed:
        return None
    values = _varints(averages) if averages else [0, 0]
    n_row, n_tok = values[0], sum(values[1:])
    known = tokens if tokens is not None else {}
    # Porter only rewrites a word's ending, and what it leaves of the word reaches to at least
    # the stem's last letter: a stem without that letter is a prefix of the lower-cased word
    # (tests/test_store.py checks it on generated words). So an ASCII text (unicode61 folds
    # nothing there) that holds none of those prefixes holds none of the phrases' first
    # tokens, and needs no tokenizing to be left out (unless it counts in the statistics).
    prefixes = {ph[0][:-1] for ph in phrases}
    todo = [r for r in rids if r not in known]
    for rid, row in (rows or Rows(store)).get(todo).items():
        text, part = str(row["content"]), row["part"]
        if text.isascii() and not unindexed:
            low = text.lower()
            if not any(p in low for p in prefixes):
                continue
        toks = _tokens(tokenize, text, _FTS5_TOKENIZE_DOCUMENT)
        extra = _part_len.get(part)
        if extra is None:
            if len(_part_len) > 10_000:
                _part_len.clear()
            extra = _part_len[part] = len(_tokens(tokenize, part, _FTS5_TOKENIZE_DOCUMENT))
        known[int(rid)] = (toks, len(toks) + extra)

    def docs(ph: tuple[str, ...]) -> int:
        if len(ph) > 1:
            return _docs_matching(store, said[ph])
        return counts[ph[0]] if counts and ph[0] in counts else _docs_with(store, ph[0])

    hits = {ph: docs(ph) for ph in set(phrases)}
    if unindexed:
        for rid in set(rids):
            if rid in known:
                toks, length = known[rid]
                n_row += 1
                n_tok += length
                for ph in hits:
                    if _occurrences(ph, toks):
                        hits[ph] += 1
    if n_row <= 0:
        return {}
    avgdl = n_tok / n_row
    # A document count can exceed the row count: `counts` may be up to _DF_TTL_S old. FTS5
    # floors the idf of a term in (nearly) every row at 1e-6; so does this, where a log of a
    # negative number would raise.
    capped = {ph: min(h, n_row) for ph, h in hits.items()}
    idf = {ph: max(math.log((n_row - h + 0.5) / (h + 0.5)), 1e-6) for ph, h in capped.items()}
    singles = {ph[0] for ph in idf if len(ph) == 1}
    longer = [ph for ph in idf if len(ph) > 1]
    out: dict[int, float] = {}
    for rid in rids:
        if rid not in known:
            continue
        toks, length = known[rid]
        freq: dict[tuple[str, ...], int] = {}
        for t in toks:
            if t in singles:
                freq[(t,)] = freq.get((t,), 0) + 1
        for ph in longer:
            if n := _occurrences(ph, toks):
                freq[ph] = n
        if not freq:
            continue  # matches none of the words: FTS5 would not return it
        norm = BM25_K1 * (1 - BM25_B + BM25_B * length / avgdl)
        out[rid] = sum(idf[ph] * freq[ph] * (BM25_K1 + 1) / (freq[ph] + norm)
                       for ph in phrases if ph in freq)
    return out


def _occurrences(phrase: tuple[str, ...], toks: list[str]) -> int:
    """Where the phrase's tokens stand side by side in `toks` (as FTS5 counts a phrase's
    instances: overlapping ones too)."""
    if len(phrase) == 1:
        return toks.count(phrase[0])
    n, first = len(phrase), phrase[0]
    return sum(1 for i, t in enumerate(toks) if t == first and tuple(toks[i:i + n]) == phrase)


def _docs_matching(store: Store, word: str) -> int:
    """How many memories match a word of several tokens, as a phrase (FTS5 counts it so)."""
    return int(dbmod.scalar(store.conn, "SELECT count(*) FROM memories_fts WHERE memories_fts "
                            "MATCH ?", (fts_query(word) or '""',)) or 0)


def _tokens(tokenize: Any, text: str, flags: int) -> list[str]:
    return [str(t) for t in tokenize(text.encode("utf-8"), flags, None, include_offsets=False,
                                     include_colocated=False)]


def _varints(blob: bytes) -> list[int]:
    """SQLite's (and FTS5's) varints, one after another."""
    out, i = [], 0
    while i < len(blob):
        v = 0
        for n in range(9):
            b = blob[i]
            i += 1
            if n == 8:
                v = (v << 8) | b
                break
            v = (v << 7) | (b & 0x7F)
            if b < 0x80:
                break
        out.append(v)
    return out


SCORE_COLUMNS = ("content", "part", "scope", "metadata", "created_ts")


class Rows:
    """The columns a recall scores its candidates by (SCORE_COLUMNS), read once per memory and
    kept for the rest of the recall: BM25 from the text, the final weights; the whole state is
    loaded only for what is returned."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.seen: dict[int, dict[str, Any]] = {}

    def get(self, rids: list[int]) -> dict[int, dict[str, Any]]:
        """The rows of these memories that exist (a memory gone since is left out)."""
        todo = [r for r in rids if r not in self.seen]
        if todo:
            for row in self.store.conn.execute(
                    f"SELECT rid, {', '.join(SCORE_COLUMNS)} FROM memories WHERE rid IN "
                    "(SELECT value FROM json_each(?))", (json.dumps(todo),)):
                self.seen[int(row[0])] = dict(zip(SCORE_COLUMNS, row[1:], strict=True))
        return {r: self.seen[r] for r in rids if r in self.seen}


def load(store: Store, rids: list[int]) -> dict[int, dict[str, Any]]:
    if not rids:
        return {}
    cols = ", ".join(STATE_COLUMNS)
    out: dict[int, dict[str, Any]] = {}
    for i in range(0, len(rids), 500):
        chunk = rids[i:i + 500]
        q = f"SELECT rid, {cols} FROM memories WHERE rid IN ({','.join('?' * len(chunk))})"
        for row in store.conn.execute(q, chunk):
            out[int(row[0])] = dict(zip(STATE_COLUMNS, row[1:], strict=True))
    return out


# -- hybrid ranking ---------------------------------------------------------------------------
# Each retriever gives an ordered candidate list (BM25 and vector neighbours, POOL each). Every
# candidate then gets both scores (the missing one computed for it), and relevance is a weighted
# sum of the BM25 score relative to the best keyword match and the cosine similarity: unlike
# rank fusion this keeps how much better the first hits are, and a memory that is fair on both
# beats one that is first on one and absent from the other. Then neighbour context: a memory's
# score gains part of the relevance of the memories written just before and after it in the
# same conversation (same scope, owner and session, within NEIGHBOUR_GAP_S), since an answer is
# often a short reply to the turn that names the subject ("What got you into running?" /
# "It helps me de-stress"). Last, recency and scope weights. Every number that went into a
# result is in its `score_parts`. Why each rule and weight, and what each measured:
# docs/ranking.md.

POOL = 50                 # at least this many candidates per retriever
VECTOR_SPARE = 10         # nearest rows asked beyond the pool, for the filters to reject
KEYWORD_WEIGHT = 0.3      # relevance = 0.3 * bm25 / best bm25 + 0.7 * cosine similarity
NEIGHBOUR_WEIGHT = 0.3    # each neighbour adds this share of its relevance
REPLY_WEIGHT = 0.5        # the reply to a question gets this share of the question's
NEIGHBOUR_GAP_S = 3600.0  # neighbours are written within an hour of each other
RECENCY_HALF_LIFE_DAYS = 30.0
RECENCY_WEIGHT = 0.1      # at most +10% for a memory made just now
SCOPE_WEIGHTS = {"task": 1.15, "session": 1.10, "agent": 1.05, "user": 1.0}
SPEAKER_WEIGHT = 1.3      # a turn said by someone the query names
DATE_WEIGHT = 1.4         # a memory made in (or soon after) a day or month the query names
DATE_AFTER_S = 14 * 86400.0  # what happened is told up to two weeks later
QUESTION_WEIGHT = 0.85    # a memory that is a question asks more than it tells
FEEDBACK_DOCS = 3         # the first hits whose rare words expand the query
FEEDBACK_WORDS = 10       # how many of their words
FEEDBACK_WEIGHT = 0.1     # relevance gains this x BM25 for those words / the best such BM25
# feedback=None ("auto", the default): feedback runs in a store of at most this many memories.
# Its second keyword pass and its words' document counts cost in proportion to the store's
# matches, where the rest of a scoped recall does not (docs/ranking.md has what it cost).
FEEDBACK_AUTO_ROWS = 100_000


@dataclass
class QueryVector:
    """The query embedded by the daemon with the model whose stored vectors it searches."""
    model_id: int
    vector: Any                   # numpy float32 array, L2-normalised
    index: Any = None             # store.vecindex.VecIndex for that model, when loaded
    took_ms: float = 0.0          # how long embedding the query took
    # The similarity unrelated texts reach with this model (models differ: some put every
    # pair near 0.1, others near 0.7); a memory found by meaning alone must beat it.
    floor: float = -1.0
    # The index's first stage of recall's vector search (vecindex.Early), when `vector_prelude`
    # ran it on the thread that embedded the query; None: vector_candidates runs it all.
    early: Any = None


# A query vector still being made (the daemon embeds on another thread while recall reads the
# keyword side): called once the vector is needed; calling it again gives the same answer.
PendingVector = Callable[[], "QueryVector | None"]


def pool_size(k: int) -> int:
    """How many candidates each retriever of a recall for `k` results brings."""
    return max(POOL, 2 * k)


# What the thread that embedded a query does next (vector_prelude): called with the vector
# before it is handed over, it may return work to run on that thread once it has been.
Prelude = Callable[[QueryVector], "Callable[[], None] | None"]


def vector_prelude(ctx: Context, filters: Filters | None = None, k: int = 0) -> Prelude:
    """The part of a recall's vector search (for `k` results, these filters) that needs the
    query vector but not the store: the graph walks of big partitions. The daemon runs it on
    the thread that embedded the query: the search is begun (`QueryVector.early`) before the
    vector is handed over and the walks run after, while the recall reads its keyword side and
    scores the rows outside the graphs; vector_candidates then finishes it. A recall that asks
    for something else (another k, other partitions) searches on its own, as without it."""
    from db0.store.context import visible_partitions

    parts = visible_partitions(ctx, (filters or Filters()).scopes)
    n = pool_size(k) + VECTOR_SPARE

    def run(qv: QueryVector) -> Callable[[], None] | None:
        index = qv.index
        if index is None or not index.has_graph(parts):
            return None
        early = qv.early = index.begin(qv.vector, n, parts)

        def walk() -> None:
            index.walk(early)
            if not early.walked.cancelled():  # (the recall came first and walked)
                early.walked.result()  # its error, if any, to the caller's log
        return walk
    return run


def vector_candidates(store: Store, ctx: Context, qv: QueryVector, filters: Filters,
                      limit: int) -> list[tuple[int, float]]:
    """(rid, cosine distance, lower is better) of the nearest memories that pass the filters.
    The index is searched in the (scope, owner) partitions the context sees, never in everyone
    else's; the rest of the filters are checked on what it finds, and only when they reject
    too many is it searched again among the rows they allow."""
    from db0.store import vectors
    from db0.store.context import visible_partitions

    where, args = filters.sql(ctx)
    if qv.index is None:
        return vectors.sql_neighbours(store, qv.model_id, qv.vector, where, args, n=limit)
    parts = visible_partitions(ctx, filters.scopes)
    over = qv.index.search(qv.vector, limit + VECTOR_SPARE, parts, store=store, early=qv.early)
    kept = _first_passing(store, where, args, over, limit)
    if len(kept) >= limit or len(over) >= qv.index.count(parts):
        return kept[:limit]
    allowed = [int(r) for (r,) in store.conn.execute(
        f"SELECT m.rid FROM memories m WHERE {where}", args)]
    return list(qv.index.search(qv.vector, limit, parts, allowed, store=store))


def vector_distances(store: Store, qv: QueryVector, rids: list[int]) -> dict[int, float]:
    """Cosine distances of these memories to the query (those with a vector of the model)."""
    from db0.store import vectors

    if not rids:
        return {}
    if qv.index is not None:
        return dict(qv.index.search(qv.vector, len(rids), allowed_rids=rids, store=store))
    out: dict[int, float] = {}
    for i in range(0, len(rids), 500):
        chunk = rids[i:i + 500]
        out.update(vectors.sql_neighbours(store, qv.model_id, qv.vector,
                                          f"m.rid IN ({','.join('?' * len(chunk))})", chunk,
                                          n=len(chunk)))
    return out


def _first_passing(store: Store, where: str, args: list[Any], ranked: list[tuple[int, float]],
                   want: int) -> list[tuple[int, float]]:
    """The first `want` of `ranked` (in its order) that pass the filters. Each row looked at
    is a read of its memory (a random read of a big store's file, until the page cache holds
    it), so they are looked at in order, `want` at first and then as many more as the share
    seen passing says are needed, rather than all at once."""
    kept: list[tuple[int, float]] = []
    looked = passed = 0
    while len(kept) < want and looked < len(ranked):
        need = want - len(kept)
        step = need if not looked else math.ceil(PASS_MARGIN * need * looked / max(passed, 1))
        chunk = ranked[looked:looked + step]
        ok = _passing(store, where, args, [r for r, _ in chunk])
        looked += len(chunk)
        passed += len(ok)
        kept += [x for x in chunk if x[0] in ok][:need]
    return kept


def _passing(store: Store, where: str, args: list[Any], rids: list[int]) -> set[int]:
    out: set[int] = set()
    for i in range(0, len(rids), 500):
        chunk = rids[i:i + 500]
        out.update(int(r) for (r,) in store.conn.execute(
            f"SELECT m.rid FROM memories m WHERE m.rid IN ({','.join('?' * len(chunk))}) "
            f"AND {where}", [*chunk, *args]))
    return out


# is_question() in SQL, for the neighbours statement: a question lends its reply REPLY_WEIGHT.
_IS_QUESTION = ("(rtrim({t}.content, ' ' || char(9, 10, 13)) LIKE '%?'"
                " OR instr({t}.content, '? [image:') > 0)")
# The live memory of the same scope and owner written just before memory m (by row order).
_PREV = """(SELECT p.rid FROM memories p WHERE p.scope=m.scope AND p.owner=m.owner AND p.rid<m.rid
       AND p.superseded_by IS NULL AND p.forgotten_ts IS NULL ORDER BY p.rid DESC LIMIT 1)"""
_NEIGHBOURS = f"""
WITH c AS (
  SELECT m.rid, m.session_id AS sess, m.created_ts AS ts, {_IS_QUESTION.format(t="m")} AS q,
    {_PREV} AS prev,
    (SELECT n.rid FROM memories n WHERE n.scope=m.scope AND n.owner=m.owner AND n.rid>m.rid
       AND n.superseded_by IS NULL AND n.forgotten_ts IS NULL ORDER BY n.rid LIMIT 1) AS next
  FROM memories m WHERE m.rid IN (SELECT value FROM json_each(?)))
SELECT c.rid, x.rid, x.rid = c.prev,
  CASE WHEN x.rid = c.prev THEN {_IS_QUESTION.format(t="x")} ELSE c.q END
FROM c JOIN memories x ON x.rid IN (c.prev, c.next)
WHERE x.session_id IS c.sess AND abs(x.created_ts - c.ts) <= ? AND {{where}}"""


def neighbours(store: Store, rids: list[int], filters: Filters, ctx: Context,
               small: SmallScope | None = None) -> dict[int, dict[int, float]]:
    """Who gains from whom: gains[a][b] is the share of b's relevance that a gets, for a
    memory and the visible memories written just before and after it in the same
    conversation (the adjacent live memories of its scope and owner by row order, with the
    same session, made within NEIGHBOUR_GAP_S of it), both ways. The reply to a question
    gets REPLY_WEIGHT of the question's relevance, every other pair NEIGHBOUR_WEIGHT, in one
    statement (or from `small`'s rows, for the memories it holds)."""
    gains: dict[int, dict[int, float]] = {}
    rows: list[Any] = []
    if small is not None:
        rows, rids = small.neighbours(store, rids)
    if rids:
        where, args = filters.sql(ctx, "x")
        rows += store.conn.execute(_NEIGHBOURS.format(where=where),
                                   [json.dumps(rids), NEIGHBOUR_GAP_S, *args]).fetchall()
    for rid, x, x_first, first_asks in rows:
        first, then = (int(x), int(rid)) if x_first else (int(rid), int(x))  # type: ignore[arg-type]
        gains.setdefault(then, {})[first] = REPLY_WEIGHT if first_asks else NEIGHBOUR_WEIGHT
        gains.setdefault(first, {})[then] = NEIGHBOUR_WEIGHT
    return gains


# A scoped recall of a small scope (an agent's own memories) reads every row it can see while
# its query is embedded: then the vector side is one product over those rows, exact, and the
# neighbours are found by position, so little is left to do once the vector arrives.
SMALL_SCOPE = 1_000  # live memories in the visible partitions, at most
SMALL_BYTES = 1 << 20  # and their texts, at most: a row's later columns sit past its text


class SmallScope:
    """The live memories of the visible partitions of a small scope, in row order, with the
    filters' verdict and the stored vectors of each: what neighbours() and the vector side
    read, read at once. A memory written after it was read is not in it; the callers ask
    the database about those as before."""

    def __init__(self, timeline: dict[int, tuple[tuple[str, str], int, Any, float]],
                 order: dict[tuple[str, str], list[int]], passing: set[int],
                 vectors: dict[int, tuple[Any, Any]]) -> None:
        self.timeline = timeline  # rid -> (partition, position, session, created)
        self.order = order        # partition -> its live rids, in row order
        self.passing = passing    # the rids that pass the filters
        self.vectors = vectors    # model id -> (rids, float32 rows)

    @classmethod
    def read(cls, store: Store, ctx: Context, filters: Filters) -> SmallScope | None:
        """The rows of a scope of at most SMALL_SCOPE live memories holding at most
        SMALL_BYTES of text (None for a larger one, or for filters that see other than the
        live rows: superseded, or as of a time)."""
        import numpy as np

        from db0.store.context import visible_partitions

        if filters.include_superseded or filters.as_of is not None:
            return None
        parts = visible_partitions(ctx, filters.scopes)
        if not parts:
            return None
        # Counted and weighed in one walk of each partition's index, which stops past what is
        # left of SMALL_SCOPE. Reading a row's session and time means reading past its text
        # (overflow pages), so a scope of long notes is left to the statements, which read
        # only the candidates; the texts' sizes come from the record headers, unread.
        rows = size = 0
        for part in parts:
            n, b = store.conn.execute(
                "SELECT count(*), total(b) FROM (SELECT octet_length(content) AS b FROM "
                "memories INDEXED BY memories_owner WHERE scope=? AND owner=? AND "
                "superseded_by IS NULL AND forgotten_ts IS NULL LIMIT ?)",
                (*part, SMALL_SCOPE - rows + 1)).fetchone() or (0, 0)
            rows, size = rows + int(n), size + int(b)
            if rows > SMALL_SCOPE or size > SMALL_BYTES:
                return None
        timeline: dict[int, tuple[tuple[str, str], int, Any, float]] = {}
        order: dict[tuple[str, str], list[int]] = {}
        for part in parts:
            rids = order.setdefault(part, [])
            for rid, sess, ts in store.conn.execute(
                    "SELECT rid, session_id, created_ts FROM memories INDEXED BY "
                    "memories_owner WHERE scope=? AND owner=? AND superseded_by IS NULL AND "
                    "forgotten_ts IS NULL ORDER BY rid", part):
                timeline[int(rid)] = (part, len(rids), sess, float(ts))  # type: ignore[arg-type]
                rids.append(int(rid))  # type: ignore[arg-type]
        # Looked up by row: the filters' OR of partitions would scan the table.
        where, args = filters.sql(ctx)
        passing = {int(r) for (r,) in store.conn.execute(  # type: ignore[call-overload]
            "SELECT m.rid FROM memories m WHERE m.rid IN (SELECT value FROM json_each(?)) "
            f"AND {where}", [json.dumps(list(timeline)), *args])}
        by_model: dict[int, tuple[list[int], list[bytes]]] = {}
        for rid, mid, blob in store.conn.execute(
                "SELECT rid, model_id, vector FROM memory_vectors WHERE rid IN "
                "(SELECT value FROM json_each(?))", (json.dumps(sorted(passing)),)):
            got = by_model.setdefault(int(mid), ([], []))  # type: ignore[arg-type]
            got[0].append(int(rid))  # type: ignore[arg-type]
            got[1].append(bytes(blob))  # type: ignore[arg-type]
        vectors = {mid: (np.asarray(r, dtype=np.int64),
                         np.frombuffer(b"".join(b), dtype="<f4").reshape(len(r), -1))
                   for mid, (r, b) in by_model.items()}
        return cls(timeline, order, passing, vectors)

    def similarities(self, qv: QueryVector) -> dict[int, float]:
        """Cosine distance to the query of every passing memory with a vector of its model."""
        rids, rows = self.vectors.get(qv.model_id, (None, None))
        if rids is None or len(rids) == 0 or rows.shape[1] != len(qv.vector):
            return {}
        return dict(zip(rids.tolist(), (1.0 - rows @ qv.vector).tolist(), strict=True))

    @staticmethod
    def nearest(distances: dict[int, float], limit: int) -> list[tuple[int, float]]:
        """vector_candidates() over these rows, given their similarities(): the `limit`
        nearest, ties by row."""
        return sorted(distances.items(), key=lambda x: (x[1], x[0]))[:limit]

    def neighbours(self, store: Store, rids: list[int],
                   ) -> tuple[list[tuple[int, int, bool, bool]], list[int]]:
        """The rows of _NEIGHBOURS for the memories it holds, and the memories it does not.
        Whether the first of a pair is a question is read for those pairs only."""
        pairs: list[tuple[int, int, bool]] = []
        unknown: list[int] = []
        for rid in rids:
            got = self.timeline.get(rid)
            if got is None:
                unknown.append(rid)
                continue
            part, pos, sess, ts = got
            line = self.order[part]
            for x, x_first in ((line[pos - 1] if pos else None, True),
                               (line[pos + 1] if pos + 1 < len(line) else None, False)):
                if x is None or x not in self.passing:
                    continue
                _, _, x_sess, x_ts = self.timeline[x]
                if x_sess == sess and abs(x_ts - ts) <= NEIGHBOUR_GAP_S:
                    pairs.append((rid, x, x_first))
        firsts = {x if x_first else rid for rid, x, x_first in pairs}
        asks = {int(r) for (r,) in store.conn.execute(  # type: ignore[call-overload]
            f"SELECT rid FROM memories WHERE rid IN (SELECT value FROM json_each(?)) AND "
            f"{_IS_QUESTION.format(t='memories')}", (json.dumps(sorted(firsts)),))} \
            if firsts else set()
        return [(rid, x, x_first, (x if x_first else rid) in asks)
                for rid, x, x_first in pairs], unknown


_PREVIOUS = f"""
WITH c AS (
  SELECT m.id, m.session_id AS sess, m.created_ts AS ts,
    {_PREV} AS prev
  FROM memories m WHERE m.id IN (SELECT value FROM json_each(?)))
SELECT c.id, x.id, x.content FROM c JOIN memories x ON x.rid = c.prev
WHERE x.session_id IS c.sess AND abs(x.created_ts - c.ts) <= ? AND {{where}}"""


def previous_turns(store: Store, ids: list[str], filters: Filters, ctx: Context,
                   ) -> dict[str, tuple[str, str]]:
    """(id, content) of the visible memory written just before each of `ids` in the same
    conversation (as in neighbours()), for the reranker to read a reply with what it answers."""
    if not ids:
        return {}
    where, args = filters.sql(ctx, "x")
    return {str(i): (str(p), str(c)) for i, p, c in store.conn.execute(
        _PREVIOUS.format(where=where), [json.dumps(ids), NEIGHBOUR_GAP_S, *args])}


def relevance(parts: dict[str, Any], best_bm25: float, with_vectors: bool) -> float:
    """Weighted sum of the BM25 score relative to the best keyword hit and cosine similarity."""
    kw = parts.get("bm25", 0.0) / best_bm25 if best_bm25 > 0 else 0.0
    if not with_vectors:
        return float(kw)
    sim = 1.0 - parts["vector"] if "vector" in parts else 0.0
    return float(KEYWORD_WEIGHT * kw + (1 - KEYWORD_WEIGHT) * sim)


# Names: a question about someone is answered by what they said. In conversation memories
# (`Speaker: text`, or metadata {"speaker": …}) the other party names them too ("Congrats on
# the promotion, John!"), so the name alone does not tell the two apart, for BM25 or for the
# embedding. Evidence for a question naming one speaker is almost always said by that speaker,
# so a memory whose speaker the query names is weighted by SPEAKER_WEIGHT.
_SPEAKER = re.compile(r"([A-Z][\w'.-]*(?: [A-Z][\w'.-]*){0,2}): ")


def speaker(state: dict[str, Any]) -> str | None:
    """Who said this memory: metadata `speaker`, else a `Name: ` prefix of up to three
    capitalised words."""
    meta = state.get("metadata")
    if isinstance(meta, str) and '"speaker"' in meta:
        try:
            who = json.loads(meta).get("speaker")
        except (ValueError, AttributeError):
            who = None
        if isinstance(who, str) and who.strip():
            return who
    m = _SPEAKER.match(state.get("content") or "")
    return m.group(1) if m else None


def named_speaker(state: dict[str, Any], query_words: set[str]) -> bool:
    """True when the memory's speaker has a (non-stop) word of their name in the query."""
    who = speaker(state)
    return bool(who) and any(w.lower() in query_words and w.lower() not in STOP_WORDS
                             for w in _WORD.findall(who or ""))


# Dates: "What did Maria donate in December 2023?", "... on 3 June, 2023?". A memory made in
# the day or month the query names, or up to DATE_AFTER_S later (an event is told after it
# happens), is weighted by DATE_WEIGHT.
_MON = r"(january|february|march|april|may|june|july|august|september|october|november|december)"
_MONTHS = {m: i for i, m in enumerate(_MON.strip("()").split("|"), 1)}
_DAY_MONTH_YEAR = re.compile(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+{_MON},?\s+(\d{{4}})\b", re.I)
_MONTH_DAY_YEAR = re.compile(rf"\b{_MON}\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{4}})\b", re.I)
_MONTH_YEAR = re.compile(rf"\b{_MON},?\s+(\d{{4}})\b", re.I)
_ISO_DAY = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
# A month without a year after a word that places something in time ("in May", "last
# August"): "may" alone is a verb too often to count.
_MONTH_ALONE = re.compile(rf"\b(?:in|during|of|since|until|by|early|late|mid|last|this|next|"
                          rf"before|after)[\s-]+{_MON}\b", re.I)


def query_periods(query: str) -> list[tuple[float, float]]:
    """The (start, end) epoch seconds (UTC) of each day or month named in `query`."""
    out: list[tuple[float, float]] = []
    days: list[tuple[int, int, int]] = []
    for m in _DAY_MONTH_YEAR.finditer(query):
        days.append((int(m.group(3)), _MONTHS[m.group(2).lower()], int(m.group(1))))
    for m in _MONTH_DAY_YEAR.finditer(query):
        days.append((int(m.group(3)), _MONTHS[m.group(1).lower()], int(m.group(2))))
    for m in _ISO_DAY.finditer(query):
        days.append((int(m.group(1)), int(m.group(2)), int(m.group(3))))
    for y, mo, d in days:
        try:
            day = datetime(y, mo, d, tzinfo=UTC).timestamp()
        except (ValueError, OverflowError):
            continue  # 30 February
        out.append((day, day + 86400.0))
    if not out:  # a month alone, when no day of it is named
        months = [(int(m.group(2)), _MONTHS[m.group(1).lower()])
                  for m in _MONTH_YEAR.finditer(query)]
        if not months:  # no year either: that month of every year up to the next
            months = [(y, _MONTHS[m.group(1).lower()]) for m in _MONTH_ALONE.finditer(query)
                      for y in range(1970, datetime.now(UTC).year + 2)]
        for y, mo in months:
            try:
                start = datetime(y, mo, 1, tzinfo=UTC).timestamp()
                end = datetime(y + mo // 12, mo % 12 + 1, 1, tzinfo=UTC).timestamp()
            except (ValueError, OverflowError):
                continue
            out.append((start, end))
    return out


def is_question(content: str) -> bool:
    """A memory that ends with a question mark (before an image caption): in a conversation
    the answer is the reply, and the question matches the query's words better than the
    reply does."""
    return content.split(" [image:", 1)[0].rstrip().endswith("?")


def in_periods(ts: float, periods: list[tuple[float, float]]) -> bool:
    return any(start <= ts < end + DATE_AFTER_S for start, end in periods)


def final_score(parts: dict[str, Any], state: dict[str, Any], now: float,
                query_words: set[str] | None = None,
                periods: list[tuple[float, float]] | None = None) -> float:
    """Fused relevance weighted by recency (exponential decay), scope, speaker, question and
    date; fills `parts`."""
    age_days = max(0.0, now - float(state["created_ts"])) / 86400
    recency = 0.5 ** (age_days / RECENCY_HALF_LIFE_DAYS)
    scope_w = SCOPE_WEIGHTS.get(state["scope"], 1.0)
    parts["recency"] = round(recency, 6)
    parts["scope_weight"] = scope_w
    score = parts["fused"] * scope_w * (1 - RECENCY_WEIGHT + RECENCY_WEIGHT * recency)
    if query_words and named_speaker(state, query_words):
        parts["speaker_weight"] = SPEAKER_WEIGHT
        score *= SPEAKER_WEIGHT
    if is_question(state.get("content") or ""):
        parts["question_weight"] = QUESTION_WEIGHT
        score *= QUESTION_WEIGHT
    if periods and in_periods(float(state["created_ts"]), periods):
        parts["date_weight"] = DATE_WEIGHT
        score *= DATE_WEIGHT
    parts["fused"] = round(parts["fused"], 6)
    return float(score)


def _best(store: Store, eligible: dict[int, dict[str, Any]], k: int, now: float,
          query_words: set[str], periods: list[tuple[float, float]], rows: Rows | None = None,
          ) -> tuple[list[tuple[float, int]], dict[int, dict[str, Any]]]:
    """The `k` best (final score, rid) and the loaded states. Candidates are loaded and
    weighted in order of fused relevance, in growing batches, until none left can beat the
    k-th best: recency, question and scope weights are at most max scope weight, speaker and
    date at most SPEAKER_WEIGHT and DATE_WEIGHT, so a candidate fused at f scores at most
    f x their product. Exact, and it loads only what the weights can still move (a fixed
    worst-case shortlist would grow with every weight)."""
    ranked = sorted(eligible, key=lambda r: eligible[r]["fused"], reverse=True)
    top_w = (max(*SCOPE_WEIGHTS.values(), 1.0) * SPEAKER_WEIGHT
             * (DATE_WEIGHT if periods else 1.0))
    rows = rows or Rows(store)
    scored: list[tuple[float, int]] = []
    i, batch = 0, 2 * k
    while i < len(ranked):
        chunk = ranked[i:i + batch]
        i += len(chunk)
        got = rows.get(chunk)
        scored += [(final_score(eligible[rid], got[rid], now, query_words, periods), rid)
                   for rid in chunk if rid in got]
        scored.sort(reverse=True)
        if (len(scored) >= k and i < len(ranked)
                and eligible[ranked[i]]["fused"] * top_w < scored[k - 1][0]):
            break
        batch *= 2
    states = load(store, [rid for _, rid in scored[:k]])
    return [(x, rid) for x, rid in scored[:k] if rid in states], states


# How far above the model's noise floor (the similarity unrelated texts reach) a match by
# meaning alone must be when no word of the query occurs in any memory: a third of the way
# from unrelated to identical. Such a query is gibberish or off every topic the store holds
# far more often than it is a paraphrase, and nonsense strings land near memories by chance
# (bench/recall_exit.py), so only a clearly close meaning counts; a query that shares a word
# with the store keeps the plain floor (its paraphrases are what vectors are for).
UNKNOWN_WORDS_MARGIN = 1 / 3


def meaning_floor(store: Store, query: str, noise: float) -> float:
    """The similarity a memory must beat to match `query` by meaning alone."""
    words = content_words(query)
    if not words:
        return noise
    tokenize = _tokenizer(store)
    if tokenize is None:  # an apsw without tokenizer access: the plain floor
        return noise
    if any(_doc_freq(store, w, tokenize) for w in words):
        return noise
    return noise + (1.0 - noise) * UNKNOWN_WORDS_MARGIN


def _matches(parts: dict[str, Any], floor: float, by_feedback: bool = False) -> bool:
    """Found by a keyword, by a meaning closer than `floor`, or (`by_feedback`) by the
    feedback words."""
    return ("bm25" in parts or ("vector" in parts and 1.0 - parts["vector"] > floor)
            or (by_feedback and parts.get("feedback", 0.0) > 0))


def _fill_scores(store: Store, match: str | None, words: list[str], qvec: QueryVector | None,
                 parts_by_rid: dict[int, dict[str, Any]], filled: set[int],
                 tokens: dict[int, tuple[list[str], int]], rows: Rows | None = None,
                 every_match: bool = False, small: SmallScope | None = None,
                 near: dict[int, float] | None = None) -> None:
    """Give each memory not `filled` yet the BM25 and cosine distance its retriever did not
    (a memory that matches no word keeps no `bm25`); adds them to `filled`. `every_match`:
    the keyword candidates are every visible match (keyword_side), so the others have none;
    `near`: the distances of `small`'s memories (SmallScope.similarities)."""
    todo = [r for r in parts_by_rid if r not in filled]
    filled.update(todo)
    if match and not every_match:
        missing = [r for r in todo if "bm25" not in parts_by_rid[r]]
        for rid, s in keyword_scores(store, match, missing, words, tokens, rows).items():
            parts_by_rid[rid]["bm25"] = s
    if qvec is not None:
        missing = [r for r in todo if "vector" not in parts_by_rid[r]]
        if small is not None and near is not None:
            for rid in missing:
                if rid in near:
                    parts_by_rid[rid]["vector"] = near[rid]
            missing = [r for r in missing if r not in small.passing]
        for rid, d in vector_distances(store, qvec, missing).items():
            parts_by_rid[rid]["vector"] = d


# Pseudo-relevance feedback: the first hits name the subject in words the question did not
# use (a question about unwinding whose first hit names a pottery class finds the other pottery
# memories). The words of the first FEEDBACK_DOCS matches that the query lacks and that are
# rare in the store (in at least two memories, since a word of one memory finds nothing new,
# and in at most PRUNE_DF of them plus one, the bar below which a word is worth scoring)
# are ranked by their summed IDF over those hits; the best FEEDBACK_WORDS are searched again
# by keyword, and each memory gains FEEDBACK_WEIGHT x its BM25 for them relative to the best.
def feedback_words(store: Store, words: list[str], first: list[int],
                   counts: dict[str, int] | None = None) -> list[str]:
    """The words of the memories `first` that expand a query searching for `words`; their
    document counts go into `counts` (by term), for scoring them."""
    tokenize = _tokenizer(store)
    if tokenize is None or not first:
        return []
    rows = store_rows(store) or 1
    asked = {t for w in words for t in _tokens(tokenize, w, _FTS5_TOKENIZE_QUERY)}
    weight: dict[str, float] = {}
    term: dict[str, tuple[str, int]] = {}  # a word's one token and its document count
    for (content,) in store.conn.execute(
            "SELECT content FROM memories WHERE rid IN (SELECT value FROM json_each(?))",
            (json.dumps(first),)):
        text = str(content)
        said = _SPEAKER.match(text)  # a speaker's name is who talks, not what about
        seen: set[str] = set()
        for w in (x.lower() for x in _WORD.findall(text[said.end():] if said else text)):
            if w in STOP_WORDS or len(w) < 3 or w.isdigit():
                continue
            toks = _tokens(tokenize, w, _FTS5_TOKENIZE_QUERY)
            if len(toks) != 1 or toks[0] in asked or toks[0] in seen:
                continue
            seen.add(toks[0])
            df = _doc_freq(store, w, tokenize)
            if 2 <= df <= PRUNE_DF * rows + 1:
                weight[w] = weight.get(w, 0.0) + math.log(rows / df)
                term[w] = (toks[0], df)
    chosen = sorted(weight, key=lambda w: -weight[w])[:FEEDBACK_WORDS]
    if counts is not None:
        counts.update(term[w] for w in chosen)
    return chosen


def feedback_on(store: Store, feedback: bool | None) -> bool:
    """Whether a recall runs feedback: as asked, or (None, "auto") in a store of at most
    FEEDBACK_AUTO_ROWS memories."""
    return store_rows(store) <= FEEDBACK_AUTO_ROWS if feedback is None else feedback


def _rids_of(store: Store, ids: Collection[str]) -> set[int]:
    return {int(r) for (r,) in store.conn.execute(
        "SELECT rid FROM memories WHERE id IN (SELECT value FROM json_each(?))",
        (json.dumps(list(ids)),))}


def recall(store: Store, ctx: Context, query: str, k: int = 10,
           filters: Filters | None = None, *,
           qvec: QueryVector | PendingVector | None = None,
           feedback: bool | None = False, exclude: Collection[str] = ()) -> list[dict[str, Any]]:
    """Best `k` memories for `query`: BM25 and (with `qvec`) vector neighbours, scored on both,
    with neighbour context, weighted by recency and scope. The same filters apply to both
    retrievers, so a memory still waiting for its embedding is found by keyword alone. With
    `feedback`, a second keyword pass for the rare words of the first hits; None ("auto",
    `[recall] feedback`'s default) runs it in a store of at most FEEDBACK_AUTO_ROWS memories,
    since its cost grows with the store (docs/ranking.md). `exclude`
    names memories the reader already has: they are not among the `k`, but they are scored as
    candidates all the same and lend their context to the memories beside them, so the rest
    rank as they would without it."""
    filters = filters or Filters()
    pool = pool_size(k)
    words = keyword_words(store, query)
    plain = fts_query(" ".join(words))
    match = scoped_match(plain, ctx, filters.scopes) if plain else None
    bm, every_match = (keyword_side(store, ctx, query, filters, pool, plain, words) if plain
                       else ([], True))
    # The keyword side and a small scope's rows need no vector: they are read while the query
    # is embedded.
    small = SmallScope.read(store, ctx, filters) if qvec is not None else None
    left_out = _rids_of(store, exclude) if exclude else set()
    if callable(qvec):
        qvec = qvec()
    near = small.similarities(qvec) if small is not None and qvec is not None else None
    vec = ([] if qvec is None else SmallScope.nearest(near, pool) if near is not None
           else vector_candidates(store, ctx, qvec, filters, pool))
    parts_by_rid: dict[int, dict[str, Any]] = {}
    for name, hits in (("bm25", bm), ("vector", vec)):
        for rank, (rid, value) in enumerate(hits, 1):
            parts = parts_by_rid.setdefault(rid, {})
            parts[name] = value
            parts[f"{name}_rank"] = rank
    if not parts_by_rid:
        return []
    # A result matches the query by a keyword, or by a meaning closer than unrelated texts get
    # with this model (so nonsense finds nothing, and recall says so with exit 1), or, when a
    # word of the query matched, by the feedback words; or it is the turn beside one that does
    # (a reply). A neighbour that matches in no way at all lends its context to the hit beside
    # it. Feedback is taken from the first hits above the model's plain noise floor (a query
    # none of whose words the store holds still gains from its closest meanings, but finds
    # nothing through them alone).
    floor = meaning_floor(store, query, qvec.floor) if qvec is not None else -1.0
    best = bm[0][1] if bm else 0.0
    filled: set[int] = set()
    tokens: dict[int, tuple[list[str], int]] = {}  # each memory tokenized once per recall
    rows = Rows(store)  # and read once
    more: list[str] = []
    counts: dict[str, int] = {}  # the feedback words' document counts
    more_match = None
    if feedback_on(store, feedback) and match:
        _fill_scores(store, match, words, qvec, parts_by_rid, filled, tokens, rows,
                     every_match, small, near)
        first = sorted((r for r, p in parts_by_rid.items()
                        if _matches(p, qvec.floor if qvec is not None else -1.0)),
                       key=lambda r: relevance(parts_by_rid[r], best, qvec is not None),
                       reverse=True)[:FEEDBACK_DOCS]
        more = feedback_words(store, words, first, counts)
        plain_more = fts_query(" ".join(more))
        if plain_more:
            more_match = scoped_match(plain_more, ctx, filters.scopes)
            for rid, _ in keyword_candidates(store, ctx, "", filters, pool, plain_more, more):
                parts_by_rid.setdefault(rid, {})
    gains = neighbours(store, list(parts_by_rid), filters, ctx, small)
    for x in gains:
        parts_by_rid.setdefault(x, {})
    # Each candidate (and neighbour) gets the score of the retriever that did not find it.
    _fill_scores(store, match, words, qvec, parts_by_rid, filled, tokens, rows,
                     every_match, small, near)
    rel = {rid: relevance(p, best, qvec is not None) for rid, p in parts_by_rid.items()}
    if more_match:
        scores = keyword_scores(store, more_match, list(parts_by_rid), more, tokens, rows,
                                counts)
        top = max(scores.values(), default=0.0)
        for rid, s in scores.items() if top > 0 else ():
            parts_by_rid[rid]["feedback"] = s / top
            rel[rid] += FEEDBACK_WEIGHT * s / top
    for rid, parts in parts_by_rid.items():
        parts["relevance"] = rel[rid]
        ctx_part = sum(rel[x] * w for x, w in gains.get(rid, {}).items())
        if ctx_part:
            parts["context"] = ctx_part
        parts["fused"] = rel[rid] + ctx_part
    now = time.time()
    query_words = {w.lower() for w in _WORD.findall(query)}
    periods = query_periods(query)
    matched = {rid for rid, p in parts_by_rid.items() if _matches(p, floor, bool(bm))}
    eligible = {rid: p for rid, p in parts_by_rid.items()
                if rid not in left_out
                and (rid in matched or (("bm25" in p or "vector" in p)
                                        and any(x in matched for x in gains.get(rid, {}))))}
    scored, states = _best(store, eligible, k, now, query_words, periods, rows)
    results = []
    for score, rid in scored[:k]:
        item = to_public(states[rid])
        item["score"] = round(score, 6)
        parts = parts_by_rid[rid]
        for name in ("bm25", "vector", "relevance", "context", "feedback"):
            if name in parts:
                parts[name] = round(parts[name], 6)
        if "vector" in parts:
            parts["vector_distance"] = parts.pop("vector")
        item["score_parts"] = parts
        results.append(item)
    return results

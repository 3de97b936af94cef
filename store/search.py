"""Recall: keyword search with FTS5 BM25, filtered to what the context may see.

User text never reaches FTS5's query syntax: it is split into words and each word is quoted,
so `C++ "quotes AND OR NEAR( *` is a search for those words, not a syntax error.
Hybrid: BM25 and vector neighbours (store/vectors.py) fused by rank, weighted by recency and
scope; later layers (reranking, context) add candidates and score parts to the same results.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
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
# At 100,000 memories this took BM25 from ~200 ms to a few ms on common-word queries.
PRUNE_MIN_ROWS = 5_000
PRUNE_DF = 0.02
_df_cache: dict[tuple[str, str], tuple[int, float]] = {}
_DF_TTL_S = 300.0
_FTS5_TOKENIZE_QUERY = 0x0001  # apsw.FTS5_TOKENIZE_QUERY


def _doc_freq(store: Store, word: str, tokenize: Any) -> int:
    """How many memories hold `word` (after the FTS tokenizer's stemming), cached a while."""
    key = (store.conn.filename, word)
    hit = _df_cache.get(key)
    now = time.monotonic()
    if hit is not None and now - hit[1] < _DF_TTL_S:
        return hit[0]
    tokens = tokenize(word.encode("utf-8"), _FTS5_TOKENIZE_QUERY, None,
                      include_offsets=False, include_colocated=False)
    store.conn.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.memories_fts_vocab "
                       "USING fts5vocab(main, memories_fts, row)")
    df = min((int(r[0]) for t in tokens for r in store.conn.execute(
        "SELECT doc FROM temp.memories_fts_vocab WHERE term=?", (t,))), default=0)
    if len(_df_cache) > 100_000:
        _df_cache.clear()
    _df_cache[key] = (df, now)
    return df


def keyword_query(store: Store, text: str) -> str | None:
    """`fts_query(text)`, without the words too common to be worth scoring in a large store."""
    words = list(dict.fromkeys(w.lower() for w in _WORD.findall(text)))
    if len(words) > 1:
        rows = dbmod.scalar(store.conn, "SELECT max(rid) FROM memories") or 0
        if rows > PRUNE_MIN_ROWS:
            try:
                tokenize = store.conn.fts5_tokenizer("porter", ["unicode61"])
            except Exception:  # an apsw without tokenizer access: score every word
                return fts_query(text)
            df = {w: _doc_freq(store, w, tokenize) for w in words}
            words = ([w for w in words if df[w] <= PRUNE_DF * rows]
                     or [min(words, key=lambda w: df[w])])
    return fts_query(" ".join(words))


def keyword_candidates(store: Store, ctx: Context, query: str, filters: Filters,
                       limit: int) -> list[tuple[int, float]]:
    """(rid, bm25 score, higher is better) of the best keyword matches."""
    match = keyword_query(store, query)
    if match is None:
        return []
    where, args = filters.sql(ctx)
    rows = store.conn.execute(
        "SELECT m.rid, -bm25(memories_fts) AS s FROM memories_fts "
        "JOIN memories m ON m.rid = memories_fts.rowid "
        f"WHERE memories_fts MATCH ? AND {where} ORDER BY s DESC LIMIT ?",
        [match, *args, limit]).fetchall()
    return [(int(r), float(s)) for r, s in rows]  # type: ignore[arg-type]


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
# Each retriever gives an ordered candidate list; `fuse` combines them by rank (reciprocal rank
# fusion), then `final_score` weights the fused score by recency and scope. Every number that
# went into a result is in its `score_parts`, so later layers (rerankers, neighbour context,
# query rewriting) add a retriever or a part and a weight here, not a new pipeline.

RRF_K = 60                # rank-fusion constant: 1 / (RRF_K + rank)
POOL = 50                 # at least this many candidates per retriever
RECENCY_HALF_LIFE_DAYS = 30.0
RECENCY_WEIGHT = 0.1      # at most +10% for a memory made just now
SCOPE_WEIGHTS = {"task": 1.15, "session": 1.10, "agent": 1.05, "user": 1.0}


@dataclass
class QueryVector:
    """The query embedded by the daemon with the model whose stored vectors it searches."""
    model_id: int
    vector: Any                   # numpy float32 array, L2-normalised
    index: Any = None             # store.vectors.VectorIndex for that model, when loaded


def vector_candidates(store: Store, ctx: Context, qv: QueryVector, filters: Filters,
                      limit: int) -> list[tuple[int, float]]:
    """(rid, cosine distance, lower is better) of the nearest memories that pass the filters."""
    from db0.store import vectors

    where, args = filters.sql(ctx)
    if qv.index is None:
        return vectors.sql_neighbours(store, qv.model_id, qv.vector, where, args, n=limit)
    # The index knows nothing of scopes and filters: take more than needed, keep those that
    # pass; when too few pass (narrow filters), search exactly the rows the filters allow.
    over = qv.index.search(qv.vector, max(4 * limit, 200))
    if not over:
        return []
    ok = _passing(store, where, args, [r for r, _ in over])
    kept = [(r, d) for r, d in over if r in ok]
    if len(kept) >= limit or len(over) >= len(qv.index):
        return kept[:limit]
    allowed = [int(r) for (r,) in store.conn.execute(
        f"SELECT m.rid FROM memories m WHERE {where}", args)]
    return list(qv.index.search(qv.vector, limit, allowed=allowed))


def _passing(store: Store, where: str, args: list[Any], rids: list[int]) -> set[int]:
    out: set[int] = set()
    for i in range(0, len(rids), 500):
        chunk = rids[i:i + 500]
        out.update(int(r) for (r,) in store.conn.execute(
            f"SELECT m.rid FROM memories m WHERE m.rid IN ({','.join('?' * len(chunk))}) "
            f"AND {where}", [*chunk, *args]))
    return out


def fuse(ranked: dict[str, list[tuple[int, float]]], weights: dict[str, float] | None = None,
         ) -> dict[int, dict[str, Any]]:
    """Reciprocal rank fusion of named candidate lists: rid -> score parts with `fused`."""
    weights = weights or {}
    out: dict[int, dict[str, Any]] = {}
    for name, hits in ranked.items():
        w = weights.get(name, 1.0)
        for rank, (rid, value) in enumerate(hits, 1):
            parts = out.setdefault(rid, {"fused": 0.0})
            parts[name] = round(value, 6)
            parts[f"{name}_rank"] = rank
            parts["fused"] += w / (RRF_K + rank)
    return out


def final_score(parts: dict[str, Any], state: dict[str, Any], now: float) -> float:
    """Fused relevance weighted by recency (exponential decay) and scope; fills `parts`."""
    age_days = max(0.0, now - float(state["created_ts"])) / 86400
    recency = 0.5 ** (age_days / RECENCY_HALF_LIFE_DAYS)
    scope_w = SCOPE_WEIGHTS.get(state["scope"], 1.0)
    parts["recency"] = round(recency, 6)
    parts["scope_weight"] = scope_w
    score = parts["fused"] * scope_w * (1 - RECENCY_WEIGHT + RECENCY_WEIGHT * recency)
    parts["fused"] = round(parts["fused"], 6)
    return float(score)


def recall(store: Store, ctx: Context, query: str, k: int = 10,
           filters: Filters | None = None, *, qvec: QueryVector | None = None,
           ) -> list[dict[str, Any]]:
    """Best `k` memories for `query`: BM25 and (with `qvec`) vector neighbours, fused by rank,
    weighted by recency and scope. The same filters apply to both retrievers, so a memory still
    waiting for its embedding is found by keyword alone."""
    filters = filters or Filters()
    pool = max(POOL, 2 * k)
    ranked: dict[str, list[tuple[int, float]]] = {
        "bm25": keyword_candidates(store, ctx, query, filters, pool)}
    if qvec is not None:
        ranked["vector"] = vector_candidates(store, ctx, qvec, filters, pool)
    parts_by_rid = fuse(ranked)
    states = load(store, list(parts_by_rid))
    now = time.time()
    scored = sorted(((final_score(parts, states[rid], now), rid)
                     for rid, parts in parts_by_rid.items() if rid in states), reverse=True)
    results = []
    for score, rid in scored[:k]:
        item = to_public(states[rid])
        item["score"] = round(score, 6)
        parts = parts_by_rid[rid]
        if "vector" in parts:
            parts["vector_distance"] = parts.pop("vector")
        item["score_parts"] = parts
        results.append(item)
    return results

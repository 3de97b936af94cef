"""Recall: keyword search with FTS5 BM25, filtered to what the context may see.

User text never reaches FTS5's query syntax: it is split into words and each word is quoted,
so `C++ "quotes AND OR NEAR( *` is a search for those words, not a syntax error.
Later layers (vectors, fusion, reranking) add candidates and score parts to the same results.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

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
        )

    def sql(self, ctx: Context, alias: str = "m") -> tuple[str, list[Any]]:
        where, args = visible_sql(ctx, self.scopes, alias, live=not self.include_superseded)
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


def keyword_candidates(store: Store, ctx: Context, query: str, filters: Filters,
                       limit: int) -> list[tuple[int, float]]:
    """(rid, bm25 score, higher is better) of the best keyword matches."""
    match = fts_query(query)
    if match is None:
        return []
    where, args = filters.sql(ctx)
    rows = store.conn.execute(
        "SELECT m.rid, -bm25(memories_fts) AS s FROM memories_fts "
        "JOIN memories m ON m.rid = memories_fts.rowid "
        f"WHERE memories_fts MATCH ? AND {where} ORDER BY s DESC LIMIT ?",
        [match, *args, limit]).fetchall()
    return [(int(r), float(s)) for r, s in rows]


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


def recall(store: Store, ctx: Context, query: str, k: int = 10,
           filters: Filters | None = None) -> list[dict[str, Any]]:
    filters = filters or Filters()
    started = time.perf_counter()
    hits = keyword_candidates(store, ctx, query, filters, k)
    states = load(store, [rid for rid, _ in hits])
    results = []
    for rank, (rid, score) in enumerate(hits, 1):
        item = to_public(states[rid])
        item["score"] = round(score, 6)
        item["score_parts"] = {"bm25": round(score, 6), "bm25_rank": rank}
        results.append(item)
    del started
    return results

"""Late interaction (MaxSim) over stored token vectors, and their int8 form.

A memory's token vectors (unit length) are stored as int8, one scale per token (float16, the
token's largest absolute value / 127), so a memory of t tokens of dimension d takes t * (d + 2)
bytes. A query's score for a memory is the sum, over the query's tokens, of the best dot
product with any of the memory's tokens.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def pack(x: Any) -> bytes:
    """float32 [t, d] unit rows -> bytes: the t scales (float16), then t * d int8 values."""
    x = np.asarray(x, dtype=np.float32)
    scale = np.maximum(np.abs(x).max(1), 1e-12) / 127.0
    q = np.round(x / scale[:, None]).astype(np.int8)
    return bytes(scale.astype("<f2").tobytes()) + bytes(q.tobytes())


def unpack(blob: bytes, dim: int) -> Any:
    """The float32 [t, d] rows `pack` stored."""
    t = len(blob) // (dim + 2)
    if t * (dim + 2) != len(blob):
        raise ValueError(f"a token-vector blob of {len(blob)} bytes is not t * ({dim} + 2)")
    scale = np.frombuffer(blob, "<f2", t).astype(np.float32)
    q = np.frombuffer(blob, np.int8, t * dim, offset=2 * t).reshape(t, dim)
    return q.astype(np.float32) * scale[:, None]


def maxsim(query: Any, docs: list[Any]) -> Any:
    """One score per doc: sum over query rows of the best dot product with the doc's rows."""
    if not docs:
        return np.zeros(0, dtype=np.float32)
    lens = [len(d) for d in docs]
    sims = np.asarray(query, dtype=np.float32) @ np.concatenate(docs).T
    starts = np.cumsum([0, *lens[:-1]])
    return np.maximum.reduceat(sims, starts, axis=1).sum(0)


FUSE_R = 10   # reciprocal-rank fusion's constant: small, since it fuses lists of about 30
# Recall's first results that the late stage re-orders. It can only bring up what the first
# stage put among them, so it reads as many as its budget allows: each one costs a primary-key
# read and a row of one matrix product, whatever the store's size (docs/late-interaction.md).
LATE_TOP = 100


def reorder(results: list[dict[str, Any]], scores: dict[str, float],
            r: float = FUSE_R) -> list[dict[str, Any]]:
    """`results` (best first) with those that have a late score re-ordered among the places
    they hold, by the fusion of their first-stage rank and their late rank; the rest stay."""
    slots = [i for i, x in enumerate(results) if x["id"] in scores]
    if len(slots) < 2:
        return results
    scored = [results[i] for i in slots]
    order = fuse([scores[x["id"]] for x in scored], r)
    out = list(results)
    for slot, j in zip(slots, order, strict=True):
        x = scored[j]
        x.setdefault("score_parts", {})["late"] = round(scores[x["id"]], 4)
        out[slot] = x
    return out


def fuse(late_scores: Any, r: float) -> list[int]:
    """Reciprocal-rank fusion of the first-stage order (0..n-1) with the order of
    `late_scores`: the new order of the n candidates, as indexes into them."""
    n = len(late_scores)
    late = sorted(range(n), key=lambda i: -float(late_scores[i]))
    rank = {c: k for k, c in enumerate(late)}
    return sorted(range(n), key=lambda i: -(1 / (r + i) + 1 / (r + rank[i])))


# -- the stored table (m013_late_vectors) ------------------------------------------------------

def pending(store: Any, model: str, limit: int) -> list[tuple[int, str, str]]:
    """(rid, content, content_hash) of live memories with no token vectors from `model` for
    their current text, newest first (what a prompt asks about is most often recent)."""
    return [(int(r[0]), str(r[1]), str(r[2])) for r in store.conn.execute(
        "SELECT m.rid, m.content, m.content_hash FROM memories m "
        "LEFT JOIN late_vectors l ON l.rid = m.rid WHERE m.forgotten_ts IS NULL "
        "AND (l.rid IS NULL OR l.model != ? OR l.content_hash != m.content_hash) "
        "ORDER BY m.rid DESC LIMIT ?", (model, limit))]


def count_pending(store: Any, model: str) -> int:
    row = store.conn.execute(
        "SELECT count(*) FROM memories m LEFT JOIN late_vectors l ON l.rid = m.rid "
        "WHERE m.forgotten_ts IS NULL "
        "AND (l.rid IS NULL OR l.model != ? OR l.content_hash != m.content_hash)",
        (model,)).fetchone()
    return int(row[0])


def save(store: Any, model: str, dim: int, rows: list[tuple[int, str, bytes]]) -> int:
    """Store (rid, content_hash, packed vectors) rows made by `model`; a memory deleted
    meanwhile is skipped. Returns how many were written."""
    n = 0
    for rid, chash, blob in rows:
        store.conn.execute(
            "INSERT INTO late_vectors(rid, model, content_hash, dim, vectors) "
            "SELECT rid, ?, ?, ?, ? FROM memories WHERE rid = ? "
            "ON CONFLICT(rid) DO UPDATE SET model=excluded.model, "
            "content_hash=excluded.content_hash, dim=excluded.dim, vectors=excluded.vectors",
            (model, chash, dim, blob, rid))
        n += store.conn.changes()
    return n


def load(store: Any, ids: list[str], model: str) -> dict[str, Any]:
    """Memory id -> float32 token vectors, for those of `ids` whose vectors are current."""
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    out = {}
    for mid, dim, blob in store.conn.execute(
            f"SELECT m.id, l.dim, l.vectors FROM memories m JOIN late_vectors l "
            f"ON l.rid = m.rid AND l.content_hash = m.content_hash AND l.model = ? "
            f"WHERE m.id IN ({marks})", (model, *ids)):
        out[str(mid)] = unpack(bytes(blob), int(dim))
    return out

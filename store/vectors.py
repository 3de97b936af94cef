"""Stored embeddings: the models that made them, the queue of memories still to embed, and the
rows themselves (`memory_vectors`), the one float32 copy of every vector.

The daemon searches them through `store/vecindex.py`, a rebuildable int8 cache partitioned by
scope and owner; without one (a plain store, tests) `sql_neighbours` asks SQLite with
sqlite-vec's `vec_distance_cosine`, exact and filtered in the same query.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from db0.store import db as dbmod
from db0.store.core import Store


def to_blob(vec: Sequence[float] | np.ndarray) -> bytes:
    return np.asarray(vec, dtype="<f4").tobytes()


def from_blob(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f4")


# -- models ------------------------------------------------------------------------------------

def model_id(store: Store, name: str, sha256: str, dim: int) -> int:
    """The id of a model (registered on first use). Runs in the writer's transaction."""
    row = store.conn.execute("SELECT model_id, dim FROM embed_models WHERE name=? AND sha256=?",
                             (name, sha256)).fetchone()
    if row is not None:
        return int(row[0])
    return int(dbmod.scalar(
        store.conn, "INSERT INTO embed_models(name, sha256, dim, created_ts) VALUES (?, ?, ?, ?) "
        "RETURNING model_id", (name, sha256, dim, time.time())))


def find_model(store: Store, name: str, sha256: str) -> int | None:
    row = store.conn.execute("SELECT model_id FROM embed_models WHERE name=? AND sha256=?",
                             (name, sha256)).fetchone()
    return None if row is None else int(row[0])


def coverage(store: Store) -> dict[int, int]:
    """model id -> how many live memories have an up-to-date vector from it."""
    return {int(m): int(n) for m, n in store.conn.execute(
        "SELECT v.model_id, count(*) FROM memory_vectors v JOIN memories m ON m.rid=v.rid "
        "AND m.content_hash=v.content_hash WHERE m.forgotten_ts IS NULL GROUP BY v.model_id")}


# -- the queue: memories without an up-to-date vector -------------------------------------------

_LIVE = "memories m INDEXED BY memories_live_hash"
_PENDING = ("m.forgotten_ts IS NULL AND NOT EXISTS (SELECT 1 FROM memory_vectors v INDEXED BY "
            "memory_vectors_state WHERE v.model_id=? AND v.rid=m.rid "
            "AND v.content_hash=m.content_hash)")


def pending_count(store: Store, mid: int) -> int:
    return int(dbmod.scalar(store.conn, f"SELECT count(*) FROM {_LIVE} WHERE {_PENDING}",
                            (mid,)))


def pending_batch(store: Store, mid: int, limit: int, before: int | None = None,
                  after: int = 0) -> list[tuple[int, str, str]]:
    """(rid, content, content_hash) waiting for a vector, newest first, `after` < rid <
    `before`."""
    return [(int(r), str(c), str(h)) for r, c, h in store.conn.execute(
        f"SELECT m.rid, m.content, m.content_hash FROM {_LIVE} WHERE m.rid < ? AND m.rid > ? "
        f"AND {_PENDING} ORDER BY m.rid DESC LIMIT ?",
        (before if before is not None else 1 << 62, after, mid, limit))]


def changes_mark(store: Store) -> str:
    """What any change to the memories moves (every change logs an op, whose seq only grows)
    and the schema's step count: equal marks, no change in between."""
    seq = dbmod.scalar(store.conn, "SELECT max(seq) FROM ops") or 0
    version = dbmod.scalar(store.conn, "PRAGMA user_version") or 0
    return f"{int(version)}:{int(seq)}"  # type: ignore[call-overload]


def pending_of(store: Store, mid: int, ids: Sequence[str]) -> list[tuple[int, str, str]]:
    """The memories among `ids` (public ids) that still wait for a vector."""
    out: list[tuple[int, str, str]] = []
    for i in range(0, len(ids), 500):
        chunk = list(ids[i:i + 500])
        out += [(int(r), str(c), str(h)) for r, c, h in store.conn.execute(
            f"SELECT m.rid, m.content, m.content_hash FROM memories m WHERE m.id IN "
            f"({','.join('?' * len(chunk))}) AND {_PENDING}", [*chunk, mid])]
    return out


def cached(store: Store, mid: int, hashes: Iterable[str]) -> dict[str, bytes]:
    """Vectors this model already made for these texts, under any memory that still holds
    the text: found by (model, hash) in memory_vectors_hash, each kept only while its memory's
    text has that hash still."""
    hs = list(dict.fromkeys(hashes))
    out: dict[str, bytes] = {}
    for i in range(0, len(hs), 500):
        chunk = hs[i:i + 500]
        for h, blob in store.conn.execute(
                "SELECT v.content_hash, v.vector FROM memory_vectors v "
                "INDEXED BY memory_vectors_hash JOIN memories m ON m.rid=v.rid "
                "AND m.content_hash=v.content_hash WHERE v.model_id=? "
                f"AND v.content_hash IN ({','.join('?' * len(chunk))})", [mid, *chunk]):
            out[str(h)] = bytes(blob)
    return out


def put(store: Store, mid: int, rows: Sequence[tuple[int, str, bytes]]) -> None:
    """Store (rid, content_hash, vector) rows for a model. In the writer's transaction."""
    now = time.time()
    store.conn.executemany(
        "INSERT INTO memory_vectors(model_id, rid, content_hash, vector, created_ts) "
        "SELECT ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM memories WHERE rid=?) "
        "ON CONFLICT(model_id, rid) DO UPDATE SET content_hash=excluded.content_hash, "
        "vector=excluded.vector, created_ts=excluded.created_ts",
        [(mid, rid, h, blob, now, rid) for rid, h, blob in rows])


def drop_model(store: Store, mid: int) -> int:
    n = dbmod.scalar(store.conn, "SELECT count(*) FROM memory_vectors WHERE model_id=?",
                     (mid,))
    store.conn.execute("DELETE FROM memory_vectors WHERE model_id=?", (mid,))
    return int(n)


# -- search without an index ------------------------------------------------------------

def sql_neighbours(store: Store, mid: int, query: np.ndarray, where: str, args: list[Any],
                   *, n: int) -> list[tuple[int, float]]:
    """Exact filtered k-NN in SQLite (sqlite-vec), for stores without an in-memory index."""
    rows = store.conn.execute(
        "SELECT m.rid, vec_distance_cosine(v.vector, ?) AS d FROM memories m "
        "JOIN memory_vectors v ON v.rid=m.rid AND v.model_id=? "
        f"WHERE {where} ORDER BY d LIMIT ?", [to_blob(query), mid, *args, n]).fetchall()
    return [(int(r), float(d)) for r, d in rows]  # type: ignore[arg-type]

"""Stored embeddings and the in-memory index that searches them.

Rows live in `memory_vectors` (m002). `VectorIndex` holds one model's vectors as a NumPy matrix
(rows in insertion order, a rid -> row map), kept by the daemon and updated as vectors are
written; a search is one matrix-vector product (cosine = dot product of unit vectors). Without
an index (a plain store, tests), `sql_neighbours` asks SQLite with sqlite-vec's
`vec_distance_cosine`, exact and filtered in the same query.
"""

from __future__ import annotations

import threading
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
                  ) -> list[tuple[int, str, str]]:
    """(rid, content, content_hash) waiting for a vector, newest first, rid < `before`."""
    return [(int(r), str(c), str(h)) for r, c, h in store.conn.execute(
        f"SELECT m.rid, m.content, m.content_hash FROM {_LIVE} WHERE m.rid < ? AND "
        f"{_PENDING} ORDER BY m.rid DESC LIMIT ?",
        (before if before is not None else 1 << 62, mid, limit))]


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
    """Vectors this model already made for these texts (under any memory)."""
    hs = list(dict.fromkeys(hashes))
    out: dict[str, bytes] = {}
    for i in range(0, len(hs), 500):
        chunk = hs[i:i + 500]
        for h, blob in store.conn.execute(
                f"SELECT content_hash, vector FROM memory_vectors WHERE model_id=? AND "
                f"content_hash IN ({','.join('?' * len(chunk))})", [mid, *chunk]):
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


# -- search --------------------------------------------------------------------------------------

class VectorIndex:
    """One model's vectors in memory. Safe for one writer thread and many searching threads."""

    def __init__(self, mid: int, dim: int) -> None:
        self.model_id = mid
        self.dim = dim
        self._mat = np.zeros((0, dim), dtype=np.float32)
        self._rids = np.zeros(0, dtype=np.int64)
        self._n = 0
        self._pos: dict[int, int] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self._n

    @classmethod
    def load(cls, store: Store, mid: int, dim: int) -> VectorIndex:
        idx = cls(mid, dim)
        rows = store.conn.execute("SELECT rid, vector FROM memory_vectors WHERE model_id=? "
                                  "ORDER BY rid", (mid,)).fetchall()
        if rows:
            rids: list[int] = [int(r) for r, _ in rows]  # type: ignore[arg-type]
            idx.add(rids, np.frombuffer(b"".join(bytes(b) for _, b in rows),  # type: ignore[arg-type]
                                        dtype="<f4").reshape(len(rows), dim))
        return idx

    def add(self, rids: Sequence[int], vecs: np.ndarray) -> None:
        with self._lock:
            new = [(i, r) for i, r in enumerate(rids) if r not in self._pos]
            for i, r in enumerate(rids):
                if r in self._pos:
                    self._mat[self._pos[r]] = vecs[i]
            need = self._n + len(new)
            if need > len(self._mat):  # grow by doubling; searches keep the old arrays
                cap = max(need, 2 * len(self._mat), 1024)
                mat = np.zeros((cap, self.dim), dtype=np.float32)
                mat[:self._n] = self._mat[:self._n]
                rid_arr = np.full(cap, -1, dtype=np.int64)
                rid_arr[:self._n] = self._rids[:self._n]
                self._mat, self._rids = mat, rid_arr
            for i, r in new:
                self._mat[self._n] = vecs[i]
                self._rids[self._n] = r
                self._pos[r] = self._n
                self._n += 1

    def search(self, query: np.ndarray, n: int, allowed: Sequence[int] | None = None,
               ) -> list[tuple[int, float]]:
        """The `n` nearest (rid, cosine distance), nearest first; only `allowed` rids if given."""
        with self._lock:
            count, mat, rids = self._n, self._mat, self._rids
            rows = None
            if allowed is not None:
                rows = np.fromiter((p for p in (self._pos.get(r) for r in allowed)
                                    if p is not None), dtype=np.int64)
        if rows is not None:
            if len(rows) == 0:
                return []
            sims = mat[rows] @ query
            ids = rids[rows]
        else:
            sims = mat[:count] @ query
            ids = rids[:count]
        if len(sims) == 0:
            return []
        n = min(n, len(sims))
        top = np.argpartition(-sims, n - 1)[:n] if n < len(sims) else np.arange(len(sims))
        top = top[np.argsort(-sims[top], kind="stable")]
        return [(int(ids[i]), float(1.0 - sims[i])) for i in top]


def sql_neighbours(store: Store, mid: int, query: np.ndarray, where: str, args: list[Any],
                   *, n: int) -> list[tuple[int, float]]:
    """Exact filtered k-NN in SQLite (sqlite-vec), for stores without an in-memory index."""
    rows = store.conn.execute(
        "SELECT m.rid, vec_distance_cosine(v.vector, ?) AS d FROM memories m "
        "JOIN memory_vectors v ON v.rid=m.rid AND v.model_id=? "
        f"WHERE {where} ORDER BY d LIMIT ?", [to_blob(query), mid, *args, n]).fetchall()
    return [(int(r), float(d)) for r, d in rows]  # type: ignore[arg-type]

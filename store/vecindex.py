"""A persisted vector index for one embedding model, searched by partition (scope, owner).

Owns the files of one directory (one per model). They are a cache: the rows of `memory_vectors`
(store/migrations) stay the one full-precision copy and the source of truth, the index can always be
rebuilt from them, and an index file is trusted only once the database vouches for it.
Imports numpy and, when installed, usearch; nothing of daemon/ or db0cli/.

Partitions. Every vector belongs to the (scope, owner) of its memory, and a recall sees only a
few of them (store/context.py). Rows are stored grouped by partition, so a partition is one
contiguous slice of the file. A partition of up to BIG vectors is searched exactly; a bigger one
also has an HNSW graph (usearch, int8), searched approximately. So a recall for one agent among
thousands reads that agent's few hundred rows and nothing else.

Exactness. The file holds each vector as int8 codes with a per-row scale and the norm of what
rounding lost (`resid`). For a unit query q, |q.v - scale * q.codes| <= resid (Cauchy-Schwarz),
so every row whose upper bound reaches the n-th best lower bound is re-scored from its float32
row in SQLite and the rest cannot be in the top n: the result of an exact search is the result
of brute force over the stored vectors, and its distances are exact. Rows added since the file
was written (the delta) are held in float32 and scored exactly. A row in a graph is the
exception: its partition is searched approximately anyway (bench/vector_index.py measures
recall@10 against exact search), so its graph candidates and its lists' rows keep their int8
scores (within resid of exact), and only those whose side of the cut (in the n or out) is
uncertain within SIGMAS deviations of their rounding error are re-read from SQLite: each read
is a random read of `memory_vectors`, which is what the first recalls after a start wait on.

Coarse lists beside a graph. A graph's rows are also filed in lists, one per centroid of a
k-means over their int8 codes (`_Lists`), and a search scans the LIST_PROBES lists nearest the
query besides walking the graph. Many near-copies of one meaning (a fact stored by a hundred
agents) form a tight cluster whose neighbour lists point inside it; a beam that starts in
another cluster spends itself on that cluster's copies and can miss the query's altogether,
while the list scan finds such a cluster whole. The lists are made when the graph is (or, for
a graph without them, at the next persist) and extended with it.

Memory. The small per-row arrays (rid, partition, scale, ...) are memory-mapped; the int8 rows
are read with pread when a search needs them, so they never pile up in the process's RSS; the
graphs are memory-mapped by usearch (`view`). Nothing is rebuilt into Python objects per row.

Files and kill-safety. `vectors.idx` is a magic, a JSON header and 64-byte-aligned arrays, each
with its CRC-32 in the header; graphs are separate files named in the header, with their size
and CRC-32. A new version is written under a temporary name, fsynced, and renamed over the old
one (graphs first, then the main file, which is the commit point), so a kill leaves the old
version or the new one, never a mix; a file whose size, CRC, model, database or sequence number
does not check out is rebuilt from the database.

Freshness. The header records the last `vector_changes.seq` (m011) the file includes. `open`
applies the changes after it (vectors added, changed or deleted, memories moved to another
scope or owner) and checks the count against `memory_vectors`; when the log can no longer bring
the file up to date (pruned past it, or the database is older than the file), it rebuilds.

Threads. One writer (add, remove, catch_up, persist); any number of searching threads. State
that a search reads is swapped whole under a lock, never changed in place.
"""

from __future__ import annotations

import itertools
import json
import os
import struct
import threading
import zlib
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from db0.store import db as dbmod
from db0.store.core import Store

BIG = 20_000             # partitions with more vectors than this get an HNSW graph
GRAPH_STALE = 0.05       # a graph missing this share of its partition is rebuilt at persist
GRAPH_STALE_MIN = 2_000  # ... but not for fewer rows than this
REBUILD_BEHIND = 50_000  # open() rebuilds rather than replays more changes than this (or half)
CONNECTIVITY = 16        # HNSW M
EXPANSION_ADD = 256      # HNSW efConstruction (why 256: docs/diy-compare.md, seventeenth round)
# HNSW ef at search grows with the graph: size / 900, between these, chosen with
# bench/vector_index.py to keep recall@10 near 0.98 on MiniLM vectors (docs/performance.md).
# The floor is for clustered near-copies (one meaning stored hundreds of times over): their
# neighbour lists point inside the cluster, and a narrower beam can miss the query's cluster
# altogether (docs/performance.md, "Keyword and vector search").
EXPANSION_SEARCH = 512
EXPANSION_MAX = 1_100
LIST_ROWS = 250          # rows per coarse list beside a graph (k-means centroids: rows / this)
LIST_MAX = 8_192         # ... at most this many lists
LIST_PROBES = 8          # lists scanned (int8-scored) per graph search
# A graph row's int8 score is uncertain within this many standard deviations of its rounding
# error's dot with the query (|err| |q| / sqrt(dim) for an error of no particular direction),
# not within the worst case |err| |q|: in a cluster of near-copies the worst case would send
# most of the cluster to SQLite for its float32 row.
SIGMAS = 3.0
LIST_SAMPLE = 24         # k-means learns from this many rows per centroid
LIST_ROUNDS = 8          # k-means rounds
FORMAT = 1
MAGIC = b"DB0VIX01"
MAIN = "vectors.idx"
_ALIGN = 64
_CHUNK = 8_192           # rows per SQLite read while rebuilding
_EPS = 1e-5              # float32 rounding in the approximate dot products

Partition = tuple[str, str]


class IndexFileError(Exception):
    """An index file that cannot be trusted (missing, torn, corrupt, or for another database)."""


def quantise(vecs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """int8 codes, scale and residual norm per row: v ~ scale * codes, |v - that| = resid."""
    vecs = np.ascontiguousarray(vecs, dtype=np.float32)
    peak = np.abs(vecs).max(axis=1) if len(vecs) else np.zeros(0, np.float32)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    codes = np.clip(np.rint(vecs / scale[:, None]), -127, 127).astype(np.int8)
    resid = np.linalg.norm(vecs - codes.astype(np.float32) * scale[:, None], axis=1)
    return codes, scale, (resid * 1.0001 + 1e-7).astype(np.float32)


def _usearch() -> Any:
    try:
        from usearch.index import Index
    except ImportError:  # without it every partition is searched exactly
        return None
    return Index


# -- the database side -------------------------------------------------------------------------

def change_seq(store: Store) -> int:
    """The last sequence number written to `vector_changes` (0 before the first)."""
    row = store.conn.execute("SELECT seq FROM sqlite_sequence WHERE name='vector_changes'"
                             ).fetchone()
    return int(row[0]) if row else 0


def prune_changes(store: Store, upto: int) -> None:
    """Drop the log up to `upto`, the lowest seq every live index file includes. Writer only."""
    store.conn.execute("DELETE FROM vector_changes WHERE seq <= ?", (upto,))


def database_id(store: Store) -> str:
    return str(dbmod.meta_get(store.conn, "device_id") or "")


def vector_count(store: Store, mid: int) -> int:
    return int(dbmod.scalar(store.conn, "SELECT count(*) FROM memory_vectors WHERE model_id=?",
                            (mid,)))


def fetch_vectors(store: Store, mid: int, rids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rids found, their float32 vectors) for one model, in the order found."""
    got_r: list[int] = []
    got_v: list[bytes] = []
    ids = [int(r) for r in rids]
    for i in range(0, len(ids), 10_000):
        for r, b in store.conn.execute(
                "SELECT rid, vector FROM memory_vectors WHERE model_id=? AND rid IN "
                "(SELECT value FROM json_each(?))", (mid, json.dumps(ids[i:i + 10_000]))):
            got_r.append(int(r))  # type: ignore[arg-type]
            got_v.append(bytes(b))  # type: ignore[arg-type]
    vecs = (np.frombuffer(b"".join(got_v), dtype="<f4").reshape(len(got_r), -1)
            if got_r else np.zeros((0, 0), np.float32))
    return np.asarray(got_r, dtype=np.int64), vecs


# -- in-memory state -----------------------------------------------------------------------------

class _Codes:
    """The int8 rows of a file, read with pread on demand rather than mapped: a mapped page
    stays in the process's RSS (with the large folios the page cache uses, a whole folio per
    touch), while a search only needs a copy of its partition's slice for a moment."""

    def __init__(self, f: Any, offset: int, n: int, dim: int) -> None:
        self.f = f            # an open file (kept open while a search may use this base)
        self.offset = offset
        self.shape = (n, dim)
        self.dim = dim

    def __len__(self) -> int:
        return self.shape[0]

    def span(self, lo: int, hi: int) -> np.ndarray:
        if hi <= lo:
            return np.zeros((0, self.dim), np.int8)
        buf = os.pread(self.f.fileno(), (hi - lo) * self.dim, self.offset + lo * self.dim)
        if len(buf) != (hi - lo) * self.dim:
            raise IndexFileError("index file shrank while in use")
        return np.frombuffer(buf, dtype=np.int8).reshape(hi - lo, self.dim)

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Rows in any order: one read per run of consecutive rows."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), self.dim), np.int8)
        if len(rows) == 0:
            return out
        order = np.argsort(rows, kind="stable")
        srt = rows[order]
        cut = np.flatnonzero(np.diff(srt) != 1) + 1
        for a, b in zip(np.r_[0, cut].tolist(), np.r_[cut, len(srt)].tolist(), strict=True):
            out[order[a:b]] = self.span(int(srt[a]), int(srt[b - 1]) + 1)
        return out


class _InRam:
    """int8 rows held in memory (an empty index, or rows not written yet)."""

    def __init__(self, codes: np.ndarray) -> None:
        self.codes = codes
        self.shape = codes.shape

    def __len__(self) -> int:
        return len(self.codes)

    def span(self, lo: int, hi: int) -> np.ndarray:
        return self.codes[lo:hi]

    def take(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.codes[rows])


@dataclass
class _Base:
    """The rows of the file, grouped by partition (read-only, usually memory-mapped)."""
    rids: np.ndarray       # int64 [N], by partition; by rid within one (a graph's: by list)
    pids: np.ndarray       # int32 [N]
    scale: np.ndarray      # float32 [N]
    resid: np.ndarray      # float32 [N]
    codes: _Codes | _InRam  # int8 [N, dim]
    in_graph: np.ndarray   # uint8 [N]: the row's vector is in its partition's graph
    rid_sorted: np.ndarray  # int64 [N]: the rids, sorted
    by_rid: np.ndarray     # int32 [N]: the row of each of those
    starts: np.ndarray     # int64 [P + 1]: partition p is rows starts[p]:starts[p+1]
    dead: np.ndarray       # bool [N]: removed or replaced since (copied on write)
    n_dead: int = 0        # how many of `dead` are set (counted where they are set)

    @classmethod
    def empty(cls, dim: int) -> _Base:
        z = np.zeros(0, np.int64)
        return cls(z, np.zeros(0, np.int32), np.zeros(0, np.float32), np.zeros(0, np.float32),
                   _InRam(np.zeros((0, dim), np.int8)), np.zeros(0, np.uint8), z,
                   np.zeros(0, np.int32), np.zeros(1, np.int64), np.zeros(0, bool))

    def rows_of(self, rids: np.ndarray) -> np.ndarray:
        """Row numbers of these rids (-1 where absent or dead)."""
        if len(self.rids) == 0 or len(rids) == 0:
            return np.full(len(rids), -1, np.int64)
        pos = np.minimum(np.searchsorted(self.rid_sorted, rids), len(self.rid_sorted) - 1)
        rows = self.by_rid[pos].astype(np.int64)
        ok = (self.rid_sorted[pos] == rids) & ~self.dead[rows]
        return np.where(ok, rows, -1)

    def span(self, pid: int) -> tuple[int, int]:
        if pid + 1 >= len(self.starts):
            return 0, 0
        return int(self.starts[pid]), int(self.starts[pid + 1])


@dataclass
class _Delta:
    """Rows added since the file was written, in float32 (exact), append-only arrays."""
    rids: np.ndarray
    pids: np.ndarray
    vecs: np.ndarray
    dead: np.ndarray
    n: int = 0
    where: dict[int, int] = field(default_factory=dict)  # live rid -> row


@dataclass(frozen=True)
class _Lists:
    """A graph's rows filed by nearest centroid: list l is rids[starts[l]:starts[l + 1]]."""
    centroids: np.ndarray  # float32 [C, dim], unit rows
    starts: np.ndarray     # int64 [C + 1]
    rids: np.ndarray       # int64 [m]

    @classmethod
    def of(cls, centroids: np.ndarray, near: np.ndarray, rids: np.ndarray) -> _Lists:
        order = np.argsort(near, kind="stable")
        starts = np.zeros(len(centroids) + 1, np.int64)
        np.cumsum(np.bincount(near, minlength=len(centroids)), out=starts[1:])
        return cls(centroids, starts, np.asarray(rids, np.int64)[order])

    def near(self) -> np.ndarray:
        """The list of each of `rids`."""
        return np.repeat(np.arange(len(self.centroids)), np.diff(self.starts))

    def probe(self, q: np.ndarray, k: int) -> np.ndarray:
        """The rids of the k lists whose centroids are nearest q."""
        k = min(k, len(self.centroids))
        if k <= 0:
            return np.zeros(0, np.int64)
        top = np.argpartition(-(self.centroids @ q), k - 1)[:k]
        return np.concatenate([self.rids[self.starts[c]:self.starts[c + 1]] for c in top])

    def save(self, path: Path) -> None:
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            np.savez(f, centroids=self.centroids, starts=self.starts, rids=self.rids)
            f.flush()
            os.fsync(f.fileno())

    @classmethod
    def load(cls, path: Path, dim: int) -> _Lists:
        import zipfile

        try:
            with np.load(path, allow_pickle=False) as z:
                got = cls(z["centroids"].astype(np.float32), z["starts"].astype(np.int64),
                          z["rids"].astype(np.int64))
        except (OSError, KeyError, zipfile.BadZipFile) as e:
            raise ValueError(f"unreadable lists: {e}") from e
        if (got.centroids.ndim != 2 or got.centroids.shape[1] != dim
                or len(got.starts) != len(got.centroids) + 1
                or int(got.starts[-1]) != len(got.rids)):
            raise ValueError("lists of the wrong shape")
        return got


def _unit(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32)
    out: np.ndarray = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return out


def _nearest(centroids: np.ndarray, take: Any, rows: np.ndarray, cancel: Any
             ) -> np.ndarray | None:
    """The nearest centroid of each row (`take(rows)`: int8 codes), None once cancelled."""
    near = np.empty(len(rows), np.int64)
    for s in range(0, len(rows), 16_384):
        if cancel is not None and cancel():
            return None
        near[s:s + 16_384] = np.argmax(_unit(take(rows[s:s + 16_384])) @ centroids.T, axis=1)
    return near


def _make_lists(take: Any, rows: np.ndarray, rids: np.ndarray, cancel: Any,
                old: _Lists | None = None) -> _Lists | None:
    """Lists over `rows` (rids `rids`): the old ones less rids gone plus the new rows filed
    by the old centroids, or, when there are none or the rows outgrew them, a new k-means
    (seeded by the row count: the same rows give the same lists). None once cancelled."""
    if len(rows) == 0:
        return None
    want = int(min(LIST_MAX, max(1, len(rows) // LIST_ROWS)))
    if old is not None and len(old.centroids) * 2 >= want:
        keep = np.isin(old.rids, rids)
        new = ~np.isin(rids, old.rids[keep])
        near = _nearest(old.centroids, take, rows[new], cancel)
        if near is None:
            return None
        return _Lists.of(old.centroids, np.concatenate([old.near()[keep], near]),
                         np.concatenate([old.rids[keep], rids[new]]))
    rng = np.random.default_rng(len(rows))
    pts = _unit(take(np.sort(rng.choice(rows, min(len(rows), LIST_SAMPLE * want),
                                        replace=False))))
    cent = pts[rng.choice(len(pts), want, replace=False)]
    for _ in range(LIST_ROUNDS):
        if cancel is not None and cancel():
            return None
        near = np.argmax(pts @ cent.T, axis=1)
        counts = np.bincount(near, minlength=want)
        full = np.flatnonzero(counts)
        sums = np.add.reduceat(pts[np.argsort(near, kind="stable")],
                               (np.cumsum(counts) - counts)[full], axis=0)
        cent[full] = _unit(sums)  # an emptied centroid keeps its place
    near = _nearest(cent, take, rows, cancel)
    return None if near is None else _Lists.of(cent, near, rids)


def _list_order(rids: np.ndarray, lists: _Lists) -> np.ndarray:
    """The order of a partition's rows (rids ascending) that puts each list's rows together,
    lists in order and rids ascending within each, the rows in no list last."""
    rank = np.full(len(rids), len(lists.centroids), np.int64)
    pos = np.minimum(np.searchsorted(rids, lists.rids), max(len(rids) - 1, 0))
    hit = rids[pos] == lists.rids if len(rids) else np.zeros(len(lists.rids), bool)
    rank[pos[hit]] = lists.near()[hit]
    return np.argsort(rank, kind="stable")


def _permuted(take: Any, perm: np.ndarray) -> Any:
    return lambda rows: take(perm[rows])


# (rids, int8 sims, bounds of their error, in_graph): a graph's row has a bound of SIGMAS
# deviations and keeps its int8 sim unless its side of the cut is uncertain; any other row has
# the worst-case bound and is re-read from SQLite when it may be in the n.
Pool = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@dataclass
class _Snapshot:
    base: _Base
    delta: _Delta
    n: int
    graphs: dict[int, Any]
    lists: dict[int, _Lists] = field(default_factory=dict)


@dataclass(frozen=True)
class Early:
    """One search begun (`VecIndex.begin`) on the index as it was then (`snap`): its graph
    walks, with their coarse lists, arrive in `walked` (`VecIndex.walk`, perhaps on another
    thread); `search(..., early=)` does the rest meanwhile and then finishes it. Whoever
    comes first runs the walks: a search that finds them not yet begun cancels `walked` and
    walks for itself, so it never waits on a walk that may not come."""
    asked: tuple[int, tuple[Partition, ...] | None]
    q: np.ndarray
    snap: _Snapshot
    pids: list[int] | None
    walked: Future[dict[int, Pool]] = field(default_factory=Future)



def _asked(n: int, partitions: Iterable[Partition] | None
           ) -> tuple[int, tuple[Partition, ...] | None]:
    return n, None if partitions is None else tuple(tuple(p) for p in partitions)  # type: ignore[misc]


class VecIndex:
    """One model's vectors: exact per small partition, HNSW for big ones, persisted."""

    def __init__(self, directory: Path, mid: int, dim: int, db_id: str) -> None:
        self.dir = Path(directory)
        self.model_id = mid
        self.dim = dim
        self.db_id = db_id
        self.seq = 0                       # last vector_changes.seq included
        self.parts: list[Partition] = []
        self.pid_of: dict[Partition, int] = {}
        self.live: dict[int, int] = {}     # pid -> live vectors
        self.base = _Base.empty(dim)
        self.delta = _Delta(np.zeros(1024, np.int64), np.zeros(1024, np.int32),
                            np.zeros((1024, dim), np.float32), np.zeros(1024, bool))
        self.graphs: dict[int, Any] = {}   # pid -> usearch Index (viewed from its file)
        self.graph_files: dict[int, dict[str, Any]] = {}
        self.lists: dict[int, _Lists] = {}  # pid -> its graph's coarse lists
        self.opened_from = "new"           # "file", "rebuilt" or "new": how open() got here
        self._lock = threading.Lock()
        self._graph_lock = threading.Lock()
        self._mm: Any = None

    # -- size --------------------------------------------------------------------------------

    def __len__(self) -> int:
        return sum(self.live.values())

    def count(self, partitions: Iterable[Partition] | None = None) -> int:
        if partitions is None:
            return len(self)
        return sum(self.live.get(self.pid_of.get(p, -1), 0) for p in partitions)

    @property
    def pending(self) -> int:
        """Changes not yet in the file (rows added plus rows removed)."""
        return int(self.delta.n + self.base.n_dead)

    # -- open / rebuild ----------------------------------------------------------------------

    @classmethod
    def open(cls, store: Store, directory: Path, mid: int, dim: int,
             graphs: bool = True) -> VecIndex:
        """The index in `directory`, brought up to date with the database; rebuilt (and
        persisted) when the file is missing, torn, corrupt or cannot be brought up to date.
        Without `graphs` a rebuild leaves big partitions' graphs to the next `persist`."""
        db_id = database_id(store)
        idx = cls(directory, mid, dim, db_id)
        try:
            idx._load()
            if idx.seq > change_seq(store):
                raise IndexFileError("the index is ahead of the database (a restored backup?)")
            behind = dbmod.scalar(store.conn, "SELECT count(*) FROM vector_changes WHERE seq > ?",
                                  (idx.seq,))
            if int(behind or 0) > max(REBUILD_BEHIND, len(idx) // 2):
                # Reading every row in order beats replaying this many changes into the
                # float32 delta (which would also hold them all in memory until a persist).
                raise IndexFileError("the index is far behind the database")
            idx.catch_up(store, strict=True)
            if len(idx) != vector_count(store, mid):
                raise IndexFileError("the index and memory_vectors disagree on the count")
            idx.opened_from = "file"
            return idx
        except IndexFileError:
            idx.close()
        idx = cls.rebuild(store, directory, mid, dim, graphs=graphs)
        idx.opened_from = "rebuilt"
        return idx

    @classmethod
    def rebuild(cls, store: Store, directory: Path, mid: int, dim: int,
                threads: int = 1, graphs: bool = True) -> VecIndex:
        """Read every vector of the model from the database and write a new index file.
        Without `graphs`, big partitions are searched exactly until `persist` builds them."""
        idx = cls(directory, mid, dim, database_id(store))
        with store.conn:  # one read transaction: the rows and the seq agree
            idx.seq = change_seq(store)
            n = vector_count(store, mid)
            rids = np.zeros(n, np.int64)
            pids = np.zeros(n, np.int32)
            scale = np.zeros(n, np.float32)
            resid = np.zeros(n, np.float32)
            codes = np.zeros((n, dim), np.int8)
            i = 0
            cur = store.conn.execute(
                "SELECT v.rid, m.scope, m.owner, v.vector FROM memory_vectors v "
                "JOIN memories m ON m.rid=v.rid WHERE v.model_id=? ORDER BY v.rid", (mid,))
            while True:
                rows = list(itertools.islice(cur, _CHUNK))
                if not rows:
                    break
                rows = rows[:n - i]
                k = len(rows)
                rids[i:i + k] = [r[0] for r in rows]
                pids[i:i + k] = [idx._pid((str(r[1]), str(r[2]))) for r in rows]
                vecs = np.frombuffer(b"".join(bytes(r[3]) for r in rows),  # type: ignore[arg-type]
                                     dtype="<f4").reshape(k, dim)
                codes[i:i + k], scale[i:i + k], resid[i:i + k] = quantise(vecs)
                i += k
        n = i
        order = np.lexsort((rids[:n], pids[:n]))
        idx._write(rids[order], pids[order], scale[order], resid[order],
                   lambda rows: codes[order[rows]], np.zeros(n, np.uint8), threads=threads,
                   graphs=graphs)
        idx._load()
        return idx

    def _pid(self, part: Partition) -> int:
        pid = self.pid_of.get(part)
        if pid is None:
            pid = self.pid_of[part] = len(self.parts)
            self.parts.append(part)
        return pid

    # -- changes -----------------------------------------------------------------------------

    def add(self, rids: Sequence[int], vecs: np.ndarray,
            partitions: Sequence[Partition]) -> None:
        """Add or replace vectors (unit float32), each with its memory's (scope, owner)."""
        vecs = np.asarray(vecs, dtype=np.float32).reshape(len(rids), self.dim)
        rid_arr = np.asarray(rids, dtype=np.int64)
        with self._lock:
            self._drop(rid_arr)
            d = self.delta
            need = d.n + len(rid_arr)
            if need > len(d.rids):  # grow by doubling: searches keep the arrays they took
                cap = max(need, 2 * len(d.rids))
                d = _Delta(np.resize(d.rids, cap), np.resize(d.pids, cap),
                           np.zeros((cap, self.dim), np.float32), np.zeros(cap, bool),
                           d.n, d.where)
                d.vecs[:self.delta.n] = self.delta.vecs[:self.delta.n]
                d.dead[:self.delta.n] = self.delta.dead[:self.delta.n]
            for j, (rid, part) in enumerate(zip(rid_arr.tolist(), partitions, strict=True)):
                pid = self._pid((str(part[0]), str(part[1])))
                d.rids[d.n], d.pids[d.n] = rid, pid
                d.vecs[d.n] = vecs[j]
                d.dead[d.n] = False
                d.where[rid] = d.n
                d.n += 1
                self.live[pid] = self.live.get(pid, 0) + 1
            self.delta = d

    def remove(self, rids: Iterable[int]) -> None:
        with self._lock:
            self._drop(np.asarray(list(rids), dtype=np.int64))

    def _drop(self, rids: np.ndarray) -> None:
        """Mark these rids dead wherever they live (lock held)."""
        if len(rids) == 0:
            return
        rows = self.base.rows_of(rids)
        hit = rows[rows >= 0]
        if len(hit):
            hit = np.unique(hit)
            dead = self.base.dead.copy()
            dead[hit] = True
            for pid, k in zip(*np.unique(self.base.pids[hit], return_counts=True), strict=True):
                self.live[int(pid)] -= int(k)
            self.base = _Base(**{**self.base.__dict__, "dead": dead,
                                 "n_dead": self.base.n_dead + len(hit)})
        d = self.delta
        for rid in rids.tolist():
            row = d.where.pop(rid, None)
            if row is not None:
                d.dead[row] = True
                self.live[int(d.pids[row])] -= 1

    def catch_up(self, store: Store, *, strict: bool = False) -> int:
        """Apply the database's changes since `seq`: returns how many memories changed. With
        `strict`, raise IndexFileError when the log no longer reaches back to `seq`."""
        top = change_seq(store)
        if top <= self.seq:
            return 0
        first = dbmod.scalar(store.conn, "SELECT min(seq) FROM vector_changes WHERE seq > ?",
                             (self.seq,))
        if strict and (first is None or int(first) > self.seq + 1):
            raise IndexFileError("the change log was pruned past the index file")
        changed = np.unique(np.fromiter(
            (int(r) for (r,) in store.conn.execute(  # type: ignore[misc]
                "SELECT rid FROM vector_changes WHERE seq > ? AND seq <= ?", (self.seq, top))),
            dtype=np.int64))
        for i in range(0, len(changed), 10_000):
            chunk = changed[i:i + 10_000]
            found = store.conn.execute(
                "SELECT v.rid, m.scope, m.owner, v.vector FROM memory_vectors v JOIN memories m "
                "ON m.rid=v.rid WHERE v.model_id=? AND v.rid IN (SELECT value FROM json_each(?))",
                (self.model_id, json.dumps(chunk.tolist()))).fetchall()
            present = {int(r[0]) for r in found}  # type: ignore[arg-type]
            self.remove([int(r) for r in chunk.tolist() if r not in present])
            if found:
                self.add([int(r[0]) for r in found],  # type: ignore[arg-type]
                         np.frombuffer(b"".join(bytes(r[3]) for r in found),  # type: ignore[arg-type]
                                       dtype="<f4").reshape(len(found), self.dim),
                         [(str(r[1]), str(r[2])) for r in found])
        self.seq = top
        return len(changed)

    # -- search ------------------------------------------------------------------------------

    def search(self, query: np.ndarray, n: int, partitions: Iterable[Partition] | None = None,
               allowed_rids: Sequence[int] | None = None, *, store: Store | None = None,
               early: Early | None = None) -> list[tuple[int, float]]:
        """The `n` nearest (rid, cosine distance), nearest first, among `partitions` (None:
        all) and `allowed_rids` (None: all). With `store`, the distances of rows outside the
        graphs are exact (float32 rows re-read) and small partitions give exactly brute
        force's answer; without it they are the int8 approximations. A row in a graph may keep
        its int8 distance, within its resid of exact (the module's "Exactness").
        `allowed_rids` alone (no partitions) scores just those: the rows of a graph by their
        int8 codes, the others exactly. `early`, this same search
        (same n and partitions, no `allowed_rids`) begun beforehand (`begin`, its walks
        perhaps still running on another thread), is finished instead of searching again:
        the answer is the one this call would give on the index as it was then."""
        partitions = None if partitions is None else list(partitions)
        if early is not None and allowed_rids is None and early.asked == _asked(n, partitions):
            if n <= 0:
                return []
            near = self._near(early.snap, early.pids, early.q, float(np.linalg.norm(early.q)),
                              n, early)
            return self._finish(*near, early.q, n, store)
        q, snap, pids = self._begin(query, partitions)
        if n <= 0 or (pids is not None and not pids):
            return []
        qnorm = float(np.linalg.norm(q))
        pool: list[Pool] = []
        exact: list[tuple[np.ndarray, np.ndarray]] = []             # (rids, exact sims)
        base, d = snap.base, snap.delta
        if allowed_rids is not None and pids is None and store is not None:
            # A given handful of memories (a recall's neighbours), each scored alone. A row in
            # a graph is scored from its int8 codes, within resid·|q| of exact: its partition
            # is searched approximately anyway, and its float32 row would be a random read of
            # SQLite. The others' float32 rows are read.
            want = np.unique(np.asarray(list(allowed_rids), dtype=np.int64))
            rows = base.rows_of(want)
            coded = rows >= 0
            coded[coded] = base.in_graph[rows[coded]] == 1
            got_r, got_v = fetch_vectors(store, self.model_id, want[~coded])
            by_codes = self._score_rows(base, rows[coded], q, qnorm)
            rids = np.concatenate([by_codes[0], got_r])
            sims = np.concatenate([by_codes[1], got_v @ q if len(got_r)
                                   else np.zeros(0, np.float32)])
            top = np.lexsort((rids, -sims))[:n]
            return [(int(rids[i]), float(1.0 - sims[i])) for i in top]
        if allowed_rids is not None:
            want = np.unique(np.asarray(list(allowed_rids), dtype=np.int64))
            rows = base.rows_of(want)
            rows = rows[rows >= 0]
            if pids is not None:
                rows = rows[np.isin(base.pids[rows], pids)]
            pool.append(self._score_rows(base, rows, q, qnorm))
            drows = np.asarray([r for r in (d.where.get(int(x)) for x in want.tolist())
                                if r is not None and r < snap.n], dtype=np.int64)
            if pids is not None and len(drows):
                drows = drows[np.isin(d.pids[drows], pids)]
        else:
            pool, exact = self._near(snap, pids, q, qnorm, n)
            drows = np.zeros(0, np.int64)
        if len(drows):
            exact.append(self._delta_rows(snap, drows, q))
        return self._finish(pool, exact, q, n, store)

    def begin(self, query: np.ndarray, n: int, partitions: Iterable[Partition] | None
              ) -> Early:
        """`search(query, n, partitions, store=..., early=)` begun on the index as it is now,
        its graph walks still to run (`walk`). The walks need no store, so they can run on
        another thread (the one that embedded the query) while the caller reads the store
        and then scores the rows outside the graphs: the two threads share the search."""
        parts = None if partitions is None else list(partitions)
        q, snap, pids = self._begin(query, parts)
        return Early(_asked(n, parts), q, snap, pids)

    def walk(self, early: Early) -> None:
        """Run `early`'s graph walks (each graph's candidates and its nearest coarse lists)
        into early.walked, unless its search came first (cancelled it: nothing to do); an
        error is kept there, and the search then walks for itself."""
        if not early.walked.set_running_or_notify_cancel():
            return
        try:
            q, snap, n = early.q, early.snap, early.asked[0]
            qnorm = float(np.linalg.norm(q))
            got = {} if n <= 0 else {
                pid: self._graph_pool(snap, pid, q, qnorm, n) for pid in snap.graphs
                if early.pids is None or pid in early.pids}
        except BaseException as e:
            early.walked.set_exception(e)
            if not isinstance(e, Exception):
                raise
        else:
            early.walked.set_result(got)

    def has_graph(self, partitions: Iterable[Partition] | None) -> bool:
        """Whether a search of these partitions (None: all) walks a graph."""
        with self._lock:
            graphs = self.graphs
            pids = (list(graphs) if partitions is None else
                    [self.pid_of.get(tuple(x)) for x in partitions])  # type: ignore[arg-type]
        return any(p in graphs for p in pids)

    def _begin(self, query: np.ndarray, partitions: Iterable[Partition] | None
               ) -> tuple[np.ndarray, _Snapshot, list[int] | None]:
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(self.dim)
        with self._lock:
            snap = _Snapshot(self.base, self.delta, self.delta.n, dict(self.graphs),
                             dict(self.lists))
            pids = (None if partitions is None else  # each once: no row is scored twice
                    list(dict.fromkeys(p for p in (self.pid_of.get(tuple(x))  # type: ignore[arg-type]
                                                   for x in partitions) if p is not None)))
        return q, snap, pids

    def _near(self, snap: _Snapshot, pids: list[int] | None, q: np.ndarray, qnorm: float,
              n: int, early: Early | None = None
              ) -> tuple[list[Pool], list[tuple[np.ndarray, np.ndarray]]]:
        """(pool, exact) of every row of the partitions (None: all): the graphs' candidates
        and their lists' rows (from `early`'s walks, else walked now) and the int8-scored rows
        outside any graph, with their bounds, and the delta's rows scored exactly. The rows
        outside the graphs are scored first, while `early`'s walks may still be running."""
        base, d = snap.base, snap.delta
        pool: list[Pool] = []
        walks: list[int] = []
        every = range(len(base.starts) - 1) if pids is None else pids
        for pid in every:
            lo, hi = base.span(pid)
            if hi <= lo:
                continue
            if pid not in snap.graphs:
                rows = np.arange(lo, hi)
                rows = rows[~base.dead[lo:hi]]
            else:
                walks.append(pid)
                off = (base.in_graph[lo:hi] == 0) & ~base.dead[lo:hi]
                rows = lo + np.flatnonzero(off)
            pool.append(self._score_rows(base, rows, q, qnorm))
        live = np.flatnonzero(~d.dead[:snap.n])
        drows = live if pids is None else live[np.isin(d.pids[live], pids)]
        exact = [self._delta_rows(snap, drows, q)] if len(drows) else []
        walked = self._walked(early) if early is not None and walks else {}
        for pid in walks:
            got = walked.get(pid)
            pool.append(got if got is not None else self._graph_pool(snap, pid, q, qnorm, n))
        return pool, exact

    @staticmethod
    def _walked(early: Early) -> dict[int, Pool]:
        if early.walked.cancel():  # not begun: this search walks for itself
            return {}
        try:
            return early.walked.result()  # begun walks always end, in an answer or an error
        except Exception:  # failed: the search walks for itself
            return {}

    def _graph_pool(self, snap: _Snapshot, pid: int, q: np.ndarray, qnorm: float, n: int
                    ) -> Pool:
        """A graph's candidates and the rows of its lists nearest q, in one pool."""
        rows = self._graph_candidates(snap.base, snap.graphs[pid], pid, q, n)
        lists = snap.lists.get(pid)
        if lists is not None:
            rows = np.concatenate([rows, self._list_rows(snap.base, lists, pid, q)])
        return self._score_rows(snap.base, np.unique(rows), q, qnorm)  # each row once, ascending

    @staticmethod
    def _delta_rows(snap: _Snapshot, drows: np.ndarray, q: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
        # Most of a large delta wanted (a bulk load not yet written to the file): one product
        # over the contiguous rows, then the wanted ones; picking the rows first would copy
        # them all at every search.
        d = snap.delta
        most = len(drows) * 4 > snap.n
        sims = (d.vecs[:snap.n] @ q)[drows] if most else d.vecs[drows] @ q
        return d.rids[drows].copy(), sims

    def _score_rows(self, base: _Base, rows: np.ndarray, q: np.ndarray, qnorm: float,
                    ) -> Pool:
        """The int8 scores of these rows (ascending) and their bounds (the module's
        "Exactness")."""
        if len(rows) == 0:
            z = np.zeros(0, np.float32)
            return np.zeros(0, np.int64), z, z, np.zeros(0, bool)
        if (np.diff(rows) == 1).all():  # a slice (ascending): one read
            codes = base.codes.span(int(rows[0]), int(rows[-1]) + 1)
        else:
            codes = base.codes.take(rows)
        approx = (codes.astype(np.float32) @ q) * base.scale[rows]
        graph = base.in_graph[rows] == 1
        bound = base.resid[rows] * qnorm
        bound[graph] *= min(1.0, SIGMAS / float(np.sqrt(self.dim)))
        return base.rids[rows], approx, bound + _EPS, graph

    def _graph_candidates(self, base: _Base, graph: Any, pid: int, q: np.ndarray,
                          n: int) -> np.ndarray:
        """Approximate nearest rows of a big partition from its graph (only rows still live
        and still holding the vector the graph has)."""
        want = n + 20  # the beam (ef) decides what is found; these are scored from the file
        size = len(graph)
        while True:
            k = min(want, size)
            # One graph search at a time: usearch keeps a fixed set of per-thread search
            # contexts, and sharing one between Python threads is not documented as safe.
            with self._graph_lock:
                m = graph.search(q / max(float(np.abs(q).max()), 1e-12), k, threads=1)
            keys = np.asarray(m.keys, dtype=np.int64)
            rows = base.rows_of(keys)
            ok = rows >= 0
            ok[ok] = (base.in_graph[rows[ok]] == 1) & (base.pids[rows[ok]] == pid)
            if ok.sum() >= 3 * len(keys) // 4 or k >= size:  # stale keys are few (GRAPH_STALE)
                break
            want *= 4
        return rows[ok]

    @staticmethod
    def _list_rows(base: _Base, lists: _Lists, pid: int, q: np.ndarray) -> np.ndarray:
        """The rows of the lists nearest q (those still live in the graph)."""
        rows = base.rows_of(lists.probe(q, LIST_PROBES))
        rows = rows[rows >= 0]
        out: np.ndarray = rows[(base.in_graph[rows] == 1) & (base.pids[rows] == pid)]
        return out

    def _finish(self, pool: list[Pool],
                exact: list[tuple[np.ndarray, np.ndarray]], q: np.ndarray, n: int,
                store: Store | None) -> list[tuple[int, float]]:
        rids = np.concatenate([p[0] for p in pool] + [e[0] for e in exact]
                              + [np.zeros(0, np.int64)])
        approx = np.concatenate([p[1] for p in pool] + [e[1] for e in exact]
                                + [np.zeros(0, np.float32)]).astype(np.float32)
        bound = np.concatenate([p[2] for p in pool] + [np.zeros(len(e[0]), np.float32)
                                                       for e in exact]
                               + [np.zeros(0, np.float32)])
        graph = np.concatenate([p[3] for p in pool] + [np.zeros(len(e[0]), bool) for e in exact]
                               + [np.zeros(0, bool)])
        if len(rids) == 0:
            return []
        # Whatever is certainly outside the n nearest goes: a row whose upper bound is below
        # the n-th best lower bound (the pools never hold a rid twice: a base row is in its
        # graph or outside it, and a row replaced in the delta is dead in the base).
        if len(rids) > n:
            floor = np.partition(approx - bound, len(rids) - n)[len(rids) - n]
            keep = approx + bound >= floor
            rids, approx, bound, graph = rids[keep], approx[keep], bound[keep], graph[keep]
        # A graph's row certainly in the n (its lower bound above the (n+1)-th best upper
        # bound) keeps its int8 score; every other row with a bound is re-read.
        reread = bound > 0
        if len(rids) > n:
            ceiling = np.partition(approx + bound, len(rids) - n - 1)[len(rids) - n - 1]
            reread &= ~(graph & (approx - bound > ceiling))
        sims = approx.copy()
        if store is not None and reread.any():
            need = rids[reread]
            got_r, got_v = fetch_vectors(store, self.model_id, need)
            fresh = dict(zip(got_r.tolist(), (got_v @ q).tolist(), strict=True))
            drop = np.zeros(len(rids), bool)
            for i in np.flatnonzero(reread).tolist():
                s = fresh.get(int(rids[i]))
                if s is None:
                    drop[i] = True  # deleted since: not a result
                else:
                    sims[i] = s
            rids, sims = rids[~drop], sims[~drop]
        top = np.lexsort((rids, -sims))[:n]
        return [(int(rids[i]), float(1.0 - sims[i])) for i in top]

    # -- persistence -------------------------------------------------------------------------

    def graphs_owed(self) -> bool:
        """True when a big partition has no graph, or too many of its rows outside it (rows
        outside a graph are scanned exactly): `persist(graphs=True)` would build."""
        if _usearch() is None:
            return False
        b, d = self.base, self.delta
        n = d.n  # rows added meanwhile are for the next look
        # The rows not written to the file yet count too (a partition that grew past BIG since
        # the last persist): none of them is in a graph.
        added = np.bincount(d.pids[:n][~d.dead[:n]], minlength=len(b.starts) - 1)
        sizes = np.zeros(len(added), np.int64)
        sizes[:len(b.starts) - 1] = np.diff(b.starts)
        for pid in np.flatnonzero(sizes + added > BIG).tolist():
            if pid in self.graph_files and "lists" not in self.graph_files[pid]:
                return True
            lo, hi = b.span(pid)
            missing = int(((b.in_graph[lo:hi] == 0) & ~b.dead[lo:hi]).sum()) + int(added[pid])
            if missing > max(GRAPH_STALE_MIN, GRAPH_STALE * (hi - lo + added[pid])):
                return True
        return False

    def persist(self, threads: int = 1, graphs: bool = True,
                cancel: Any = None) -> None:
        """Write base + delta (less what was removed) as a new file, atomically, and serve
        from it. Without `graphs` this is quick (the rows only): existing graphs are kept and
        rows outside them are scanned exactly. With `graphs`, build the graphs big partitions
        lack or have outgrown, in steps; once `cancel()` is true the steps stop and the
        partition is written without its new graph (a later persist builds it).
        Writer only: nothing changes the index while it runs. The int8 rows are gathered in
        chunks, never copied whole."""
        base, d = self.base, self.delta
        keep = np.flatnonzero(~base.dead)
        dl = np.flatnonzero(~d.dead[:d.n])
        dcodes, dscale, dresid = quantise(d.vecs[dl])
        rids = np.concatenate([base.rids[keep], d.rids[dl]])
        pids = np.concatenate([base.pids[keep], d.pids[dl]]).astype(np.int32)
        order = np.lexsort((rids, pids))
        nk = len(keep)

        def take(rows: np.ndarray) -> np.ndarray:
            idx = order[rows]
            out = np.empty((len(idx), self.dim), np.int8)
            old = idx < nk
            out[old] = base.codes.take(keep[idx[old]])
            out[~old] = dcodes[idx[~old] - nk]
            return out

        self._write(rids[order], pids[order],
                    np.concatenate([base.scale[keep], dscale])[order],
                    np.concatenate([base.resid[keep], dresid])[order], take,
                    np.concatenate([base.in_graph[keep], np.zeros(len(dl), np.uint8)])[order],
                    threads=threads, graphs=graphs, cancel=cancel)
        self._load()

    def _write(self, rids: np.ndarray, pids: np.ndarray, scale: np.ndarray, resid: np.ndarray,
               take: Any, in_graph: np.ndarray, threads: int = 1, graphs: bool = True,
               cancel: Any = None) -> None:
        """Write graphs for big partitions as needed, then the main file; rename = commit.
        `take(rows)` gives the int8 codes of these final rows."""
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        nparts = len(self.parts)
        counts = np.bincount(pids, minlength=nparts) if len(pids) else np.zeros(nparts, np.int64)
        starts = np.zeros(nparts + 1, np.int64)
        np.cumsum(counts, out=starts[1:])
        graph_files: dict[int, dict[str, Any]] = {}
        lists_of: dict[int, _Lists] = {}
        index_cls = _usearch()
        in_graph = in_graph.copy()
        for pid in np.flatnonzero(counts > BIG).tolist() if index_cls is not None else []:
            lo, hi = int(starts[pid]), int(starts[pid + 1])
            missing = int((in_graph[lo:hi] == 0).sum())
            old = self.graph_files.get(pid)
            fresh = missing <= max(GRAPH_STALE_MIN, GRAPH_STALE * (hi - lo))
            if old is not None and (fresh or not graphs):
                graph_files[pid] = old  # rows outside the graph are searched exactly
                if pid in self.lists:
                    lists_of[pid] = self.lists[pid]
                elif graphs:  # a graph made before lists were: file its rows now
                    rows = lo + np.flatnonzero(in_graph[lo:hi] == 1)
                    made = _make_lists(take, rows, rids[rows], cancel)
                    if made is not None:
                        lists_of[pid] = made
                        graph_files[pid] = {**old, "lists": self._save_lists(pid, made)}
                continue
            if not graphs:  # searched exactly until a persist builds it
                in_graph[lo:hi] = 0
                continue
            todo = np.arange(lo, hi)
            if old is not None:  # extend the old graph: a copy in memory, not a new build
                graph = index_cls.restore(str(self.dir / old["file"]), view=False)
                stale = np.setdiff1d(np.asarray(graph.keys, dtype=np.int64),
                                     rids[lo:hi][in_graph[lo:hi] == 1])
                if len(stale):
                    graph.remove(stale)
                todo = todo[in_graph[lo:hi] == 0]
            else:
                graph = index_cls(ndim=self.dim, metric="cos", dtype="i8",
                                  connectivity=CONNECTIVITY, expansion_add=EXPANSION_ADD,
                                  expansion_search=EXPANSION_SEARCH)
            step = 65_536 if cancel is None else 4_096
            cancelled = False
            for s in range(0, len(todo), step):
                if cancel is not None and cancel():
                    cancelled = True
                    break
                rows = todo[s:s + step]
                # codes / 127: usearch's int8 is round(127 x), so the graph holds exactly these
                # codes (cosine ignores the row's scale); unit vectors as given would use a
                # fraction of the int8 range (components are mostly under 0.2).
                graph.add(rids[rows], take(rows).astype(np.float32) / 127.0, threads=threads)
            if cancelled:  # keep what the partition had: the old graph, or none
                del graph
                if old is not None:
                    graph_files[pid] = old
                    if pid in self.lists:
                        lists_of[pid] = self.lists[pid]
                else:
                    in_graph[lo:hi] = 0
                continue
            name = f"graph-{pid}-{os.urandom(4).hex()}.usearch"
            tmp = self.dir / (name + ".tmp")
            graph.save(str(tmp))
            del graph
            os.chmod(tmp, 0o600)  # as every file here: the owner's alone, whatever the umask
            _fsync(tmp)
            os.replace(tmp, self.dir / name)
            graph_files[pid] = {"file": name, **_file_crc(self.dir / name)}
            in_graph[lo:hi] = 1
            # Lists cut short by a stop are made at the next persist (graphs_owed says so).
            made = _make_lists(take, np.arange(lo, hi), rids[lo:hi], cancel,
                               self.lists.get(pid) if old is not None else None)
            if made is not None:
                lists_of[pid] = made
                graph_files[pid]["lists"] = self._save_lists(pid, made)
        if lists_of:  # a graph's rows in list order, so that a list is one read
            perm = np.arange(len(rids))
            for pid, lists in lists_of.items():
                lo, hi = int(starts[pid]), int(starts[pid + 1])
                perm[lo:hi] = lo + _list_order(rids[lo:hi], lists)
            rids, pids, scale, resid, in_graph = (
                rids[perm], pids[perm], scale[perm], resid[perm], in_graph[perm])
            take = _permuted(take, perm)
        by_rid = np.argsort(rids, kind="stable").astype(np.int32)
        arrays = {"rids": rids.astype("<i8"), "pids": pids.astype("<i4"),
                  "scale": scale.astype("<f4"), "resid": resid.astype("<f4"),
                  "in_graph": in_graph.astype("u1"), "rid_sorted": rids[by_rid].astype("<i8"),
                  "by_rid": by_rid.astype("<i4"),
                  "starts": starts.astype("<i8")}
        codes_bytes = len(rids) * self.dim
        header: dict[str, Any] = {
            "format": FORMAT, "model_id": self.model_id, "dim": self.dim, "db": self.db_id,
            "seq": self.seq, "count": len(rids), "parts": self.parts,
            "graphs": {str(k): v for k, v in graph_files.items()}, "sections": {}}
        offset = 0
        for name, arr in arrays.items():
            header["sections"][name] = [offset, arr.nbytes, zlib.crc32(arr.data.cast("B"))]
            offset += _pad(arr.nbytes)
        crc = 0
        for s in range(0, len(rids), 65_536):
            chunk = take(np.arange(s, min(len(rids), s + 65_536)))
            crc = zlib.crc32(chunk.data.cast("B"), crc)
        header["sections"]["codes"] = [offset, codes_bytes, crc]
        head = json.dumps(header, separators=(",", ":")).encode()
        start = _pad(len(MAGIC) + 4 + len(head))
        tmp = self.dir / f"{MAIN}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            os.chmod(tmp, 0o600)
            f.write(MAGIC + struct.pack("<I", len(head)) + head)
            f.write(b"\0" * (start - f.tell()))
            for arr in arrays.values():
                f.write(arr.data.cast("B"))
                f.write(b"\0" * (_pad(arr.nbytes) - arr.nbytes))
            for s in range(0, len(rids), 65_536):
                f.write(take(np.arange(s, min(len(rids), s + 65_536))).data.cast("B"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.dir / MAIN)
        _fsync_dir(self.dir)
        self.graph_files = graph_files
        self._sweep()

    def _read_lists(self, entry: dict[str, Any] | None) -> _Lists | None:
        if not entry:
            return None
        path = self.dir / entry["file"]
        if _file_crc(path) != {k: entry[k] for k in ("bytes", "crc")}:
            return None
        try:
            return _Lists.load(path, self.dim)
        except ValueError:
            return None

    def _save_lists(self, pid: int, lists: _Lists) -> dict[str, Any]:
        name = f"graph-{pid}-{os.urandom(4).hex()}.lists"
        tmp = self.dir / (name + ".tmp")
        lists.save(tmp)
        os.replace(tmp, self.dir / name)
        return {"file": name, **_file_crc(self.dir / name)}

    def _sweep(self) -> None:
        """Delete files the main file does not name (old graphs and lists, torn temporaries)."""
        named = {MAIN, *(g["file"] for g in self.graph_files.values()),
                 *(g["lists"]["file"] for g in self.graph_files.values() if "lists" in g)}
        for p in self.dir.iterdir():
            if p.name not in named and (p.name.startswith(("graph-", MAIN))):
                try:
                    p.unlink()
                except OSError:
                    pass

    def _load(self) -> None:
        """Map the main file and view its graphs; IndexFileError when anything is off."""
        try:
            self._map()
        except IndexFileError:
            raise
        except (KeyError, ValueError, TypeError, IndexError, struct.error, RuntimeError) as e:
            raise IndexFileError(f"unreadable index file: {e}") from e

    def _check(self, f: Any) -> tuple[dict[str, Any], int, Any]:
        """Header, data start and a map of a main file whose every section checks out."""
        import mmap

        size = os.fstat(f.fileno()).st_size
        pre = f.read(len(MAGIC) + 4)
        if len(pre) < len(MAGIC) + 4 or pre[:len(MAGIC)] != MAGIC:
            raise IndexFileError("not an index file (or another format)")
        (hlen,) = struct.unpack("<I", pre[len(MAGIC):])
        try:
            header = json.loads(f.read(hlen))
        except ValueError as e:
            raise IndexFileError("torn header") from e
        if (header.get("format") != FORMAT or header.get("model_id") != self.model_id
                or header.get("dim") != self.dim or header.get("db") != self.db_id):
            raise IndexFileError("made for another model, dimension or database")
        start = _pad(len(MAGIC) + 4 + hlen)
        for off, nbytes, crc in header["sections"].values():
            if start + off + nbytes > size:
                raise IndexFileError("truncated")
            if _crc_range(f.fileno(), start + off, nbytes) != crc:
                raise IndexFileError("checksum mismatch")
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else None
        if mm is not None and hasattr(mmap, "MADV_RANDOM"):
            mm.madvise(mmap.MADV_RANDOM)  # a search reads a few rows of the small arrays
        return header, start, mm

    def _map(self) -> None:
        path = self.dir / MAIN
        try:
            f = open(path, "rb")  # noqa: SIM115 (the base keeps it open for its reads)
        except FileNotFoundError as e:
            raise IndexFileError("no index file") from e
        try:
            header, start, mm = self._check(f)
        except BaseException:
            f.close()
            raise
        secs = header["sections"]
        n = int(header["count"])

        def arr(name: str, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
            off, nbytes, _ = secs[name]
            if nbytes == 0:
                return np.zeros(shape, dtype)
            return np.frombuffer(mm, dtype=dtype, count=int(np.prod(shape)),  # type: ignore[arg-type]
                                 offset=start + off).reshape(shape)

        parts = [(str(s), str(o)) for s, o in header["parts"]]
        base = _Base(arr("rids", "<i8", (n,)), arr("pids", "<i4", (n,)),
                     arr("scale", "<f4", (n,)), arr("resid", "<f4", (n,)),
                     _Codes(f, start + secs["codes"][0], n, self.dim),
                     arr("in_graph", "u1", (n,)),
                     arr("rid_sorted", "<i8", (n,)), arr("by_rid", "<i4", (n,)),
                     arr("starts", "<i8", (len(parts) + 1,)),
                     np.zeros(n, bool))
        graphs: dict[int, Any] = {}
        lists: dict[int, _Lists] = {}
        graph_files = {int(k): v for k, v in header.get("graphs", {}).items()}
        if graph_files:
            index_cls = _usearch()
            for pid, g in graph_files.items():
                gpath = self.dir / g["file"]
                if index_cls is None or _file_crc(gpath) != {k: g[k] for k in ("bytes", "crc")}:
                    raise IndexFileError(f"graph {g['file']} is missing or corrupt")
                graph = index_cls.restore(str(gpath), view=True)
                graph.expansion_search = _expansion(len(graph))  # not kept in the file
                graphs[pid] = graph
                # Lists that do not check out are left out, not a reason to rebuild: the
                # graph is searched alone and `graphs_owed` asks a persist for new ones (as
                # for a graph made before lists were).
                got = self._read_lists(g.get("lists"))
                if got is not None:
                    lists[pid] = got
                else:
                    g.pop("lists", None)
        counts = np.diff(base.starts)
        with self._lock:
            self.seq = int(header["seq"])
            self.parts = parts
            self.pid_of = {p: i for i, p in enumerate(parts)}
            self.live = {i: int(c) for i, c in enumerate(counts.tolist()) if c}
            self.base = base
            self.delta = _Delta(np.zeros(1024, np.int64), np.zeros(1024, np.int32),
                                np.zeros((1024, self.dim), np.float32), np.zeros(1024, bool))
            self.graphs = graphs
            self.graph_files = graph_files
            self.lists = lists
            self._mm = mm  # old maps are left to the garbage collector: searches may hold them

    def close(self) -> None:
        with self._lock:
            self.graphs = {}
            self.lists = {}
            self.base = _Base.empty(self.dim)
            self._mm = None


def _expansion(size: int) -> int:
    return min(EXPANSION_MAX, max(EXPANSION_SEARCH, size // 900))


def _pad(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def _crc_range(fd: int, offset: int, nbytes: int) -> int:
    """CRC-32 of a byte range, read with pread (the page cache, not this process's RSS)."""
    crc = 0
    buf = bytearray(4 << 20)
    view = memoryview(buf)
    while nbytes > 0:
        k = os.preadv(fd, [view[:min(nbytes, len(buf))]], offset)
        if k <= 0:
            raise IndexFileError("truncated")
        crc = zlib.crc32(view[:k], crc)
        offset += k
        nbytes -= k
    return crc


def _file_crc(path: Path) -> dict[str, int]:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return {"bytes": -1, "crc": -1}
    try:
        size = os.fstat(fd).st_size
        return {"bytes": size, "crc": _crc_range(fd, 0, size)}
    finally:
        os.close(fd)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

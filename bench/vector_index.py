"""Ways of holding the vectors, compared: build, ready-after-restart, RSS, disk, scoped and
unscoped latency and recall@10 against exact search, for each option below.

Data. Real all-MiniLM-L6-v2 vectors of the LoCoMo turns and questions (../shared/bench, embedded
once with the installed GGUF model through llama.cpp, cached in build/vecbench/), and from them
synthetic memory vectors: a unit mix of one turn and a turn near it in the conversation (weight
0.5-1.0) plus Gaussian noise (sigma 0.02 per dimension, as bench/embed_recall_speed.py), so that
neighbours form a continuum rather than exact copies. In the scoped layouts an owner's memories
come from one stretch of conversation (an agent has topics). Queries are the embedded LoCoMo
questions, never in the data. Three stores, built through the store API (memories with their op
log and FTS rows, vectors through store.vectors.put):

  s300k  1,000 agents x 300 memories, each agent's in its own `agent` scope; a query is one agent's
  s1m    1,000 agents x 1,000
  u1m    1,000,000 memories in one user's `user` scope; a query sees all of them

Options (each measured in a fresh process, as after a restart):

  np-part-f32   float32 rows grouped by partition in memory, loaded from SQLite at start; exact
  vecindex      store/vecindex.py: persisted int8 rows grouped by partition, exact re-scoring from
                SQLite; a usearch HNSW graph for partitions over vecindex.BIG
  usearch-i8/f16  one usearch HNSW over everything, saved and viewed (memory-mapped); the top 3n
                re-scored exactly; no scope filter (the Python API has no predicate), u1m only
  faiss-sq8     faiss IndexHNSWSQ (8-bit) with an ID map, written and read back; IDSelector for
                scopes
  hnswlib       hnswlib (float32 only, no wheel: built from source), s300k only
  vec0          sqlite-vec vec0 with `owner` as partition key, in its own SQLite file, s300k only

Latency is per query on one thread (BLAS and OpenMP pinned to 1), median and p95 of wall time,
with the median thread-CPU time beside it (a shared machine steals wall time) and the load
average at the end. "vector part" is store.search.vector_candidates for the query's context
(search plus SQL filter); for vecindex also the whole `store.search.recall` (query embedding by
llama.cpp, BM25, neighbours) with vector_candidates made partition-aware as a lead would wire it.

Usage: python bench/vector_index.py [--layouts s300k,s1m,u1m] [--options ...] [--queries 300]
Needs usearch (and faiss-cpu, hnswlib for those rows) importable: PYTHONPATH to a --target dir.
Prints a table and writes build/vecbench/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = ROOT / "build" / "vecbench"
LOCOMO = ROOT.parent.parent / "shared" / "bench" / "locomo-dev.json"
if not LOCOMO.exists():
    LOCOMO = Path("/work/shared/bench/locomo-dev.json")
MODEL = Path.home() / ".local" / "share" / "db0" / "models" / "all-MiniLM-L6-v2.gguf"
USER = "bench"
DIM = 384
LAYOUTS = {"s300k": (1000, 300, "agent"), "s1m": (1000, 1000, "agent"),
           "u1m": (1, 1_000_000, "user"),
           "s3k": (10, 300, "agent"), "u30k": (1, 30_000, "user")}  # smoke tests of this file
OPTIONS = ("np-part-f32", "vecindex", "usearch-i8", "usearch-f16", "faiss-sq8",
           "hnswlib", "vec0")
ONLY = {"usearch-i8": {"u1m", "u30k"}, "usearch-f16": {"u1m", "u30k"},
        "hnswlib": {"s300k", "s3k"}, "vec0": {"s300k", "s3k"}}


# -- data ----------------------------------------------------------------------------------------

def locomo_texts() -> tuple[list[str], list[str]]:
    data = json.loads(LOCOMO.read_text())
    turns: list[str] = []
    questions: list[str] = []
    for item in data:
        conv = item["conversation"]
        n = 1
        while f"session_{n}" in conv:
            for t in conv[f"session_{n}"]:
                c = f"{t['speaker']}: {t['text']}"
                if t.get("blip_caption"):
                    c += f" [image: {t['blip_caption']}]"
                turns.append(c)
            n += 1
        questions += [q["question"] for q in item["qa"]]
    return turns, questions


def base_vectors() -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """MiniLM vectors of the LoCoMo turns and questions (embedded once, then cached)."""
    turns, questions = locomo_texts()
    cache = WORK / "locomo-minilm.npz"
    if not cache.exists():
        sys.path.insert(0, str(ROOT / "build" / "pp"))
        from db0.daemon.embedder import Embedder

        emb = Embedder(MODEL, 2)
        t = np.array([emb.embed([x])[0] for x in turns], dtype=np.float32)
        q = np.array([emb.embed([x])[0] for x in questions], dtype=np.float32)
        WORK.mkdir(parents=True, exist_ok=True)
        np.savez(cache, turns=t, questions=q)
    z = np.load(cache)
    return z["turns"], z["questions"], turns, questions


def synth(turns: np.ndarray, owners: int, per: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(vectors, turn index each came from): see the module docstring."""
    rng = np.random.default_rng(seed)
    n = owners * per
    out = np.empty((n, turns.shape[1]), np.float32)
    src = np.empty(n, np.int64)
    span = len(turns) - 61
    for s in range(0, n, 100_000):
        m = min(100_000, n - s)
        owner = np.arange(s, s + m) // per
        if owners > 1:  # an owner's memories come from one stretch of conversation
            i = (owner * 37) % span + rng.integers(0, 60, m)
        else:
            i = rng.integers(0, len(turns), m)
        j = np.clip(i + rng.integers(-30, 31, m), 0, len(turns) - 1)
        w = rng.uniform(0.5, 1.0, (m, 1)).astype(np.float32)
        v = w * turns[i] + (1 - w) * turns[j] + rng.normal(0, 0.02, (m, DIM)).astype(np.float32)
        out[s:s + m] = v / np.linalg.norm(v, axis=1, keepdims=True)
        src[s:s + m] = i
    return out, src


def store_path(layout: str) -> Path:
    return WORK / f"{layout}.sqlite3"


def remember_many(store: Any, ctx: Any, raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The store's batch write, before and after store/write.py took it over."""
    try:
        from db0.store import write  # type: ignore[attr-defined]
    except ImportError:
        from db0.store import memories

        return list(memories.remember_many(store, ctx, [memories.validate(i) for i in raw]))
    return list(write.remember_many(store, ctx, [write.prepare(i) for i in raw]))


def build_store(layout: str) -> dict[str, Any]:
    """The layout's SQLite store (memories, op log, FTS, vectors), once."""
    import fcntl

    path = store_path(layout)
    WORK.mkdir(parents=True, exist_ok=True)
    lock = open(WORK / f"{layout}.lock", "w")  # noqa: SIM115 (held until the process ends)
    fcntl.flock(lock, fcntl.LOCK_EX)  # another run building the same store: wait for it
    if path.exists():
        return json.loads((WORK / f"{layout}.store.json").read_text())
    from db0.store import vectors
    from db0.store.context import Context
    from db0.store.core import Store

    owners, per, scope = LAYOUTS[layout]
    tvec, _, turns, _ = base_vectors()
    vecs, src = synth(tvec, owners, per, seed=owners * per)
    tmp = path.with_suffix(".tmp")
    for p in tmp.parent.glob(tmp.name + "*"):
        p.unlink()
    store = Store.open(tmp)
    with store.transaction():
        mid = vectors.model_id(store, "all-MiniLM-L6-v2", "bench", DIM)
    t = time.perf_counter()
    for o in range(owners):
        ctx = Context(USER, agent=f"a{o}")
        for s in range(o * per, (o + 1) * per, 5000):
            e = min((o + 1) * per, s + 5000)
            raw = [{"content": f"{turns[src[i]]} (#{i})", "scope": scope} for i in range(s, e)]
            with store.transaction():
                res = remember_many(store, ctx, raw)
                rows = store.conn.execute(
                    "SELECT m.rid, m.content_hash FROM memories m WHERE m.id IN "
                    "(SELECT value FROM json_each(?))", (json.dumps([r["id"] for r in res]),)
                ).fetchall()
                by = {int(r): str(h) for r, h in rows}
                rids = sorted(by)
                vectors.put(store, mid, [(r, by[r], vectors.to_blob(vecs[s + k]))
                                         for k, r in enumerate(rids)])
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    tmp.rename(path)
    for suffix in ("-wal", "-shm"):
        Path(str(tmp) + suffix).unlink(missing_ok=True)
    info = {"layout": layout, "memories": owners * per, "model_id": mid,
            "store_build_s": round(time.perf_counter() - t, 1)}
    (WORK / f"{layout}.store.json").write_text(json.dumps(info))
    return info


def queries(layout: str, nq: int) -> list[tuple[int, str]]:
    """(question number, agent) per query."""
    owners = LAYOUTS[layout][0]
    return [(i % 999, f"a{(i * 7919) % owners}") for i in range(nq)]


def truth(layout: str, nq: int, k: int = 10) -> np.ndarray:
    """Exact top-k rids per query over what its context sees (float32, brute force)."""
    cache = WORK / f"{layout}.truth{nq}.npy"
    if cache.exists():
        return np.asarray(np.load(cache))
    from db0.store.core import Store

    _, qv, _, _ = base_vectors()
    store = Store.open(store_path(layout))
    rows = store.conn.execute("SELECT v.rid, m.owner, m.scope, v.vector FROM memory_vectors v "
                              "JOIN memories m ON m.rid=v.rid ORDER BY v.rid").fetchall()
    store.close()
    rids = np.array([r[0] for r in rows], dtype=np.int64)
    owner = np.array([r[1] if r[2] == "agent" else "" for r in rows])
    mat = np.frombuffer(b"".join(bytes(r[3]) for r in rows), dtype="<f4").reshape(len(rows), DIM)
    del rows
    out = np.zeros((nq, k), np.int64)
    for i, (qi, agent) in enumerate(queries(layout, nq)):
        sel = slice(None) if LAYOUTS[layout][2] == "user" else np.flatnonzero(owner == agent)
        sims = mat[sel] @ qv[qi]
        ids = rids[sel]
        top = np.lexsort((ids, -sims))[:k]
        out[i] = ids[top]
    np.save(cache, out)
    return out


# -- measuring -----------------------------------------------------------------------------------

def proc_mem() -> dict[str, float]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key = line.split(":")[0]
        if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            out[key] = round(int(line.split()[1]) / 1024, 1)
    return out


def summary(wall: list[float], cpu: list[float]) -> dict[str, float]:
    w = sorted(wall)
    return {"median_ms": round(statistics.median(w), 3),
            "p95_ms": round(w[int(0.95 * (len(w) - 1))], 3),
            "cpu_median_ms": round(statistics.median(cpu), 3), "n": len(w)}


def du(path: Path) -> float:
    if path.is_file():
        return round(path.stat().st_size / 2**20, 1)
    return round(sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20, 1)


def index_dir(layout: str, option: str) -> Path:
    return WORK / "idx" / f"{layout}-{option}"


# Each option: build(store, mid, dir) -> persisted, load(store, mid, dir) -> searcher where
# searcher(q, n, agent) -> list of rids.

def ctx_for(agent: str) -> Any:
    from db0.store.context import Context

    return Context(USER, agent=agent)


def opt_np_part(layout: str, store: Any, mid: int, build: bool) -> Any:
    from db0.store import search

    if build:
        return None
    rows = store.conn.execute("SELECT v.rid, m.scope, m.owner, v.vector FROM memory_vectors v "
                              "JOIN memories m ON m.rid=v.rid WHERE v.model_id=?",
                              (mid,)).fetchall()
    keys = [(r[1], r[2]) for r in rows]
    names = sorted(set(keys))
    pid = {k: i for i, k in enumerate(names)}
    pids = np.array([pid[k] for k in keys], dtype=np.int32)
    order = np.argsort(pids, kind="stable")
    rids = np.array([r[0] for r in rows], dtype=np.int64)[order]
    mat = np.frombuffer(b"".join(bytes(r[3]) for r in rows), dtype="<f4").reshape(
        len(rows), DIM)[order]
    del rows, keys
    starts = np.searchsorted(pids[order], np.arange(len(names) + 1))

    def run(q: np.ndarray, n: int, agent: str) -> list[int]:
        from db0.store.context import visible_partitions

        ctx = ctx_for(agent)
        sl = [(int(starts[pid[p]]), int(starts[pid[p] + 1]))
              for p in visible_partitions(ctx) if p in pid]
        ids = np.concatenate([rids[a:b] for a, b in sl])
        sims = np.concatenate([mat[a:b] @ q for a, b in sl])
        top = np.argpartition(-sims, min(n, len(sims) - 1))[:n]
        top = top[np.argsort(-sims[top])]
        hits = ids[top].tolist()
        where, args = search.Filters().sql(ctx)
        ok = search._passing(store, where, args, hits)
        return [r for r in hits if r in ok]
    return run


def vecindex_candidates(store: Any, ctx: Any, qv: Any, filters: Any, limit: int) -> Any:
    """store.search.vector_candidates as the lead would wire store/vecindex.py: search the
    context's partitions (over-fetching a little for the SQL filters), keep what passes."""
    from db0.store import search
    from db0.store.context import visible_partitions

    idx = qv.index
    parts = visible_partitions(ctx, filters.scopes)
    where, args = filters.sql(ctx)
    over = idx.search(qv.vector, limit + 10, parts, store=store)
    ok = search._passing(store, where, args, [r for r, _ in over])
    kept = [(r, d) for r, d in over if r in ok]
    if len(kept) >= limit or len(over) >= idx.count(parts):
        return kept[:limit]
    allowed = [int(r) for (r,) in store.conn.execute(
        f"SELECT m.rid FROM memories m WHERE {where}", args)]
    return idx.search(qv.vector, limit, parts, allowed, store=store)


def vecindex_distances(store: Any, qv: Any, rids: list[int]) -> dict[int, float]:
    """store.search.vector_distances for a VecIndex: exact, from the given rids' rows."""
    if not rids:
        return {}
    return dict(qv.index.search(qv.vector, len(rids), allowed_rids=rids, store=store))


def opt_vecindex(layout: str, store: Any, mid: int, build: bool) -> Any:
    from db0.store import search, vecindex

    d = index_dir(layout, "vecindex")
    if build:
        shutil.rmtree(d, ignore_errors=True)
        vecindex.VecIndex.rebuild(store, d, mid, DIM, threads=2)
        return None
    idx = vecindex.VecIndex.open(store, d, mid, DIM)
    assert idx.opened_from == "file", idx.opened_from

    def run(q: np.ndarray, n: int, agent: str) -> list[int]:
        qv = search.QueryVector(mid, q, idx)
        return [r for r, _ in vecindex_candidates(store, ctx_for(agent), qv,
                                                  search.Filters(), n)]
    run.index = idx  # type: ignore[attr-defined]
    return run


def _exact_rescore(store: Any, mid: int, q: np.ndarray, cand: list[int], n: int) -> list[int]:
    from db0.store import vecindex

    r, v = vecindex.fetch_vectors(store, mid, np.asarray(cand, dtype=np.int64))
    if len(r) == 0:
        return []
    return r[np.lexsort((r, -(v @ q)))[:n]].tolist()


def opt_usearch(dtype: str) -> Any:
    def opt(layout: str, store: Any, mid: int, build: bool) -> Any:
        from usearch.index import Index

        path = index_dir(layout, f"usearch-{dtype}") / "index.usearch"
        if build:
            shutil.rmtree(path.parent, ignore_errors=True)
            path.parent.mkdir(parents=True)
            ix = Index(ndim=DIM, metric="cos", dtype=dtype, connectivity=16,
                       expansion_add=128, expansion_search=96)
            cur = store.conn.execute("SELECT rid, vector FROM memory_vectors WHERE model_id=?",
                                     (mid,))
            while True:
                rows = [cur.fetchone() for _ in range(65_536)]
                rows = [r for r in rows if r is not None]
                if not rows:
                    break
                ix.add(np.array([r[0] for r in rows], dtype=np.uint64),
                       np.frombuffer(b"".join(bytes(r[1]) for r in rows), dtype="<f4")
                       .reshape(len(rows), DIM), threads=2)
            ix.save(str(path))
            return None
        ix = Index.restore(str(path), view=True)
        ix.expansion_search = 96

        def run(q: np.ndarray, n: int, agent: str) -> list[int]:
            m = ix.search(q, 3 * n, threads=1)
            return _exact_rescore(store, mid, q, np.asarray(m.keys).tolist(), n)
        return run
    return opt


def opt_faiss(layout: str, store: Any, mid: int, build: bool) -> Any:
    import faiss

    faiss.omp_set_num_threads(1 if not build else 2)
    path = index_dir(layout, "faiss-sq8") / "index.faiss"
    if build:
        shutil.rmtree(path.parent, ignore_errors=True)
        path.parent.mkdir(parents=True)
        inner = faiss.IndexHNSWSQ(DIM, faiss.ScalarQuantizer.QT_8bit, 16,
                                  faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = 128
        rows = store.conn.execute("SELECT rid, vector FROM memory_vectors WHERE model_id=?",
                                  (mid,)).fetchall()
        rids = np.array([r[0] for r in rows], dtype=np.int64)
        mat = np.frombuffer(b"".join(bytes(r[1]) for r in rows), dtype="<f4").reshape(-1, DIM)
        del rows
        inner.train(mat[:: max(1, len(mat) // 100_000)])
        ix = faiss.IndexIDMap(inner)
        ix.add_with_ids(mat, rids)
        faiss.write_index(ix, str(path))
        return None
    try:
        ix = faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
    except RuntimeError:  # this index type cannot be memory-mapped: read it whole
        ix = faiss.read_index(str(path))
    owner_rids: dict[str, np.ndarray] = {}
    if LAYOUTS[layout][2] == "agent":
        by: dict[str, list[int]] = {}
        for r, o in store.conn.execute("SELECT rid, owner FROM memories"):
            by.setdefault(o, []).append(r)
        owner_rids = {o: np.array(v, dtype=np.int64) for o, v in by.items()}

    def run(q: np.ndarray, n: int, agent: str) -> list[int]:
        params = faiss.SearchParametersHNSW()
        params.efSearch = 96
        if owner_rids:
            sel = faiss.IDSelectorBatch(owner_rids[agent])
            params.sel = sel
        _, ids = ix.search(q[None, :], 3 * n, params=params)
        return _exact_rescore(store, mid, q, [int(i) for i in ids[0] if i >= 0], n)
    return run


def opt_hnswlib(layout: str, store: Any, mid: int, build: bool) -> Any:
    import hnswlib

    path = index_dir(layout, "hnswlib") / "index.bin"
    rows = store.conn.execute("SELECT rid, owner FROM memories").fetchall()
    n_all = len(rows)
    if build:
        shutil.rmtree(path.parent, ignore_errors=True)
        path.parent.mkdir(parents=True)
        ix = hnswlib.Index(space="cosine", dim=DIM)
        ix.init_index(max_elements=n_all, ef_construction=128, M=16)
        ix.set_num_threads(2)
        vrows = store.conn.execute("SELECT rid, vector FROM memory_vectors WHERE model_id=?",
                                   (mid,)).fetchall()
        ix.add_items(np.frombuffer(b"".join(bytes(r[1]) for r in vrows), dtype="<f4")
                     .reshape(-1, DIM), np.array([r[0] for r in vrows]))
        ix.save_index(str(path))
        return None
    ix = hnswlib.Index(space="cosine", dim=DIM)
    ix.load_index(str(path), max_elements=n_all)
    ix.set_num_threads(1)
    ix.set_ef(96)
    by: dict[str, set[int]] = {}
    for r, o in rows:
        by.setdefault(o, set()).add(r)

    def run(q: np.ndarray, n: int, agent: str) -> list[int]:
        allowed = by[agent]
        labels, _ = ix.knn_query(q, k=min(3 * n, len(allowed)),
                                 filter=lambda label: label in allowed)
        return _exact_rescore(store, mid, q, labels[0].tolist(), n)
    return run


def opt_vec0(layout: str, store: Any, mid: int, build: bool) -> Any:
    from db0.store import db as dbmod

    path = index_dir(layout, "vec0") / "vec0.sqlite3"
    if build:
        shutil.rmtree(path.parent, ignore_errors=True)
        path.parent.mkdir(parents=True)
        conn = dbmod.connect(path, migrate=False)
        conn.execute("CREATE VIRTUAL TABLE v USING vec0(owner text partition key, "
                     f"embedding float[{DIM}] distance_metric=cosine)")
        rows = store.conn.execute("SELECT v.rid, m.owner, v.vector FROM memory_vectors v "
                                  "JOIN memories m ON m.rid=v.rid WHERE v.model_id=?",
                                  (mid,)).fetchall()
        with conn:
            conn.executemany("INSERT INTO v(rowid, owner, embedding) VALUES (?, ?, ?)", rows)
        conn.close()
        return None
    conn = dbmod.connect(path, migrate=False)

    def run(q: np.ndarray, n: int, agent: str) -> list[int]:
        return [int(r) for (r,) in conn.execute(
            "SELECT rowid FROM v WHERE embedding MATCH ? AND k = ? AND owner = ?",
            (q.astype("<f4").tobytes(), n, agent))]
    return run


IMPL = {"np-part-f32": opt_np_part, "vecindex": opt_vecindex,
        "usearch-i8": opt_usearch("i8"), "usearch-f16": opt_usearch("f16"),
        "faiss-sq8": opt_faiss, "hnswlib": opt_hnswlib, "vec0": opt_vec0}


def child_build(layout: str, option: str) -> dict[str, Any]:
    from db0.store.core import Store

    info = json.loads((WORK / f"{layout}.store.json").read_text())
    store = Store.open(store_path(layout))
    t, c = time.perf_counter(), time.process_time()
    IMPL[option](layout, store, info["model_id"], True)
    out = {"build_s": round(time.perf_counter() - t, 2),
           "build_cpu_s": round(time.process_time() - c, 2), "build_peak_rss_mb": proc_mem()}
    d = index_dir(layout, option)
    out["index_disk_mb"] = du(d) if d.exists() else 0.0
    store.close()
    return out


def child_measure(layout: str, option: str, nq: int, whole: bool) -> dict[str, Any]:
    from db0.store.core import Store

    info = json.loads((WORK / f"{layout}.store.json").read_text())
    mid = info["model_id"]
    _, qv, _, qtext = base_vectors()
    before = proc_mem()
    t, c = time.perf_counter(), time.process_time()
    store = Store.open(store_path(layout))
    run = IMPL[option](layout, store, mid, False)
    out: dict[str, Any] = {"ready_s": round(time.perf_counter() - t, 3),
                           "ready_cpu_s": round(time.process_time() - c, 3),
                           "rss_before_mb": before, "rss_ready_mb": proc_mem()}
    exact = truth(layout, nq)
    qs = queries(layout, nq)
    for q in qs[:5]:  # warm: first touches of the mapped pages
        run(qv[q[0]], 10, q[1])
    for n in (10, 50):
        wall: list[float] = []
        cpu: list[float] = []
        hits: list[float] = []
        for i, (qi, agent) in enumerate(qs):
            t, c = time.perf_counter(), time.thread_time()
            got = run(qv[qi], n, agent)
            cpu.append((time.thread_time() - c) * 1000)
            wall.append((time.perf_counter() - t) * 1000)
            if n == 10:
                hits.append(len(set(got[:10]) & set(exact[i].tolist())) / 10)
        out[f"vector_n{n}"] = summary(wall, cpu)
        if n == 10:
            out["recall_at_10"] = round(float(np.mean(hits)), 4)
    out["rss_after_queries_mb"] = proc_mem()
    if whole and option == "vecindex":
        out["recall_call"] = whole_recall(store, run.index, mid, qtext, qs)
        out["rss_with_model_mb"] = proc_mem()
    out["loadavg"] = os.getloadavg()
    store.close()
    return out


def whole_recall(store: Any, idx: Any, mid: int, qtext: list[str],
                 qs: list[tuple[int, str]]) -> dict[str, Any]:
    """store.search.recall end to end (query embedded by llama.cpp on one thread, as the
    daemon's query context), with vector_candidates made partition-aware."""
    from db0.daemon.embedder import Embedder
    from db0.store import search

    emb = Embedder(MODEL, 1)
    search.vector_candidates = vecindex_candidates  # as the lead would wire it
    search.vector_distances = vecindex_distances
    parts: dict[str, list[float]] = {}

    def timed(name: str, fn: Any) -> Any:
        def wrapper(*a: Any, **kw: Any) -> Any:
            c = time.thread_time()
            try:
                return fn(*a, **kw)
            finally:
                parts.setdefault(name, []).append((time.thread_time() - c) * 1000)
        return wrapper

    for name in ("keyword_query", "keyword_candidates", "vector_candidates", "neighbours",
                 "keyword_scores", "vector_distances", "_best"):
        setattr(search, name, timed(name, getattr(search, name)))
    wall: list[float] = []
    cpu: list[float] = []
    embed_ms: list[float] = []
    for k, (qi, agent) in enumerate(qs[:5] + qs):
        t, c = time.perf_counter(), time.thread_time()
        vec = np.asarray(emb.embed([qtext[qi]])[0], dtype=np.float32)
        e = time.perf_counter()
        parts.setdefault("embed", []).append((time.thread_time() - c) * 1000)
        search.recall(store, ctx_for(agent), qtext[qi], 10,
                      qvec=search.QueryVector(mid, vec, idx))
        if k >= 5:
            embed_ms.append((e - t) * 1000)
            cpu.append((time.thread_time() - c) * 1000)
            wall.append((time.perf_counter() - t) * 1000)
    out = summary(wall, cpu)
    out["embed_median_ms"] = round(statistics.median(embed_ms), 3)
    # CPU ms per part (median over the calls; a part may run more than once a recall).
    out["cpu_parts_median_ms"] = {k: round(statistics.median(v), 3) for k, v in parts.items()}
    emb.close()
    return out


def run_child(args: list[str]) -> dict[str, Any]:
    p = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                       env={**os.environ}, timeout=7200)
    if p.returncode != 0:
        return {"error": (p.stderr or p.stdout).strip().splitlines()[-1:]}
    return dict(json.loads(p.stdout.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layouts", default="s300k,s1m,u1m")
    ap.add_argument("--options", default=",".join(OPTIONS))
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--rebuild", action="store_true", help="rebuild indexes already built")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--store-only", action="store_true", help="build the layouts' stores only")
    args = ap.parse_args()
    if args.store_only:
        for layout in args.layouts.split(","):
            build_store(layout)
            truth(layout, args.queries)
        return
    if args.child:
        what, layout, option = args.child
        res = (child_build(layout, option) if what == "build" else
               child_measure(layout, option, args.queries, whole=True))
        print(json.dumps(res))
        return
    WORK.mkdir(parents=True, exist_ok=True)
    results_path = WORK / "results.json"
    results: dict[str, Any] = (json.loads(results_path.read_text())
                               if results_path.exists() else {})
    for layout in args.layouts.split(","):
        info = build_store(layout)
        db = store_path(layout)
        from db0.store.core import Store

        st = Store.open(db)
        vec_bytes = st.conn.execute("SELECT sum(length(vector)) FROM memory_vectors"
                                    ).fetchone()[0]
        st.close()
        info |= {"sqlite_mb": du(db), "vector_blobs_mb": round(vec_bytes / 2**20, 1)}
        truth(layout, args.queries)
        for option in args.options.split(","):
            if option in ONLY and layout not in ONLY[option]:
                continue
            key = f"{layout}/{option}"
            row = dict(results.get(key, {}))
            if args.rebuild or "build_s" not in row or "error" in row:
                row = run_child(["--child", "build", layout, option])
            if "error" not in row:
                row |= run_child(["--queries", str(args.queries), "--child", "measure",
                                  layout, option])
            row["store"] = info
            results[key] = row
            results_path.write_text(json.dumps(results, indent=1))
            print(key, json.dumps(row), file=sys.stderr, flush=True)
    print_table(results)


def print_table(results: dict[str, Any]) -> None:
    cols = ("option", "build s", "ready s", "RSS MiB (anon/file)", "index MiB",
            "n=10 med/p95 ms (cpu)", "n=50 med/p95 ms", "r@10", "recall() med/p95 ms")
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for key, r in results.items():
        if "error" in r:
            print(f"| {key} | error: {r['error']} |")
            continue
        m = r.get("rss_after_queries_mb", {})
        v10, v50 = r.get("vector_n10", {}), r.get("vector_n50", {})
        rc = r.get("recall_call")
        print(f"| {key} | {r.get('build_s', '')} | {r.get('ready_s')} | "
              f"{m.get('VmRSS')} ({m.get('RssAnon')}/{m.get('RssFile')}) | "
              f"{r.get('index_disk_mb')} | {v10.get('median_ms')}/{v10.get('p95_ms')} "
              f"({v10.get('cpu_median_ms')}) | {v50.get('median_ms')}/{v50.get('p95_ms')} | "
              f"{r.get('recall_at_10')} | "
              + (f"{rc['median_ms']}/{rc['p95_ms']} (embed {rc['embed_median_ms']})"
                 if rc else "") + " |")


if __name__ == "__main__":
    main()

"""Embedding and recall speed: embeddings per second through the daemon, and server-side recall
latency (query embedding included) at 10,000 and 100,000 memories, median and p95.

1. A fresh DB0_HOME with the default model (installed once: `db0 model install`, or copied from
   --models DIR). `--n-embed` distinct memories are imported in one batch and the clock runs
   until the daemon has embedded them all (`memory.wait`): embeddings/s.
2. The store is grown to each size with the daemon stopped, through the store API: new texts
   are the embedded ones with a few extra words, and their vectors the embedded vectors plus a
   little noise (embedding 100,000 texts through the model would take ~10 minutes and measures
   nothing the first step does not; the search cost does not depend on the values).
3. The daemon is restarted (it loads the vectors into its index; a partition over
   `vecindex.BIG` gets its graph in the background, which is waited for) and `--queries`
   recalls of new sentences (embedded per query, never cached) are timed by the daemon
   (`took_ms`).

Prints one JSON document. Usage: python bench/embed_recall_speed.py [--sizes 10000,100000]
What was tried before the vectors were held in memory (sqlite-vec's vec0): docs/performance.md.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DB0 = str(Path(sys.executable).with_name("db0"))
SUBJECTS = ("Alice", "Bob", "the team", "our client", "my sister", "the manager", "Priya",
            "the build server", "the new intern", "Grandma", "the landlord", "Marco",
            "the support desk", "the research group", "Dr. Okafor", "the cat")
VERBS = ("prefers", "asked about", "complained about", "is planning", "finished",
         "forgot", "recommended", "cancelled", "scheduled", "paid for", "wrote about",
         "is allergic to", "bought", "lost", "fixed", "is learning")
OBJECTS = ("dark roast coffee", "the quarterly budget", "a trip to Lisbon", "the Rust rewrite",
           "piano lessons", "the database migration", "a birthday party on Saturday",
           "the broken dishwasher", "vegan recipes", "the conference talk", "a used bicycle",
           "the flaky integration tests", "peanuts", "the rent increase", "a hiking trail",
           "Spanish grammar", "the kubernetes cluster", "a new laptop", "the garden fence",
           "the insurance claim")
TAILS = ("last week", "this morning", "before the holidays", "on Tuesday", "again",
         "after lunch", "for the third time", "with some hesitation", "in great detail",
         "during the standup", "over the phone", "by email")
QUERIES = ("what does Alice like to drink", "who has a food allergy", "travel plans in Portugal",
           "problems with the tests", "when is the party", "what was said about money",
           "learning a language", "home repairs", "music practice", "cloud infrastructure work",
           "buying a computer", "outdoor activities", "the apartment costs",
           "moving the database", "who gave a presentation", "kitchen appliance trouble")


def sentence(rng: random.Random) -> str:
    return (f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} "
            f"{rng.choice(TAILS)}")


def summary(ms: list[float]) -> dict[str, float]:
    ms = sorted(ms)
    return {"median_ms": round(statistics.median(ms), 2),
            "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 2), "n": len(ms)}


def client(home: str) -> Any:
    os.environ["DB0_HOME"] = home
    from db0.daemon.client import connect

    return connect()


def stop(home: str) -> None:
    subprocess.run([DB0, "daemon", "stop"], env={**os.environ, "DB0_HOME": home},
                   capture_output=True, check=False, timeout=120)


def embed_speed(home: str, n: int) -> dict[str, Any]:
    rng = random.Random(7)
    texts = list(dict.fromkeys(f"{sentence(rng)} (note {i})" for i in range(n)))
    c = client(home)
    st = c.call("model.status", {})
    t0 = time.perf_counter()
    res = c.call("memory.import", {"items": [{"content": t} for t in texts]}, timeout=600)
    t1 = time.perf_counter()
    c.call("memory.wait", {"ids": res["ids"], "wait_timeout": 1800}, timeout=1900)
    t2 = time.perf_counter()
    after = c.call("model.status", {})
    c.close()
    made = after["embedded"] - st.get("embedded", 0)
    return {"memories": len(texts), "embedded": made, "import_s": round(t1 - t0, 3),
            "embed_s": round(t2 - t0, 3),
            "embeddings_per_s": round(made / (t2 - t0), 1), "model": after.get("model"),
            "threads": int(os.environ.get("DB0_BENCH_THREADS", "2"))}


def grow(home: str, size: int, seed: int) -> int:
    """Add memories (and noisy copies of real vectors) until the store holds `size`."""
    import numpy as np

    from db0.store import vectors, write
    from db0.store.context import Context
    from db0.store.core import Store

    store = Store.open(Path(home) / "data" / "db0.sqlite3")
    mid = int(store.conn.execute(
        "SELECT CAST(value AS INTEGER) FROM meta WHERE key='embedding_active'").fetchone()[0])
    have = store.conn.execute("SELECT count(*) FROM memories").fetchone()[0]
    base = store.conn.execute("SELECT m.content, v.vector FROM memory_vectors v JOIN memories m "
                              "ON m.rid=v.rid WHERE v.model_id=? LIMIT 5000",
                              (mid,)).fetchall()
    dim = len(base[0][1]) // 4
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    ctx = Context(os.environ.get("DB0_USER") or getpass.getuser())  # as the daemon sees us
    added = 0
    while have + added < size:
        n = min(5000, size - have - added)
        with store.transaction():  # through the store's one write path, a batch at a time
            picks = [base[rng.randrange(len(base))] for _ in range(n)]
            items = [write.prepare(
                {"content": f"{text} {sentence(rng)} #{seed}-{have + added + i}"})
                for i, (text, _) in enumerate(picks)]
            last = int(store.conn.execute("SELECT coalesce(max(rid), 0) FROM memories")
                       .fetchone()[0])
            write.remember_many(store, ctx, items, kind="remember")
            new = store.conn.execute("SELECT rid, content_hash FROM memories WHERE rid > ? "
                                     "ORDER BY rid", (last,)).fetchall()
            rows = []
            for (rid, h), (_, blob) in zip(new, picks, strict=True):
                v = np.frombuffer(blob, dtype="<f4") + nrng.normal(0, 0.02, dim).astype("f4")
                rows.append((int(rid), str(h), vectors.to_blob(v / np.linalg.norm(v))))
            vectors.put(store, mid, rows)
        added += n
    store.close()
    return have + added


def recall_latency(home: str, runs: int, k: int) -> dict[str, Any]:
    c = client(home)
    t = time.perf_counter()
    while c.call("model.status", {}).get("state") != "ready":  # index loaded, nothing pending
        if time.perf_counter() - t > 600:
            raise SystemExit("the embedder did not get ready in 10 minutes")
        time.sleep(0.2)
    ready_s = time.perf_counter() - t
    # A big partition's HNSW graph is built in the background after a start that found none
    # (the store grew with the daemon stopped): until then its rows are scanned exactly, and
    # the build takes a core. Recall is timed once it is done, as a daemon runs for weeks.
    while True:
        ix = c.call("model.status", {}).get("index") or {}
        if not ix.get("graphs_owed") and not ix.get("building_graphs"):
            break
        if time.perf_counter() - t > 3600:
            raise SystemExit("the index's graphs were not built in an hour")
        time.sleep(0.5)
    graphs_s = time.perf_counter() - t
    rng = random.Random(3)
    for _ in range(5):  # warm: the index loads at start, the first queries page it in
        c.call("memory.recall", {"query": rng.choice(QUERIES), "k": k})
    server, roundtrip = [], []
    vec_hits = 0
    for i in range(runs):
        q = f"{rng.choice(QUERIES)} {rng.choice(TAILS)} {i}"  # new text: no query cache helps
        t = time.perf_counter()
        res = c.call("memory.recall", {"query": q, "k": k})
        roundtrip.append((time.perf_counter() - t) * 1000)
        server.append(res["took_ms"])
        vec_hits += any("vector_rank" in r["score_parts"] for r in res["results"])
    st = c.call("daemon.status", {})
    c.close()
    return {"memories": st["memories"], "ready_after_start_s": round(ready_s, 2),
            "graphs_built_after_start_s": round(graphs_s, 2),
            "server": summary(server),
            "round_trip": summary(roundtrip), "queries_with_vector_hits": vec_hits,
            "searching_with": st.get("embedder", {}).get("searching_with")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--n-embed", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--models", help="a models folder to copy instead of installing")
    ap.add_argument("--home", help="keep the data here (default: a temporary folder)")
    args = ap.parse_args()
    out: dict[str, Any] = {"cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="db0e", dir="/tmp") as tmp:
        home = args.home or tmp
        env = {**os.environ, "DB0_HOME": home}
        (Path(home) / "config").mkdir(parents=True, exist_ok=True)
        (Path(home) / "config" / "config.toml").write_text(
            f"[embed]\nthreads = {int(os.environ.get('DB0_BENCH_THREADS', '2'))}\n")
        if args.models:
            shutil.copytree(args.models, Path(home) / "data" / "models")
        t = time.perf_counter()
        subprocess.run([DB0, "model", "install"], env=env, check=True, capture_output=True)
        out["model_install_s"] = round(time.perf_counter() - t, 2)
        try:
            out["embed"] = embed_speed(home, args.n_embed)
            out["recall"] = {}
            for size in (int(s) for s in args.sizes.split(",")):
                stop(home)
                grow(home, size, seed=size)
                out["recall"][str(size)] = recall_latency(home, args.runs, args.k)
        finally:
            stop(home)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

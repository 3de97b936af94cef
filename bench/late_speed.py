"""The late-interaction stage's own cost at a store size: query encode, load of the top N
memories' stored token vectors, MaxSim (issue 18).

A database of --size memories with token vectors (the memories and late_vectors columns the
stage reads, store/lateint.py's load), each memory's blob copied from a kept home's real ones
(cycled), is made once in --work; then --runs queries (bench/agentmem's questions) are encoded
by the home's late encoder (one thread, as the daemon's query context), and for each N the
vectors of N random memories are loaded and scored. Medians of wall and CPU ms, and the load.
Usage: python bench/late_speed.py --home KEPT_HOME [--size 100000] [--work DIR] [--runs 60]
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import agentmem  # noqa: E402


def build(db: Path, home: Path, size: int) -> None:
    src = sqlite3.connect(f"file:{home / 'data' / 'db0.sqlite3'}?mode=ro", uri=True)
    blobs = [(d, bytes(b)) for d, b in src.execute("SELECT dim, vectors FROM late_vectors")]
    conn = sqlite3.connect(db)
    conn.executescript("""
        PRAGMA journal_mode=WAL;
        CREATE TABLE memories (rid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,
                               content_hash TEXT NOT NULL);
        CREATE TABLE late_vectors (rid INTEGER PRIMARY KEY, model TEXT NOT NULL,
                                   content_hash TEXT NOT NULL, dim INTEGER NOT NULL,
                                   vectors BLOB NOT NULL);""")
    for lo in range(0, size, 10_000):
        rows = range(lo + 1, min(size, lo + 10_000) + 1)
        conn.executemany("INSERT INTO memories VALUES (?, ?, ?)",
                         [(r, f"m{r:09d}", f"h{r}") for r in rows])
        conn.executemany("INSERT INTO late_vectors VALUES (?, 'x', ?, ?, ?)",
                         [(r, f"h{r}", *blobs[r % len(blobs)]) for r in rows])
        conn.commit()
    conn.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", required=True)
    ap.add_argument("--size", type=int, default=100_000)
    ap.add_argument("--work", default="/tmp/late_speed")
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--ns", default="30,50,100")
    args = ap.parse_args()
    # as the daemon does (daemon/__main__.py): one BLAS thread, set before NumPy loads
    for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    from db0.daemon.models.lateenc import LateEncoder
    from db0.store import lateint

    home = Path(args.home)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    db = work / f"late-{args.size}.sqlite3"
    if not db.exists():
        t0 = time.perf_counter()
        build(db, home, args.size)
        print(f"built {db} ({db.stat().st_size / 2**20:.0f} MiB) in "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
    enc = LateEncoder(next((home / "data" / "models").glob("*.late.gguf")), 1)
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    _, qs = agentmem.load_data(agentmem.DATA)
    rng = random.Random(0)
    ns = [int(x) for x in args.ns.split(",")]
    wall: dict[str, list[float]] = {k: [] for k in ["encode", *(f"load+maxsim{n}" for n in ns)]}
    cpu: dict[str, list[float]] = {k: [] for k in wall}
    load0 = os.getloadavg()
    for q in qs[:args.runs]:
        w0, c0 = time.perf_counter(), time.thread_time()
        qv = enc.query(q["question"])
        wall["encode"].append((time.perf_counter() - w0) * 1000)
        cpu["encode"].append((time.thread_time() - c0) * 1000)
        for n in ns:
            ids = [f"m{rng.randint(1, args.size):09d}" for _ in range(n)]
            w0, c0 = time.perf_counter(), time.thread_time()
            marks = ",".join("?" * n)
            docs = [lateint.unpack(bytes(b), int(d)) for d, b in conn.execute(
                f"SELECT l.dim, l.vectors FROM memories m JOIN late_vectors l ON l.rid = m.rid "
                f"AND l.content_hash = m.content_hash AND l.model = 'x' "
                f"WHERE m.id IN ({marks})", ids)]
            lateint.maxsim(qv, docs)
            wall[f"load+maxsim{n}"].append((time.perf_counter() - w0) * 1000)
            cpu[f"load+maxsim{n}"].append((time.thread_time() - c0) * 1000)
    for k, ws in wall.items():
        print(f"{k:<16} wall median {statistics.median(ws):6.1f} ms  "
              f"p90 {sorted(ws)[int(0.9 * len(ws))]:6.1f}  "
              f"cpu median {statistics.median(cpu[k]):6.1f} ms")
    print(f"{args.size} memories, {len(qs[:args.runs])} queries; load {load0} -> "
          f"{os.getloadavg()}")


if __name__ == "__main__":
    main()

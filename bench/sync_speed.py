"""Sync throughput: push and pull of N ops (default 100,000) between two devices through a
real Postgres, in ops/s each way (target: 10,000 ops/s).

Device A gets N memories written through `store.core.write_state` before its daemon starts
(`db0 import` is far slower than sync at this size, and is not what is measured), then
`db0 sync` pushes them; device B's `db0 sync` pulls and applies them. Timed as whole
`db0 sync` processes, wall clock.
Needs the Debian PostgreSQL 15 running (`pg_ctlcluster 15 main start`) and a role for the
current user, or `--dsn` pointing at a server where we may create databases.

Prints one JSON document. Usage: python bench/sync_speed.py [--n 100000] [--dsn DSN]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

DB0 = str(Path(sys.executable).with_name("db0"))
BASE = "postgresql:///postgres?host=/var/run/postgresql"
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
         "juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo",
         "sierra", "tango", "uniform", "victor", "whiskey"]


def seed(home: Path, n: int) -> None:
    """n memories with their ops, through the store's one write path, in one transaction."""
    from db0.store.core import Store, write_state
    from db0.store.ids import new_id
    from db0.store.memories import content_hash, now_iso

    store = Store.open(home / "data" / "db0.sqlite3")
    now = time.time()
    with store.transaction():
        for i in range(n):
            content = " ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(12)) + f" #{i}"
            write_state(store, {
                "id": new_id(), "content": content, "content_hash": content_hash(content),
                "scope": "user", "owner": "bench", "user_id": "bench", "agent_id": "default",
                "session_id": None, "task_id": None, "key": None, "metadata": "{}",
                "tags": "[]", "pinned": 0, "created_at": now_iso(now), "created_ts": now,
                "updated_ts": now, "expires_ts": None, "superseded_by": None,
                "superseded_ts": None, "supersede_reason": None, "forgotten_ts": None}, "remember")
    store.close()


def db0(home: Path, *args: str, data: bytes | None = None) -> str:
    env = {**os.environ, "DB0_HOME": str(home), "NO_COLOR": "1"}
    p = subprocess.run([DB0, *args], env=env, input=data, capture_output=True, check=False)
    if p.returncode != 0:
        raise SystemExit(f"db0 {' '.join(args)} failed: {p.stderr.decode()}")
    return p.stdout.decode()


def timed_sync(home: Path) -> tuple[float, dict[str, object]]:
    t = time.perf_counter()
    out = json.loads(db0(home, "sync", "--json"))["results"][0]
    return time.perf_counter() - t, out


def main() -> None:
    import psycopg

    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dsn", default=BASE, help="a server database to create the bench's in")
    args = ap.parse_args()
    name = "db0bench_" + uuid.uuid4().hex[:8]
    with psycopg.connect(args.dsn, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    dsn = args.dsn.replace("/postgres?", f"/{name}?", 1)
    homes = [Path(tempfile.mkdtemp(prefix="db0b", dir="/tmp")) for _ in range(2)]
    try:
        a, b = homes
        t = time.perf_counter()
        seed(a, args.n)
        seed_s = time.perf_counter() - t
        for h in homes:
            db0(h, "remote", "add", "bench", dsn)
        push_s, push = timed_sync(a)
        pull_s, pull = timed_sync(b)
        b_ops = json.loads(db0(b, "stats", "--json"))["ops"]
        with psycopg.connect(dsn, autocommit=True) as c:
            remote_ops = c.execute("SELECT count(*) FROM db0.ops").fetchone()[0]
        print(json.dumps({
            "n": args.n, "postgres": dsn.split("?")[0],
            "seed_s": round(seed_s, 2),
            "push": {"ops": push["pushed"], "seconds": round(push_s, 2),
                     "ops_per_s": round(int(push["pushed"]) / push_s),  # type: ignore[call-overload]
                     "daemon_seconds": push["seconds"]},
            "pull": {"ops": pull["pulled"], "applied": pull["applied"],
                     "seconds": round(pull_s, 2),
                     "ops_per_s": round(int(pull["pulled"]) / pull_s),  # type: ignore[call-overload]
                     "daemon_seconds": pull["seconds"]},
            "remote_ops": remote_ops, "device_b_ops": b_ops,
            "target_ops_per_s": 10_000,
        }, indent=2))
    finally:
        for h in homes:
            subprocess.run([DB0, "daemon", "stop"], env={**os.environ, "DB0_HOME": str(h)},
                           capture_output=True, check=False)
        with psycopg.connect(args.dsn, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        import shutil

        for h in homes:
            shutil.rmtree(h, ignore_errors=True)


if __name__ == "__main__":
    main()

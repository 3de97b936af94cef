"""Issue 17, target 2: where one acknowledged remember's store-side time goes, in process.

A store with --pre memories (written by import batches), then --n remembers, each in its own
transaction as the daemon's writer runs a lone job (BEGIN IMMEDIATE, the job, COMMIT; with
--savepoint, inside a savepoint as a job of a group). With --group N, N remembers share each
transaction as the writer runs a group of rerunnable jobs (no savepoints). Each commit ends
as the writer's do (`Store.before_commit`): the full text of new memories is indexed once
more than --lag of them wait (default the writer's FTS_LAG; 0: at every commit), and what
waits at the end is indexed in a last transaction that counts too. Prints the CPU per write
of each SQL statement and of the Python around them, and the WAL frames written per remember,
per b-tree (table or index, from `dbstat`), so a cut can be aimed at what a write touches.

Usage: python bench/write_budget.py [--pre 20000] [--n 2000] [--savepoint] [--group N]
       [--lag N]
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


class Timed:
    """The connection, with the CPU of each statement (by its first 60 characters) counted."""

    def __init__(self, conn: Any) -> None:
        self._c = conn
        self.cpu: collections.Counter[str] = collections.Counter()

    def execute(self, sql: str, *args: Any) -> Any:
        t = time.process_time()
        cur = self._c.execute(sql, *args)
        rows = list(cur) if sql.lstrip().upper().startswith("SELECT") or "RETURNING" in sql \
            else None
        self.cpu[" ".join(sql.split())[:60]] += time.process_time() - t
        return _Rows(rows) if rows is not None else cur

    def executemany(self, sql: str, *args: Any) -> Any:
        t = time.process_time()
        cur = self._c.executemany(sql, *args)
        self.cpu[" ".join(sql.split())[:60]] += time.process_time() - t
        return cur

    def __getattr__(self, name: str) -> Any:
        return getattr(self._c, name)


class _Rows(list[Any]):
    def fetchone(self) -> Any:
        return self[0] if self else None

    def fetchall(self) -> list[Any]:
        return list(self)


def main() -> int:
    from diy.workload import Workload

    from db0.daemon.core.writer import FTS_LAG
    from db0.store import write
    from db0.store.context import Context
    from db0.store.core import Store, flush_full_text

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pre", type=int, default=20_000)
    ap.add_argument("--n", type=int, default=2_000)
    ap.add_argument("--savepoint", action="store_true")
    ap.add_argument("--group", type=int, default=1, help="remembers per transaction")
    ap.add_argument("--lag", type=int, default=FTS_LAG,
                    help="new memories a commit may leave out of the full-text index")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="db0wb", dir="/tmp"))
    try:
        st = Store.open(tmp / "db.sqlite3")
        st.conn.execute("PRAGMA wal_autocheckpoint=0")
        wl = Workload(100, 300)
        ctx = Context(user="u", agent="a0")
        pre = [write.prepare({"content": f"{wl.text(i)} (p{i})", "scope": "agent"})
               for i in range(args.pre)]
        for i in range(0, len(pre), 1000):
            with st.transaction():
                write.remember_many(st, ctx, pre[i:i + 1000], kind="import")
        st.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = {int(p): str(n) for n, p in st.conn.execute("SELECT name, pageno FROM dbstat")}
        raw = st.conn
        timed = Timed(raw)
        st.conn = timed  # type: ignore[assignment]
        items = [write.prepare({"content": f"{wl.text(i + 7)} (w{i})", "scope": "agent"})
                 for i in range(args.n)]
        c0 = time.process_time()
        st.fts_lag = args.lag
        for i in range(0, len(items), args.group):
            timed.execute("BEGIN IMMEDIATE")
            for p in items[i:i + args.group]:
                if args.savepoint:
                    timed.execute("SAVEPOINT job")
                write.remember(st, ctx, p)
                if args.savepoint:
                    timed.execute("RELEASE job")
            st.before_commit()
            timed.execute("COMMIT")
        timed.execute("BEGIN IMMEDIATE")
        flush_full_text(timed)  # type: ignore[arg-type]
        timed.execute("COMMIT")
        total = (time.process_time() - c0) / args.n * 1e6
        sql = sum(timed.cpu.values()) / args.n * 1e6
        frames: collections.Counter[str] = collections.Counter()
        data = (tmp / "db.sqlite3-wal").read_bytes()
        size = int(raw.execute("PRAGMA page_size").fetchone()[0])
        off = 32
        while off + 24 + size <= len(data):
            frames[pages.get(struct.unpack(">I", data[off:off + 4])[0], "(a new page)")] += 1
            off += 24 + size
        st.conn = raw
        st.close()
        print(f"{args.n} remembers into {args.pre:,} memories, {args.group} a commit"
              f", full text indexed {args.lag} at a time, "
              f"{'with' if args.savepoint else 'without'} a savepoint, load "
              f"{os.getloadavg()[0]:.2f}")
        print(f"CPU per write {total:.0f} us: SQL {sql:.0f}, Python {total - sql:.0f}")
        for name, cpu in timed.cpu.most_common():
            print(f"  {cpu / args.n * 1e6:7.1f} us  {name}")
        print(f"WAL frames per write {sum(frames.values()) / args.n:.1f}")
        for name, n in frames.most_common():
            print(f"  {n / args.n:5.2f}  {name}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

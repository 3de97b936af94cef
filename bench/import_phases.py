"""Issue 17, target 3: where a `db0 import` line's daemon-side CPU goes, in process.

The store API only, as the daemon's import requests run it: the wire JSON of each batch
decoded, `prepare` per line, `Staging.stage` per batch of 10,000 (in memory) and
`commit_import` with the last batch in one transaction, into a fresh store (or one with --pre
memories). Prints the process CPU per line of each phase (and of the whole), and the
commit's peak memory (above what the process held before it) and page faults.

Usage: python bench/import_phases.py [--lines 100000] [--pre 0] [--profile]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--pre", type=int, default=0)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--profile", action="store_true", help="cProfile the commit")
    ap.add_argument("--no-gc", action="store_true", help="the cyclic GC off throughout")
    ap.add_argument("--sql", action="store_true", help="the commit's statements' times")
    ap.add_argument("--pragma", action="append", default=[], help="run on the store first")
    args = ap.parse_args()

    from diy.workload import Workload

    from db0.store import write
    from db0.store.context import Context
    from db0.store.core import Store

    if args.no_gc:
        import gc
        gc.disable()
    wl = Workload(max(4, (args.lines + args.pre) // 300 + 1), 300)
    tmp = Path(tempfile.mkdtemp(prefix="db0ip", dir="/tmp"))
    try:
        store = Store.open(tmp / "db.sqlite3")
        ctx = Context(user="u", agent="bulk")
        for pragma in args.pragma:
            store.conn.execute(f"PRAGMA {pragma}")
        if args.pre:
            with store.transaction():
                write.remember_many(store, ctx, [write.prepare({"content": wl.text(args.lines + g),
                                                                "scope": "agent"})
                                                 for g in range(args.pre)])
        lines = [json.dumps({"content": wl.text(g), "scope": "agent"}) for g in range(args.lines)]
        cpu = dict.fromkeys(("decode", "prepare", "stage", "commit"), 0.0)
        t_all = time.process_time()
        iid = "bench"
        staging = write.Staging()
        for i in range(0, args.lines, args.batch):
            last = i + args.batch >= args.lines
            t = time.process_time()
            raw = json.loads("[" + ",".join(lines[i:i + args.batch]) + "]")
            cpu["decode"] += time.process_time() - t
            t = time.process_time()
            ps = [write.prepare(it, where=f"line {i + k + 1}") for k, it in enumerate(raw)]
            for scope in dict.fromkeys(p.item["scope"] for p in ps):
                ctx.owner(scope)
            cpu["prepare"] += time.process_time() - t
            t = time.process_time()
            if not last:
                staging.stage(iid, i + 1, ps)
                cpu["stage"] += time.process_time() - t
                continue
            if args.profile:
                import cProfile
                import pstats
                prof = cProfile.Profile()
                prof.enable()
            sql: dict[str, float] = {}
            if args.sql:
                def seen(stmt: str, ns: int, sql: dict[str, float] = sql) -> None:
                    k = " ".join(stmt.split())[:50]
                    sql[k] = sql.get(k, 0.0) + ns / 1e9
                store.conn.set_profile(seen)
            rss0, flt0 = _reset_peak(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            with store.transaction():
                out, _ = write.commit_import(store, ctx, iid, staging.take(iid), ps, args.lines)
            store.conn.set_profile(None)
            print(f"commit: peak RSS +{_status('VmHWM') - rss0} MiB, "
                  f"{resource.getrusage(resource.RUSAGE_SELF).ru_minflt - flt0} minor faults")
            for k, v in sorted(sql.items(), key=lambda kv: -kv[1])[:14]:
                print(f"  {v * 1e6 / args.lines:6.2f} us/line  {k}")
            if args.profile:
                prof.disable()
                pstats.Stats(prof).sort_stats("tottime").print_stats(18)
            cpu["commit"] += time.process_time() - t
        total = time.process_time() - t_all
        n = args.lines
        stored = sum(st == "stored" for _, st in out)
        print(" ".join(f"{k} {v * 1e6 / n:.1f}" for k, v in cpu.items())
              + f" total {total * 1e6 / n:.1f} us/line; stored {stored} of {n}")
        store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _status(field: str) -> int:
    """A /proc/self/status figure, in MiB."""
    with open("/proc/self/status") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith(field + ":")) >> 10


def _reset_peak() -> int:
    """Start VmHWM again from the current RSS (Linux's clear_refs 5); the current RSS."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status("VmRSS")


if __name__ == "__main__":
    sys.exit(main())

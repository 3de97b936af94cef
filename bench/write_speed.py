"""Issue 17, targets 2 and 3: acknowledged `memory.remember`/s with 1 and 4 clients, and
`db0 import` lines/s end to end, A/B interleaved between installed db0s.

Each measured run starts a daemon in a private DB0_HOME with the default model installed (the
embedder runs meanwhile, as it does by default), then:
- writes: N client processes (bench/diy/db0side.db0_client) each calling `memory.remember`
  over one connection for --seconds, each call answered once committed; acknowledged/s;
- import: `db0 import FILE --agent bulk --json` of a generated JSONL of --lines LoCoMo-derived
  turns into a fresh home with a running daemon, end to end (lines/s), with the CPU of the
  daemon's nice-0 threads per line (the import's own work, without the embedder's).
Every figure has the CPU seconds of the clients and the daemon, and the 1-minute load average
at start and end, beside the wall time (bench/diy/meter.py). The daemon's CPU includes its
embedder, which takes whatever is idle; the write rows also give the CPU of the daemon's
nice-0 threads (its request path) per acknowledged write, which the machine's load moves less.

A/B: `--python A --python B` names the interpreters of the installs to compare (each runs this
script with `--one`, so the daemon, client and CLI are that install's); rounds alternate
A, B, B, A, ... and the medians per install are printed last, with one JSON document.

Usage: python bench/write_speed.py [--python PY ...] [--rounds 3] [--seconds 8]
       [--clients 1,4] [--lines 100000] [--durability normal|full] [--skip-import]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

MODELS = Path(os.environ.get("DB0_BENCH_MODELS", "/tmp/db0-ws-models"))
_TICK = os.sysconf("SC_CLK_TCK")


def normal_priority_cpu(pid: int) -> float:
    """CPU seconds of a process's threads at nice 0: the daemon's request path (selector,
    workers, writer, checkpointer), without the embedder's threads, which run at nice +10
    and take whatever CPU is idle. Threads that ended meanwhile are not counted."""
    total = 0.0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            f = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(f[16]) == 0:  # field 19 of stat, nice
            total += (int(f[11]) + int(f[12])) / _TICK
    return total


def one(args: argparse.Namespace) -> dict[str, Any]:
    """One run with this interpreter's db0: the write rows, then the import row."""
    from diy import db0side
    from diy.workload import Workload
    from diy_compare import run_clients

    out: dict[str, Any] = {"python": sys.executable}
    tmp = Path(tempfile.mkdtemp(prefix="db0ws", dir="/tmp"))
    wl = Workload(max(4, args.lines // 300 + 1), 300)
    try:
        clients = [int(c) for c in args.clients.split(",") if c.strip() and int(c) > 0]
        if clients:
            home = db0side.Home(tmp / "h", args.models, args.threads, args.durability)
            try:
                home.start()
                for n in clients:
                    jobs = [(str(home.path), wl.agent_name(i), wl.agent_texts(i))
                            for i in range(n)]
                    pid = home.pid()
                    c0 = normal_priority_cpu(pid)
                    row = run_clients(db0side.db0_client, jobs, args.seconds, home.pids)
                    row["cpu_s_request_path"] = round(normal_priority_cpu(pid) - c0, 2)
                    row["request_path_us_per_write"] = round(
                        row["cpu_s_request_path"] * 1e6 / max(1, row["acknowledged"]))
                    row["embedder_pending_after"] = home.call("model.status", {}).get("pending")
                    out[f"writes_{n}"] = row
            finally:
                home.stop()
        if args.lines:
            f = tmp / "bulk.jsonl"
            with f.open("w") as fh:
                for g in range(args.lines):
                    fh.write(json.dumps({"content": wl.text(g), "scope": "agent"}) + "\n")
            bulk = db0side.Home(tmp / "b", args.models, args.threads, args.durability)
            try:
                bulk.start()
                pid = bulk.pid()
                c0 = normal_priority_cpu(pid)
                row = bulk.import_file(f, "bulk")
                row["cpu_s_request_path"] = round(normal_priority_cpu(pid) - c0, 2)
                row["request_path_us_per_line"] = round(
                    row["cpu_s_request_path"] * 1e6 / max(1, row["lines"]))
                out["import"] = row
            finally:
                bulk.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def ensure_models(models: Path) -> None:
    if not (models / "models.json").exists():
        from diy import db0side

        db0side.install_models(models)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--python", action="append", help="an install's interpreter (repeat for A/B)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--clients", default="1,4")
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--threads", type=int, default=2, help="embed.threads of the daemon")
    ap.add_argument("--durability", default="normal", choices=("normal", "full"))
    ap.add_argument("--models", type=Path, default=MODELS)
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args)))
        return 0
    ensure_models(args.models)
    pythons = args.python or [sys.executable]
    runs: dict[str, list[dict[str, Any]]] = {p: [] for p in pythons}
    passthru = ["--seconds", str(args.seconds), "--clients", args.clients, "--lines",
                str(args.lines), "--threads", str(args.threads), "--durability",
                args.durability, "--models", str(args.models)]
    for r in range(args.rounds):
        order = pythons if r % 2 == 0 else list(reversed(pythons))
        for py in order:
            t = time.strftime("%H:%M:%S")
            print(f"[{t}] round {r + 1}: {py}", file=sys.stderr, flush=True)
            p = subprocess.run([py, __file__, "--one", *passthru], capture_output=True,
                               text=True, check=False)
            if p.returncode != 0:
                print(p.stderr[-2000:], file=sys.stderr)
                return 1
            res = json.loads(p.stdout.strip().splitlines()[-1])
            runs[py].append(res)
            print(json.dumps(res), file=sys.stderr, flush=True)
    medians: dict[str, Any] = {}
    for py, rs in runs.items():
        m: dict[str, Any] = {}
        for key in rs[0]:
            if key.startswith("writes_"):
                m[key] = {f: statistics.median(x[key][f] for x in rs)
                          for f in ("writes_per_s", "cpu_s_server", "cpu_s_clients",
                                    "request_path_us_per_write")}
                m[key]["load1"] = [x[key]["load1"] for x in rs]
            elif key == "import":
                m[key] = {f: statistics.median(x[key][f] for x in rs)
                          for f in ("lines_per_s", "wall_s", "cpu_s_server", "cpu_s_clients",
                                    "cpu_s_request_path", "request_path_us_per_line")}
                m[key]["load1"] = [x[key]["load1"] for x in rs]
        medians[py] = m
        print(f"{py}: " + "; ".join(f"{k} {v}" for k, v in m.items()))
    print(json.dumps({"args": vars(args) | {"models": str(args.models)}, "medians": medians,
                      "runs": runs}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

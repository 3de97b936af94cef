"""Watched folders: how long 1,000 Markdown notes take to be indexed, and how long a saved edit
takes to be found by `db0 recall` (target: median <= 2 s).

1. A folder of `--notes` notes (three sections each) exists before it is watched: the clock runs
   over `db0 watch add DIR` (it returns once the first scan has stored every section), then
   until the embedder has embedded them all (with a model; `--no-model` to skip it).
2. The same number of notes is written at once into a second, already watched folder: the
   clock runs until every section is stored (the watcher's debounce and batching at work).
3. `--edits` edits, one at a time, with the embedder idle: a note is saved with a new sentence
   holding a word never seen before, half of them in place and half as an editor's atomic save
   (a temporary file renamed over the note); the clock runs from the save until `memory.recall`
   over the daemon's socket (what `db0 recall` sends) returns it, polled every 20 ms.

Prints one JSON document and writes bench/results/watch_speed.json.
Usage: python bench/watch_speed.py [--notes 1000] [--edits 40] [--models DIR | --no-model]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DB0 = str(Path(sys.executable).with_name("db0"))
HERE = Path(__file__).resolve().parent
TOPICS = ("deploy", "database", "billing", "search", "onboarding", "release", "backup",
          "logging", "caching", "auth", "frontend", "payments", "alerts", "testing")
WORDS = ("the", "service", "needs", "a", "restart", "after", "config", "changes", "we",
         "decided", "to", "keep", "retries", "low", "because", "upstream", "timeouts", "are",
         "long", "run", "migrations", "before", "traffic", "moves", "check", "dashboards",
         "owner", "is", "on", "call", "this", "week", "notes", "from", "meeting", "with", "team")


def note_text(rng: random.Random, i: int) -> str:
    topic = TOPICS[i % len(TOPICS)]

    def para() -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(25, 60))) + "."

    return (f"# {topic.title()} note {i}\n{para()}\n\n## Decisions\n{para()}\n{para()}\n\n"
            f"## Open questions\n{para()}\n")


def write_notes(folder: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"note-{i:04d}.md").write_text(note_text(rng, i))


def cli(env: dict[str, str], *args: str, timeout: float = 900) -> Any:
    p = subprocess.run([DB0, *args, "--json"], env=env, capture_output=True, text=True,
                       timeout=timeout)
    if p.returncode != 0:
        raise SystemExit(f"db0 {' '.join(args)} failed: {p.stderr.strip()}")
    return json.loads(p.stdout)


def wait_for(pred: Any, timeout: float, step: float = 0.05) -> float:
    t = time.perf_counter()
    while not pred():
        if time.perf_counter() - t > timeout:
            raise SystemExit("timed out")
        time.sleep(step)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--notes", type=int, default=1000)
    ap.add_argument("--edits", type=int, default=40)
    ap.add_argument("--models", default=str(Path.home() / ".local/share/db0/models"),
                    help="a models folder to copy in (default: the user's, when present)")
    ap.add_argument("--no-model", action="store_true", help="keywords only, no embedder")
    args = ap.parse_args()
    out: dict[str, Any] = {"cpus": os.cpu_count(), "notes": args.notes,
                           "sections_per_note": 3}
    with tempfile.TemporaryDirectory(prefix="db0w", dir="/tmp") as tmp:
        home = Path(tmp) / "h"
        env = {**os.environ, "DB0_HOME": str(home), "DB0_USER": "bench"}
        (home / "config").mkdir(parents=True)
        (home / "config" / "config.toml").write_text("[embed]\nthreads = 2\n")
        model = not args.no_model and (Path(args.models) / "models.json").exists()
        if model:
            shutil.copytree(args.models, home / "data" / "models")
        out["model"] = model
        os.environ["DB0_HOME"] = str(home)
        from db0.daemon.client import connect

        try:
            cli(env, "daemon", "start")
            c = connect()

            def embed_pending() -> int:
                st = c.call("daemon.status", {})
                return int((st.get("embedder") or {}).get("pending") or 0)

            # 1. A folder that exists before it is watched.
            first = Path(tmp) / "first"
            write_notes(first, args.notes, 1)
            t = time.perf_counter()
            res = cli(env, "watch", "add", str(first))
            out["initial_scan_s"] = round(time.perf_counter() - t, 2)
            assert res["files"] == args.notes and res["sections"] == 3 * args.notes, res
            if model:
                out["initial_embedded_s"] = round(
                    out["initial_scan_s"] + wait_for(lambda: embed_pending() == 0, 1800, 0.5),
                    2)

            # 2. A thousand notes written at once into a watched folder.
            second = Path(tmp) / "second"
            second.mkdir()
            cli(env, "watch", "add", str(second))

            def indexed() -> bool:
                f = next(w for w in c.call("watch.list", {})["watches"]
                         if w["path"] == str(second))
                return bool(f["sections"] == 3 * args.notes)

            t = time.perf_counter()
            write_notes(second, args.notes, 2)
            out["burst_write_s"] = round(time.perf_counter() - t, 2)
            out["burst_indexed_s"] = round(time.perf_counter() - t + wait_for(indexed, 600),
                                           2)
            if model:
                wait_for(lambda: embed_pending() == 0, 1800, 0.5)

            # 3. Edits, one at a time, until recall finds the new words.
            rng = random.Random(3)
            lat: dict[str, list[float]] = {"in_place": [], "atomic": []}
            for n in range(args.edits):
                i = rng.randrange(args.notes)
                token = "zq" + "".join(rng.choice(string.ascii_lowercase) for _ in range(10))
                path = second / f"note-{i:04d}.md"
                text = path.read_text().replace("## Decisions\n",
                                                f"## Decisions\nWe now use {token}.\n", 1)
                how = "atomic" if n % 2 else "in_place"
                if how == "atomic":
                    tmp_path = second / f".note-{i:04d}.md.tmp"
                    tmp_path.write_text(text)
                    os.replace(tmp_path, path)
                else:
                    path.write_text(text)
                t = time.perf_counter()

                def found(tok: str = token) -> bool:
                    r = c.call("memory.recall", {"query": tok, "k": 1,
                                                 "context": {"user": "bench"}})
                    return any(tok in x["content"] for x in r["results"])

                lat[how].append(time.perf_counter() - t + wait_for(found, 60, 0.02))
                time.sleep(0.2)
            both = lat["in_place"] + lat["atomic"]
            out["edit_to_recall_s"] = {
                "median": round(statistics.median(both), 3),
                "p95": round(sorted(both)[int(0.95 * (len(both) - 1))], 3),
                "max": round(max(both), 3),
                "median_in_place": round(statistics.median(lat["in_place"]), 3),
                "median_atomic_save": round(statistics.median(lat["atomic"]), 3),
                "edits": len(both), "target_median_s": 2.0,
            }
            p = subprocess.run([DB0, "recall", token], env=env, capture_output=True,
                               text=True, timeout=60)
            out["cli_recall_finds_last_edit"] = token in p.stdout
            st = c.call("watch.status", {})
            out["debounce_s"] = st["debounce_s"]
            c.close()
        finally:
            subprocess.run([DB0, "daemon", "stop"], env=env, capture_output=True, timeout=120)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "watch_speed.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

"""What git capture adds to a commit: `git commit` with db0's capture hooks installed against
the same commit in a repository without them, interleaved in one run; the added time, median
(target <= 30 ms).
Also checks that every commit was captured in the end.

Prints one JSON document. Usage: python bench/capture_speed.py [--commits 40]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DB0 = str(Path(sys.executable).with_name("db0"))


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    t = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, timeout=120)
    ms = (time.perf_counter() - t) * 1000
    if p.returncode != 0:
        raise SystemExit(f"{cmd}: {p.stderr.decode()[-400:]}")
    return ms


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--commits", type=int, default=40)
    args = ap.parse_args()
    out: dict[str, Any] = {"cpus": os.cpu_count(), "target_added_median_ms": 30}
    with tempfile.TemporaryDirectory(prefix="db0g", dir="/tmp") as tmp:
        root = Path(tmp)
        env = {**os.environ, "DB0_HOME": str(root / "db0"), "HOME": str(root),
               "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "Bench",
               "GIT_AUTHOR_EMAIL": "b@example.org", "GIT_COMMITTER_NAME": "Bench",
               "GIT_COMMITTER_EMAIL": "b@example.org"}
        repos = {}
        for name in ("plain", "captured"):
            repo = root / name
            repo.mkdir()
            run(["git", "init", "-q", "-b", "main"], repo, env)
            repos[name] = repo
        run([DB0, "integrate", "git"], repos["captured"], env)
        subprocess.run([DB0, "daemon", "start"], env=env, check=True, capture_output=True)
        try:
            times: dict[str, list[float]] = {"plain": [], "captured": []}
            for i in range(args.commits):
                for name, repo in repos.items():
                    (repo / f"note{i}.md").write_text(f"note {i}\n")
                    run(["git", "add", f"note{i}.md"], repo, env)
                    times[name].append(run(["git", "commit", "-q", "-m",
                                            f"Note {i}: about the {name} bench"], repo, env))
            med = {k: statistics.median(v) for k, v in times.items()}
            out["commit_plain_median_ms"] = round(med["plain"], 2)
            out["commit_captured_median_ms"] = round(med["captured"], 2)
            out["added_median_ms"] = round(med["captured"] - med["plain"], 2)
            pairs = [c - p for c, p in zip(times["captured"], times["plain"], strict=True)]
            out["added_pairwise_median_ms"] = round(statistics.median(pairs), 2)
            t = time.perf_counter()
            got = 0
            while time.perf_counter() - t < 60:
                p = subprocess.run([DB0, "list", "--tag", "git", "-n", "10000", "--json",
                                    "--scope", "agent"], env=env, capture_output=True)
                got = len(json.loads(p.stdout)["memories"])
                if got >= args.commits:
                    break
                time.sleep(0.5)
            out["captured"] = got
            out["commits"] = args.commits
        finally:
            subprocess.run([DB0, "daemon", "stop"], env=env, capture_output=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

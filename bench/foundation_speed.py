"""CLI round trips and import throughput: `db0 remember` and `db0 recall` as processes against
a warm daemon with 10,000 memories (beside `python -c pass`, same run), and `db0 import`
throughput at 100,000.

Prints one JSON document. Usage: python bench/foundation_speed.py [--n-import 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DB0 = str(Path(sys.executable).with_name("db0"))
WORDS = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
    "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
    "uniform", "victor", "whiskey", "xray", "yankee", "zulu", "deploy", "cache", "socket",
    "memory", "agent", "session", "vector", "python", "rust", "editor",
]


def lines(n: int, seed: int) -> str:
    rng = random.Random(seed)
    return "".join(json.dumps({"content": " ".join(rng.choices(WORDS, k=12)) + f" #{seed}-{i}"})
                   + "\n" for i in range(n))


def timed(cmd: list[str], env: dict[str, str], runs: int, data: bytes | None = None
          ) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, env=env, input=data, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=True)
        out.append((time.perf_counter() - t) * 1000)
    return out


def summary(ms: list[float]) -> dict[str, float]:
    ms = sorted(ms)
    return {"median_ms": round(statistics.median(ms), 1),
            "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-import", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    result: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="db0b", dir="/tmp") as home:
        env = {**os.environ, "DB0_HOME": home}
        subprocess.run([DB0, "daemon", "start"], env=env, check=True, capture_output=True)
        data = lines(args.n_import, 1).encode()
        t = time.perf_counter()
        p = subprocess.run([DB0, "import", "-", "--json"], env=env, input=data,
                           capture_output=True, check=True)
        secs = time.perf_counter() - t
        stored = json.loads(p.stdout)["stored"]
        result["import"] = {"memories": stored, "seconds": round(secs, 2),
                            "memories_per_s": round(stored / secs)}
        subprocess.run([DB0, "daemon", "stop"], env=env, check=True, capture_output=True)

    with tempfile.TemporaryDirectory(prefix="db0b", dir="/tmp") as home:
        env = {**os.environ, "DB0_HOME": home}
        subprocess.run([DB0, "import", "-"], env=env, input=lines(10_000, 2).encode(),
                       check=True, capture_output=True)
        timed([DB0, "recall", "alpha bravo"], env, 3)
        rounds: dict[str, list[float]] = {"python -c pass": [], "db0 recall": [],
                                          "db0 remember": []}
        rng = random.Random(3)
        for i in range(args.runs):  # interleaved, so load changes hit all three alike
            rounds["python -c pass"] += timed([sys.executable, "-c", "pass"], env, 1)
            rounds["db0 recall"] += timed([DB0, "recall", *rng.choices(WORDS, k=3)], env, 1)
            rounds["db0 remember"] += timed([DB0, "remember", f"bench memory {i}"], env, 1)
        result["at_10000_memories"] = {k: summary(v) for k, v in rounds.items()}
        base = statistics.median(rounds["python -c pass"])
        result["ratio_to_python_startup"] = {
            k: round(statistics.median(v) / base, 1) for k, v in rounds.items()}
        subprocess.run([DB0, "daemon", "stop"], env=env, check=True, capture_output=True)
    result["load_average"] = os.getloadavg()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

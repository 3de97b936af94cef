"""Pack latency: `memory.pack` at 100,000 memories with a 2,000-token budget, server-side
(`took_ms`, query embedding included), median and p95; recall's latency in the same run as the
baseline it builds on.

The store is built as in embed_recall_speed.py (real vectors for the first memories, noisy
copies after), so pack searches both retrievers as it does for a user.

Prints one JSON document. Usage: python bench/pack_speed.py [--size 100000] [--runs 100]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from embed_recall_speed import (
    DB0,
    QUERIES,
    TAILS,
    client,
    embed_speed,
    grow,
    stop,
    summary,
)


def latencies(home: str, runs: int, budget: int) -> dict[str, Any]:
    c = client(home)
    t = time.perf_counter()
    while c.call("model.status", {}).get("state") != "ready":
        if time.perf_counter() - t > 600:
            raise SystemExit("the embedder did not get ready in 10 minutes")
        time.sleep(0.2)
    rng = random.Random(5)
    for _ in range(5):
        c.call("memory.pack", {"query": rng.choice(QUERIES), "budget": budget})
    pack_ms, recall_ms, toks, items = [], [], [], []
    for i in range(runs):  # interleaved, so load changes hit both alike
        q = f"{rng.choice(QUERIES)} {rng.choice(TAILS)} {i}"
        res = c.call("memory.pack", {"query": q, "budget": budget, "format": "json"})
        pack_ms.append(res["took_ms"])
        toks.append(res["tokens"])
        items.append(len(res["items"]))
        assert res["tokens"] <= budget
        recall_ms.append(c.call("memory.recall", {"query": q + " again", "k": 10})["took_ms"])
    st = c.call("daemon.status", {})
    c.close()
    return {"memories": st["memories"], "budget": budget, "pack": summary(pack_ms),
            "recall_k10": summary(recall_ms), "median_tokens": sorted(toks)[len(toks) // 2],
            "median_items": sorted(items)[len(items) // 2]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--budget", type=int, default=2000)
    ap.add_argument("--models", help="a models folder to copy instead of installing")
    args = ap.parse_args()
    out: dict[str, Any] = {"cpus": os.cpu_count(), "target_pack_median_ms": 50}
    with tempfile.TemporaryDirectory(prefix="db0p", dir="/tmp") as home:
        env = {**os.environ, "DB0_HOME": home}
        if args.models:
            shutil.copytree(args.models, Path(home) / "data" / "models")
        subprocess.run([DB0, "model", "install"], env=env, check=True, capture_output=True)
        try:
            embed_speed(home, 500)
            stop(home)
            grow(home, args.size, seed=args.size)
            out.update(latencies(home, args.runs, args.budget))
        finally:
            stop(home)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

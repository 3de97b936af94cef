"""What pseudo-relevance feedback (store/search.py, `[recall] feedback`) adds to a recall, in
process, on a DIY home (bench/diy: one agent's memories per `agent` scope).

Each DIY question is asked in its agent's scope through `store.search.recall`, with the query
vector given (embedded beforehand by the home's model, so its cost is left out) and the vector
index the daemon keeps (a copy of the home's index folder), without feedback and with it,
alternated `--rounds` times. Prints the median CPU per recall and the CPU per recall of the
steps feedback adds to, for each pass. The first pass of each kind warms the document-count
cache (search._doc_freq); compare the later ones.

Usage: python bench/feedback_cost.py --home DB0_HOME [--agents N] [--queries 80] [--rounds 3]
(--agents: the home holds agents 0..N-1, e.g. a 300k home cut to 334 agents.)
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from diy.workload import Workload

from db0.daemon.models.embedder import Embedder
from db0.store import search
from db0.store.context import Context
from db0.store.core import Store
from db0.store.vecindex import VecIndex

STEPS = ("keyword_candidates", "keyword_scores", "_fill_scores", "neighbours", "feedback_words",
         "_docs_with")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", required=True, type=Path)
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=80)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    data = args.home / "data"
    models = json.loads((data / "models" / "models.json").read_text())
    model = data / "models" / f"{models['current']}.gguf"
    store = Store.open(data / "db0.sqlite3", readonly=True)
    mid = int(store.conn.execute("SELECT model_id FROM embed_models WHERE name=?",
                                 (models["current"],)).fetchone()[0])
    spent: dict[str, float] = {}

    def timed(name: str) -> None:
        fn = getattr(search, name)

        @functools.wraps(fn)
        def wrapper(*a: Any, **kw: Any) -> Any:
            c = time.thread_time()
            try:
                return fn(*a, **kw)
            finally:
                spent[name] = spent.get(name, 0.0) + time.thread_time() - c
        setattr(search, name, wrapper)

    for name in STEPS:
        timed(name)
    with tempfile.TemporaryDirectory(prefix="db0fb") as tmp:
        folder = Path(tmp) / "vectors"
        shutil.copytree(data / "vectors" / f"model-{mid}", folder)
        index = VecIndex.open(store, folder, mid, 384)
        emb = Embedder(model, 1)
        qs = Workload(1000, 300).queries(args.queries, agents=args.agents)
        vecs = {q: np.asarray(emb.embed([q])[0], dtype=np.float32) for _, q in qs}
        emb.close()
        for _ in range(args.rounds):
            for feedback in (False, True):
                spent.clear()
                cpu = []
                for agent, q in qs:
                    c = time.thread_time()
                    search.recall(store, Context("root", agent), q, 10, feedback=feedback,
                                  qvec=search.QueryVector(mid, vecs[q], index))
                    cpu.append((time.thread_time() - c) * 1000)
                steps = {k: round(v * 1000 / len(qs), 2) for k, v in spent.items()}
                print(f"feedback {'on ' if feedback else 'off'}: {statistics.median(cpu):.2f} ms "
                      f"CPU median per recall; steps, ms per recall: {steps}", flush=True)
        index.close()


if __name__ == "__main__":
    main()

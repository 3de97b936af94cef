"""Issue 18: LoCoMo and agentmem recall asked in process, as the daemon asks it, over kept homes.

For ranking work: `store.search.recall` is called with what the daemon gives it (the query
embedded by the home's query copy of its model, the model's noise floor, the vector index
opened from a copy of the home's index folder, `[recall] feedback`'s default, the
context's session lineage), so a change to store/search.py can be measured in seconds
without a daemon or a CLI per question. The homes are those `bench/locomo.py --keep DIR`
and `bench/agentmem.py --home DIR` built and kept; the query vectors are computed once and
kept in `--cache`. Prints the figures `bench/locomo.py` and `bench/agentmem.py` print for the
same homes (evidence recall@5/10/25 and recall@10 per category; recall@5/10, MRR and the
paraphrases' recall@10).

Usage: python bench/rank_inproc.py [--locomo DIR [--data FILE]] [--agentmem DIR]
       [--cache DIR] [--label TEXT]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import agentmem  # noqa: E402
import locomo  # noqa: E402

from db0.daemon.models.embedder import Embedder, query_copy  # noqa: E402
from db0.daemon.services.embedding import UNRELATED, _noise_floor  # noqa: E402
from db0.store import search, sessions  # noqa: E402
from db0.store.context import Context  # noqa: E402
from db0.store.core import Store  # noqa: E402
from db0.store.vecindex import VecIndex  # noqa: E402

Ask = Callable[[str, Context], list[dict[str, Any]]]


@contextmanager
def opened(home: Path, texts: list[str], cache: Path, tag: str, k: int) -> Iterator[Ask]:
    """A function that recalls `k` memories for one of `texts` (the questions, embedded
    once and cached under `tag`) in `home`'s store, as its daemon would."""
    data = home / "data"
    if not (data / "db0.sqlite3").exists() or not (data / "models" / "models.json").exists():
        raise SystemExit(f"{home}: not a kept home with a model; build it with "
                         "bench/locomo.py --keep DIR or bench/agentmem.py --home DIR")
    models = json.loads((data / "models" / "models.json").read_text())
    name = models["current"]
    store = Store.open(data / "db0.sqlite3", readonly=True)
    row = store.conn.execute("SELECT model_id, dim FROM embed_models WHERE name=?",
                             (name,)).fetchone()
    if row is None:
        raise SystemExit(f"{home}: no vectors of {name}; build it with the bench first")
    mid, dim = int(row[0]), int(row[1])
    # The copy the daemon embeds queries with (made here as the daemon makes it, if missing).
    path = Path(models["models"][name]["path"])
    query_model = query_copy(path if path.is_absolute() else data / "models" / path,
                             data / "models" / "query", list(UNRELATED))
    vecs, floor = _query_vectors(query_model, texts, cache / f"{tag}.npz")
    by_text = dict(zip(texts, vecs, strict=True))
    with tempfile.TemporaryDirectory(prefix="db0ri") as tmp:
        shutil.copytree(data / "vectors" / f"model-{mid}", Path(tmp) / "v")
        index = VecIndex.open(store, Path(tmp) / "v", mid, dim, graphs=False)
        try:
            yield lambda q, ctx: search.recall(
                store, ctx, q, k, feedback=None,
                qvec=search.QueryVector(mid, by_text[q], index, floor=floor))
        finally:
            index.close()
            store.close()


def _query_vectors(model: Path, texts: list[str], kept: Path) -> tuple[np.ndarray, float]:
    if kept.exists():
        z = np.load(kept, allow_pickle=False)
        if list(z["texts"]) == texts and str(z["model"]) == model.name:
            return z["vecs"], float(z["floor"])
    emb = Embedder(str(model), 1)
    try:
        vecs = np.asarray(emb.embed(texts), dtype=np.float32)
        floor = _noise_floor(emb)
    finally:
        emb.close()
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    kept.parent.mkdir(parents=True, exist_ok=True)
    part = kept.with_name(kept.name + ".part.npz")  # a killed run leaves no half-written cache
    np.savez(part, texts=np.asarray(texts), vecs=vecs, floor=floor, model=model.name)
    part.replace(kept)
    return vecs, floor


def ask_locomo(homes: Path, data: Path, cache: Path) -> list[dict[str, Any]]:
    rows = []
    for item in json.loads(data.read_text()):
        qs = locomo.questions(item)
        home = homes / item["sample_id"]
        with opened(home, [q["question"] for q in qs], cache, f"locomo-{item['sample_id']}",
                    max(locomo.KS)) as ask:
            user = _owner(home)  # who imported it: the login user of the bench's run
            for q in qs:
                got = [_meta(r).get("dia_id") for r in ask(q["question"], Context(user))]
                ev = set(q["evidence"])
                rows.append({"category": q["category"],
                             **{f"r@{k}": len(ev & set(got[:k])) / len(ev)
                                for k in locomo.KS}})
    return rows


def _owner(home: Path) -> str:
    store = Store.open(home / "data" / "db0.sqlite3", readonly=True)
    try:
        row = store.conn.execute("SELECT user_id FROM memories LIMIT 1").fetchone()
    finally:
        store.close()
    if row is None:
        raise SystemExit(f"{home}: no memories")
    return str(row[0])


def _meta(result: dict[str, Any]) -> dict[str, Any]:
    m = result.get("metadata") or {}
    return json.loads(m) if isinstance(m, str) else m


def ask_agentmem(home: Path, cache: Path) -> list[dict[str, Any]]:
    _mems, qs = agentmem.load_data(agentmem.DATA)
    if not (home / agentmem.IDS_FILE).exists():
        raise SystemExit(f"{home}: no {agentmem.IDS_FILE}; build the home with "
                         "bench/agentmem.py --home DIR")
    ids = json.loads((home / agentmem.IDS_FILE).read_text())["ids"]
    rows = []
    login = _owner(home)  # the user of a question that names none: who imported
    with opened(home, [q["question"] for q in qs], cache, "agentmem", agentmem.K) as ask:
        store = Store.open(home / "data" / "db0.sqlite3", readonly=True)
        try:
            for q in qs:
                c = q["context"]
                ctx = Context(str(c.get("user") or login), str(c.get("agent") or "default"),
                              c.get("session"), c.get("task"))
                lineage = sessions.lineage(store.conn, ctx.session) if ctx.session else ()
                if lineage:
                    ctx = Context(ctx.user, ctx.agent, ctx.session, ctx.task, lineage)
                rows.append(agentmem.score(q, {"results": ask(q["question"], ctx)}, ids))
        finally:
            store.close()
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--locomo", type=Path, help="the folder locomo.py --keep filled")
    ap.add_argument("--data", type=Path, default=locomo.DATA)
    ap.add_argument("--agentmem", type=Path, help="the home agentmem.py --home built")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "db0-rank-qv")
    ap.add_argument("--label", default="")
    args = ap.parse_args()
    if not args.locomo and not args.agentmem:
        ap.error("give --locomo DIR, --agentmem DIR or both")
    mean = statistics.fmean
    if args.locomo:
        rows = ask_locomo(args.locomo, args.data, args.cache)
        cats = sorted({r["category"] for r in rows})
        per = " ".join(f"{mean(r['r@10'] for r in rows if r['category'] == c):.3f}"
                       for c in cats)
        print(f"{args.label} LoCoMo r@5/10/25 "
              + " ".join(f"{mean(r[f'r@{k}'] for r in rows):.3f}" for k in locomo.KS)
              + f" | r@10 by category {cats}: {per}")
    if args.agentmem:
        rows = ask_agentmem(args.agentmem, args.cache)
        para = [r["r@10"] for r in rows if r["category"] == "paraphrase"]
        print(f"{args.label} agentmem r@5/10 {mean(r['r@5'] for r in rows):.3f} "
              f"{mean(r['r@10'] for r in rows):.3f}, MRR {mean(r['rr'] for r in rows):.3f}, "
              f"paraphrase r@10 {mean(para) if para else 0:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Issue 16's figure: `db0 recall`'s exit code on nonsense and on real questions.

The README promises exit 1 when recall finds nothing. A fresh DB0_HOME gets the default
embedding model and the agentmem memories (bench/agentmem/, loaded as bench/agentmem.py loads
them: one `db0 import --wait` per context, every memory with its real owner). Then, through the
real CLI (`db0 recall WORDS`, one process per query, no --json):

- `--n` nonsense queries, a third of each kind: random consonant strings ("kxvtrpl"), doubled
  consonant pairs like "zzqqxx", and two or three real English words that appear nowhere in
  the corpus ("giraffe tuba"). Each must exit 1 (nothing found).
- `--n` real questions from bench/agentmem/questions.jsonl, spread evenly over the list, each
  asked from its own context (DB0_USER/AGENT/SESSION/TASK). Each must exit 0.

Any other exit code is counted as an error. A nonsense query that exits 0 is re-asked with
--json to show what it matched and by which score part (bm25, vector distance), so a fault in
recall's "nothing found" rule can be traced; and every query's best similarity to the corpus
by the model itself is set beside the daemon's floor (`similarity.by_model`).

Prints one JSON document. Usage: python bench/recall_exit.py [--n 50] [--models DIR]
[--seed 16]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from agentmem import (  # noqa: E402
    DATA,
    DB0,
    INSTALLED_MODELS,
    env_of,
    load,
    load_data,
    prepare_home,
)

CONSONANTS = "bcdfghjklmnpqrstvwxz"
# Everyday English words far from a backend engineer's work notes; those the corpus holds
# (as a word, case-insensitively) are dropped at run time.
WORDS = ("giraffe", "tuba", "origami", "walrus", "marmalade", "trombone", "platypus",
         "lighthouse", "accordion", "pumpkin", "flamingo", "harpsichord", "porcupine",
         "tapestry", "avalanche", "kangaroo", "saxophone", "gargoyle", "meadow", "volcano",
         "jellyfish", "tiara", "cauliflower", "hedgehog", "xylophone", "parsnip", "lagoon",
         "chandelier", "toboggan", "mango", "octopus", "windmill", "pelican", "banjo",
         "zeppelin", "igloo", "falcon", "thimble", "cactus", "sombrero", "lantern", "oyster",
         "quilt", "raccoon", "tambourine", "gondola", "pretzel", "dandelion", "yodel",
         "bagpipe", "caterpillar", "moustache", "snorkel", "buttercup", "gazelle", "nutmeg")


def consonant_string(rng: random.Random) -> str:
    return "".join(rng.choice(CONSONANTS) for _ in range(rng.randint(5, 10)))


def doubled(rng: random.Random) -> str:
    """"zzqqxx"-like: two to four doubled consonants."""
    return "".join(rng.choice("zqxjkvw") * 2 for _ in range(rng.randint(2, 4)))


def nonsense(n: int, rng: random.Random, vocabulary: set[str]) -> list[dict[str, str]]:
    words = [w for w in WORDS if w not in vocabulary]
    out: list[dict[str, str]] = []
    seen: set[str] = set()
    kinds = ("consonants", "doubled", "words")
    while len(out) < n:
        kind = kinds[len(out) % 3]
        if kind == "consonants":
            q = consonant_string(rng)
        elif kind == "doubled":
            q = doubled(rng)
        else:
            q = " ".join(rng.sample(words, rng.randint(2, 3)))
        if q not in seen and q not in vocabulary:
            seen.add(q)
            out.append({"kind": kind, "query": q})
    return out


def recall(home: Path, ctx: dict[str, Any], query: str, json_: bool = False
           ) -> tuple[int, str, str, float]:
    args = [DB0, "recall", query, "--limit", "3", *(["--json"] if json_ else [])]
    t = time.perf_counter()
    p = subprocess.run(args, capture_output=True, text=True, timeout=120,
                       env={**env_of(home, ctx), "NO_COLOR": "1"})
    return p.returncode, p.stdout, p.stderr, (time.perf_counter() - t) * 1000


def model_similarities(fake: list[dict[str, str]], real: list[dict[str, Any]],
                       mems: list[dict[str, Any]], models: Path) -> dict[str, Any]:
    """Each query's best cosine similarity to any memory of the corpus, by the default model
    in this process (no daemon, no scopes): where an absolute cut-off would have to lie to
    tell nonsense from real questions, beside the daemon's floor (the best similarity between
    its unrelated sentences)."""
    import numpy as np

    from db0.daemon.models.embedder import Embedder
    from db0.daemon.services.embedding import UNRELATED

    gguf = next(iter(sorted(models.glob("*.gguf"))), None)
    if gguf is None or gguf.name.endswith(".rerank.gguf"):
        return {"skipped": f"no embedding model in {models}"}
    emb = Embedder(str(gguf), 2)

    def unit(texts: list[str]) -> Any:
        m = np.asarray(emb.embed(texts), dtype=np.float32)
        return m / np.linalg.norm(m, axis=1, keepdims=True)

    corpus = unit([m["content"] for m in mems])
    unrelated = unit(list(UNRELATED))
    pairs = unrelated @ unrelated.T
    np.fill_diagonal(pairs, -1.0)
    out: dict[str, Any] = {"model": gguf.stem, "daemon_floor": round(float(pairs.max()), 3)}
    for name, texts in (("nonsense", [q["query"] for q in fake]),
                        ("real", [q["question"] for q in real])):
        best = (unit(texts) @ corpus.T).max(axis=1)
        out[name] = {"min": round(float(best.min()), 3),
                     "median": round(float(np.median(best)), 3),
                     "max": round(float(best.max()), 3),
                     "above_daemon_floor": int((best > pairs.max()).sum())}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=50, help="queries of each sort")
    ap.add_argument("--models", help="a models folder to copy (default: the installed one, "
                    "else db0 model install)")
    ap.add_argument("--seed", type=int, default=16)
    args = ap.parse_args()
    mems, qs = load_data(DATA)
    rng = random.Random(args.seed)
    vocabulary = {w.lower() for m in mems for w in re.findall(r"\w+", m["content"])}
    fake = nonsense(args.n, rng, vocabulary)
    step = len(qs) / args.n
    real = [qs[int(i * step)] for i in range(min(args.n, len(qs)))]
    user_ctx = {"user": "maya", "agent": "default"}
    out: dict[str, Any] = {"target": "nonsense exit 1, real exit 0, every query",
                           "memories": len(mems), "seed": args.seed,
                           "load_average": os.getloadavg()}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="db0re", dir="/tmp") as tmp:
        home = Path(tmp)
        try:
            prepare_home(home, args.models, 0)
            t0 = time.perf_counter()
            load(home, mems)
            out["load_s"] = round(time.perf_counter() - t0, 1)
            model = json.loads(subprocess.run(
                [DB0, "model", "status", "--json"], env=env_of(home, {}), check=True,
                capture_output=True, text=True).stdout)
            out["model"] = model.get("model")
            if not model.get("model") or model.get("pending"):
                raise SystemExit(f"the home has no model or unembedded memories: {model}")
            fake_codes: dict[str, int] = {}
            fake_wrong: list[dict[str, Any]] = []
            errors: list[dict[str, Any]] = []
            by_kind: dict[str, dict[str, int]] = {}
            for q in fake:
                code, _, se, _ = recall(home, user_ctx, q["query"])
                fake_codes[str(code)] = fake_codes.get(str(code), 0) + 1
                k = by_kind.setdefault(q["kind"], {"n": 0, "exit_1": 0})
                k["n"] += 1
                k["exit_1"] += code == 1
                if code == 0:
                    _, js, _, _ = recall(home, user_ctx, q["query"], json_=True)
                    hits = json.loads(js)["results"]
                    fake_wrong.append({**q, "hits": [
                        {"score": h["score"], "parts": h.get("score_parts"),
                         "content": " ".join(h["content"].split())[:100]} for h in hits]})
                elif code != 1:
                    errors.append({**q, "exit": code, "stderr": se.strip()[-300:]})
            real_codes: dict[str, int] = {}
            real_wrong: list[dict[str, Any]] = []
            real_top: list[dict[str, Any]] = []
            for q in real:
                code, _, se, _ = recall(home, q["context"], q["question"])
                real_codes[str(code)] = real_codes.get(str(code), 0) + 1
                _, js, _, _ = recall(home, q["context"], q["question"], json_=True)
                top = (json.loads(js)["results"] or [{}])[0].get("score_parts") or {}
                real_top.append({"bm25": "bm25" in top,
                                 "similarity": round(1 - top["vector_distance"], 3)
                                 if "vector_distance" in top else None})
                if code != 0:
                    real_wrong.append({"id": q["id"], "question": q["question"], "exit": code,
                                       "stderr": se.strip()[-300:]})
        finally:
            subprocess.run([DB0, "daemon", "stop"], env=env_of(home, {}),
                           capture_output=True, check=False, timeout=120)
            shutil.rmtree(home / "data" / "models", ignore_errors=True)
    out["nonsense"] = {"n": len(fake), "exit_codes": fake_codes,
                       "exit_1": fake_codes.get("1", 0), "by_kind": by_kind,
                       "exit_0_examples": fake_wrong, "other_exit": errors}
    out["real"] = {"n": len(real), "exit_codes": real_codes, "exit_0": real_codes.get("0", 0),
                   "not_0": real_wrong}
    # Where a similarity cut-off would have to lie: the best match of each wrongly found
    # nonsense query, against the top hit of each real question (and whether a keyword
    # matched it, which a similarity cut-off does not touch).
    fake_sims = [round(1 - h["parts"]["vector_distance"], 3) for e in fake_wrong
                 for h in e["hits"][:1] if "vector_distance" in (h["parts"] or {})]
    vec_only = [t["similarity"] for t in real_top if not t["bm25"] and t["similarity"]]
    out["similarity"] = {
        "nonsense_found_top_max": max(fake_sims, default=None),
        "nonsense_found_top_min": min(fake_sims, default=None),
        "real_top_by_keyword": sum(t["bm25"] for t in real_top),
        "real_top_by_meaning_only": len(vec_only),
        "real_top_by_meaning_only_min": min(vec_only, default=None),
        "real_top_min": min((t["similarity"] for t in real_top if t["similarity"]),
                            default=None)}
    out["similarity"]["by_model"] = model_similarities(fake, real, mems, Path(
        args.models) if args.models else INSTALLED_MODELS)
    out["pass"] = (out["nonsense"]["exit_1"] == len(fake)
                   and out["real"]["exit_0"] == len(real))
    out["total_s"] = round(time.perf_counter() - started, 1)
    out["load_average_after"] = os.getloadavg()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

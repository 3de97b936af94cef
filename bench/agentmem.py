"""Recall quality on agent-style memory: evidence recall through the real CLI.

The data (bench/agentmem/, described in its README.md) is one user's memories over nine months
and five projects: preferences and identity, decisions that were later reversed (same key,
written later), git commits as `git.capture` stores them, Markdown note sections as a watched
folder stores them, coding-agent session turns, and task notes. Each question names its
evidence memories and a category (fact, paraphrase, changed, multi, temporal, commit, notes).

A fresh DB0_HOME gets the default model (copied from --models, the installed models folder by
default, or `db0 model install`), then one `db0 import --wait` per context (user, agent,
session, task: DB0_* in the environment, so every memory gets its real owner), each in time
order so that a later memory with the same key supersedes the earlier one in the store. Every
question is asked with `db0 recall --queries - --limit 10 --json` from its own context.

An evidence item is one memory id, or several when any of them answers (a decision and the
commit that made it). A question's recall@k is the fraction of its evidence items with a
memory in the top k; its reciprocal rank is 1/rank of the first evidence memory in the top 10
(0 if none). For `changed` questions the superseded versions must not come back at all:
`stale_in_top10` counts the questions where one did (it should be 0: superseded memories are
excluded from search).

Prints a table, then one JSON document (also written to bench/results/agentmem.json, or
agentmem-rerankN.json); with --json only the JSON; with --errors the missed questions too.
Usage: python bench/agentmem.py [--models DIR] [--rerank N] [--limit N] [--home DIR] [--errors]
                               [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import longprompt

HERE = Path(__file__).resolve().parent
DB0 = str(Path(sys.executable).with_name("db0"))
DATA = HERE / "agentmem"
K = 10
KS = (5, 10)
CATEGORIES = ("fact", "paraphrase", "changed", "multi", "temporal", "commit", "notes")
IDS_FILE = "agentmem-ids.json"
INSTALLED_MODELS = Path.home() / ".local" / "share" / "db0" / "models"

# Function words and question words: what a paraphrase may share with its evidence.
_STOP_WORDS = """
a about above after again against all am an and any are aren't as at be because been before
being below between both but by can can't cannot could couldn't did didn't do does doesn't
doing don't down during each few for from further had hadn't has hasn't have haven't having he
her here hers herself him himself his how i i'm if in into is isn't it it's its itself just
let's me more most mustn't my myself no nor not now of off on once only or other ought our
ours ourselves out over own same shan't she should shouldn't so some such than that that's the
their theirs them themselves then there these they this those through to too under until up
upon very was wasn't we we're were weren't what what's when where which while who whom why
will with won't would wouldn't you your yours yourself yourselves us also get got one ones
whose s t d ll re ve m
"""
STOP = set(_STOP_WORDS.split())
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")


def stem(w: str) -> str:
    """A crude suffix strip, enough to make 'deploys' and 'deployed' meet 'deploy'."""
    for suffix in ("ingly", "edly", "ing", "ed", "es", "ly", "s"):
        if len(w) > len(suffix) + 2 and w.endswith(suffix):
            return w[: -len(suffix)]
    return w


def content_words(text: str) -> set[str]:
    words = _WORD.findall(text.lower().replace("\u2019", "'"))
    return {stem(w.removesuffix("'s")) for w in words if w not in STOP}


def shared_words(q: dict[str, Any], mems: dict[str, dict[str, Any]]) -> list[str]:
    """The content words a question shares with any of its evidence memories."""
    words = content_words(q["question"])
    found: set[str] = set()
    for group in q["evidence"]:
        for e in group:
            found |= words & content_words(mems[e]["content"])
    return sorted(found)


def load_data(data: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    mems = [json.loads(x) for x in (data / "memories.jsonl").read_text("utf-8").splitlines()
            if x.strip()]
    qs = [json.loads(x) for x in (data / "questions.jsonl").read_text("utf-8").splitlines()
          if x.strip()]
    return mems, qs


def ctx_key(ctx: dict[str, Any]) -> tuple[str, str, str, str]:
    return (ctx.get("user") or "", ctx.get("agent") or "", ctx.get("session") or "",
            ctx.get("task") or "")


def env_of(home: Path, ctx: dict[str, Any]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DB0_USER", "DB0_AGENT", "DB0_SESSION", "DB0_TASK")}
    env["DB0_HOME"] = str(home)
    for name in ("user", "agent", "session", "task"):
        # The default agent is left unset, as a shell user leaves it.
        if ctx.get(name) and not (name == "agent" and ctx[name] == "default"):
            env[f"DB0_{name.upper()}"] = str(ctx[name])
    return env


def run(home: Path, ctx: dict[str, Any], args: list[str], stdin: str | None = None,
        timeout: float | None = 1800) -> str:
    p = subprocess.run([DB0, *args], input=stdin, capture_output=True, text=True,
                       timeout=timeout, env=env_of(home, ctx))
    if p.returncode != 0:
        raise SystemExit(f"db0 {' '.join(args)} exited {p.returncode}: "
                         f"{p.stderr.strip()[-2000:]}")
    return p.stdout


def when(m: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(m["created_at"])


def load(home: Path, mems: list[dict[str, Any]]) -> dict[str, Any]:
    """Import every memory into `home`, one `db0 import` per context, each in time order.

    Returns {bench id: db0 id} and what the imports reported."""
    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    for m in sorted(mems, key=when):
        groups.setdefault(ctx_key(m["context"]), []).append(m)
    ids: dict[str, str] = {}
    stored = duplicate = 0
    for n, group in enumerate(groups.values()):
        src = home / f"import-{n}.jsonl"
        src.write_text("".join(json.dumps(
            {k: m[k] for k in ("content", "scope", "key", "tags", "metadata", "created_at")
             if m.get(k) not in (None, [], {})}, ensure_ascii=False) + "\n" for m in group))
        res = json.loads(run(home, group[0]["context"],
                             ["import", str(src), "--wait", "--allow-secrets", "--json"]))
        stored += res["stored"]
        duplicate += res["duplicate"]
        for m, mid in zip(group, res["ids"], strict=True):
            ids[m["id"]] = mid
        src.unlink()
    if len(set(ids.values())) != len(ids):
        raise SystemExit("two memories of the data got one id: the data has a duplicate")
    return {"ids": ids, "stored": stored, "duplicate": duplicate, "contexts": len(groups)}


def ask(home: Path, qs: list[dict[str, Any]], rerank: int, where: str = "none"
        ) -> list[dict[str, Any]]:
    """Every question from its own context (`where`: as longprompt.wrap puts it); the
    answers in the questions' order."""
    groups: dict[tuple[str, str, str, str], list[int]] = {}
    for i, q in enumerate(qs):
        groups.setdefault(ctx_key(q["context"]), []).append(i)
    answers: list[dict[str, Any] | None] = [None] * len(qs)
    for idx in groups.values():
        stdin = "".join(json.dumps({"query": longprompt.wrap(qs[i]["question"], where)}) + "\n"
                        for i in idx)
        # No timeout: with --rerank a question can take seconds (the cross-encoder reads
        # every candidate), and the daemon is local.
        out = run(home, qs[idx[0]]["context"],
                  ["recall", "--queries", "-", "--limit", str(K), "--json",
                   *(["--rerank", str(rerank)] if rerank else [])], stdin, timeout=None)
        lines = [json.loads(x) for x in out.splitlines() if x.strip()]
        if len(lines) != len(idx):
            raise SystemExit(f"asked {len(idx)} questions, got {len(lines)} answers")
        for i, a in zip(idx, lines, strict=True):
            answers[i] = a
    return [a for a in answers if a is not None]


def score(q: dict[str, Any], a: dict[str, Any], ids: dict[str, str]) -> dict[str, Any]:
    got = [r["id"] for r in a["results"]][:K]
    groups = [{ids[e] for e in g} for g in q["evidence"]]
    row: dict[str, Any] = {"id": q["id"], "category": q["category"],
                           "took_ms": a.get("took_ms"), "rerank_ms": a.get("rerank_ms")}
    for k in KS:
        top = set(got[:k])
        row[f"r@{k}"] = sum(1 for g in groups if g & top) / len(groups)
    wanted = set().union(*groups)
    rank = next((n for n, mid in enumerate(got, 1) if mid in wanted), None)
    row["rr"] = 1 / rank if rank else 0.0
    row["rank"] = rank
    row["stale"] = sorted(s for s in q.get("stale", []) if ids[s] in got)
    return row


def means(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"n": len(rows)}
    for k in KS:
        out[f"recall@{k}"] = round(statistics.fmean(r[f"r@{k}"] for r in rows), 4) \
            if rows else None
    out["mrr"] = round(statistics.fmean(r["rr"] for r in rows), 4) if rows else None
    return out


def install_models(dest: Path, rerank: int) -> None:
    """The default model (and the reranker with --rerank) built into a throwaway home."""
    with tempfile.TemporaryDirectory(prefix="db0a", dir="/tmp") as mtmp:
        env = {**os.environ, "DB0_HOME": mtmp}
        try:
            for extra in ([], ["--reranker"]) if rerank else ([],):
                subprocess.run([DB0, "model", "install", *extra], env=env, check=True,
                               capture_output=True, timeout=1800)
        finally:
            subprocess.run([DB0, "daemon", "stop"], env=env, capture_output=True,
                           check=False, timeout=120)
        shutil.copytree(Path(mtmp) / "data" / "models", dest)


def prepare_home(home: Path, models: str | None, rerank: int) -> None:
    (home / "config").mkdir(parents=True, exist_ok=True)
    (home / "config" / "config.toml").write_text(
        f"[embed]\nthreads = {int(os.environ.get('DB0_BENCH_THREADS', '2'))}\n")
    dest = home / "data" / "models"
    src = Path(models) if models else INSTALLED_MODELS
    if (src / "models.json").exists() and (not rerank or any(src.glob("*.rerank.gguf"))):
        shutil.copytree(src, dest)
    else:
        install_models(dest, rerank)


@contextmanager
def db0_home(given: str | None) -> Iterator[Path]:
    if given:
        path = Path(given).absolute()
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="db0am", dir="/tmp") as tmp:
        yield Path(tmp)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DATA), help="the folder of memories.jsonl and "
                    "questions.jsonl")
    ap.add_argument("--models", help="a models folder to copy (default: the installed one, "
                    "else db0 model install)")
    ap.add_argument("--rerank", type=int, default=0, metavar="N",
                    help="ask with recall --rerank N (the cross-encoder rescores the top N)")
    ap.add_argument("--home", help="build the DB0_HOME here and keep it; a home built before "
                    "is reused as it is (only the questions are asked)")
    ap.add_argument("--errors", action="store_true", help="list the questions whose evidence "
                    "was missed from the top 10")
    ap.add_argument("--json", action="store_true", help="print only the JSON document")
    ap.add_argument("--limit", type=int, metavar="N", help="ask only N questions, spread "
                    "evenly over the list (so every project and category stays in)")
    ap.add_argument("--label", default="", help="a name for this run, kept in the JSON")
    ap.add_argument("--wrap", choices=longprompt.WHERE, default="none",
                    help="ask each question as a long prompt: after (before) or before (after) "
                    "a pasted test log of about 2,000 tokens (bench/longprompt.py)")
    ap.add_argument("--out")
    args = ap.parse_args()
    args.out = args.out or str(HERE / "results" / (
        f"agentmem-rerank{args.rerank}.json" if args.rerank else "agentmem.json"))
    mems, qs = load_data(Path(args.data))
    by_id = {m["id"]: m for m in mems}
    if args.limit and args.limit < len(qs):
        step = len(qs) / args.limit
        qs = [qs[int(i * step)] for i in range(args.limit)]
    started = time.perf_counter()
    with db0_home(args.home) as home:
        try:
            saved = home / IDS_FILE
            if saved.exists():
                loaded = json.loads(saved.read_text())
                if set(loaded["ids"]) != set(by_id):
                    raise SystemExit(f"{home} was built from other data: use a new --home")
                load_s = None
            else:
                if (home / "data").exists():
                    raise SystemExit(f"{home} holds a db0 home not built by this bench: "
                                     "give an empty or new folder")
                prepare_home(home, args.models, args.rerank)
                t0 = time.perf_counter()
                loaded = load(home, mems)
                load_s = round(time.perf_counter() - t0, 1)
                saved.write_text(json.dumps(loaded))
            stats = json.loads(run(home, {}, ["stats", "--json"]))
            model = json.loads(run(home, {}, ["model", "status", "--json"]))
            t0 = time.perf_counter()
            # a daemon started on a kept home loads its model in the background, and until
            # then recall is keyword-only: ask once it searches by meaning too
            while (model.get("state") in ("starting", "loading")
                   and time.perf_counter() - t0 < 300):
                time.sleep(0.2)
                model = json.loads(run(home, {}, ["model", "status", "--json"]))
            if model.get("pending"):
                raise SystemExit(f"{model['pending']} memories still wait for their vectors "
                                 "after import --wait: see db0 model status")
            t0 = time.perf_counter()
            answers = ask(home, qs, args.rerank, args.wrap)
            ask_s = round(time.perf_counter() - t0, 1)
        finally:
            subprocess.run([DB0, "daemon", "stop"], env=env_of(home, {}),
                           capture_output=True, check=False, timeout=120)
    ids = loaded["ids"]
    rows = [score(q, a, ids) for q, a in zip(qs, answers, strict=True)]
    para = [q for q in qs if q["category"] == "paraphrase"]
    overlaps = {q["id"]: ws for q in para if (ws := shared_words(q, by_id))}
    expected_superseded = sum(
        1 for m in mems if m.get("key") and any(
            o is not m and o.get("key") == m["key"] and o["scope"] == m["scope"]
            and ctx_key(o["context"]) == ctx_key(m["context"]) and when(o) > when(m)
            for o in mems))
    commit = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    result: dict[str, Any] = {
        "label": args.label, "commit": commit, "rerank": args.rerank, "wrap": args.wrap, "k": K,
        "memories": len(mems), "stored": loaded["stored"], "questions": len(qs),
        "overall": means(rows),
        "by_category": {c: means([r for r in rows if r["category"] == c]) for c in CATEGORIES},
        "recall_took_ms_median": round(statistics.median(r["took_ms"] for r in rows), 2),
        "rerank_ms_median": round(statistics.median(r["rerank_ms"] for r in rows), 2)
        if args.rerank else None,
        "model": model.get("model"),
        "stale_in_top10": sum(1 for r in rows if r["stale"]),
        "superseded": {"expected": expected_superseded,
                       "in_store": stats.get("superseded", stats)},
        "paraphrase_sharing_words": overlaps,
        "load_s": load_s, "ask_s": ask_s, "total_s": round(time.perf_counter() - started, 1),
    }
    missed = [(q, r, a) for q, r, a in zip(qs, rows, answers, strict=True) if r["r@10"] < 1]
    if not args.json:
        w = sys.stdout.write
        w(f"{'questions':<12}{'n':>5}{'recall@5':>11}{'recall@10':>11}{'MRR':>8}\n")
        for name, m in [("all", result["overall"]), *result["by_category"].items()]:
            if m["n"]:
                w(f"{name:<12}{m['n']:>5}{m['recall@5']:>11.3f}{m['recall@10']:>11.3f}"
                  f"{m['mrr']:>8.3f}\n")
        w(f"median recall {result['recall_took_ms_median']} ms; "
          f"stale versions in a top 10: {result['stale_in_top10']}; "
          f"paraphrases sharing a word with their evidence: {len(overlaps)}/{len(para)}\n")
    if args.errors:
        out = sys.stderr if args.json else sys.stdout
        for q, r, a in missed:
            out.write(f"\n{q['id']} [{q['category']}] r@10={r['r@10']:.2f}: {q['question']}\n")
            for g in q["evidence"]:
                mark = "found" if {ids[e] for e in g} & {x["id"] for x in a["results"]} \
                    else "MISSED"
                out.write(f"  {mark}: {' / '.join(g)}: "
                          f"{' '.join(by_id[g[0]]['content'].split())[:110]}\n")
            for n, x in enumerate(a["results"][:3], 1):
                out.write(f"  #{n}: {' '.join(x['content'].split())[:110]}\n")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

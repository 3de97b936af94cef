"""Recall quality on LoCoMo: evidence recall@k, through the real CLI and daemon.

For each conversation of ../shared/bench/locomo-dev.json (format in ../shared/bench/README.md):
a fresh DB0_HOME with the default model (installed once with `db0 model install`, or copied
from --models DIR), every turn imported as one memory (`db0 import --wait`: content
`Speaker: text`, plus ` [image: caption]` when the turn shares a photo, `created_at` the
session's date and time, metadata {dia_id, speaker, session}), then every question of
categories 1-4 that has evidence asked through `db0 recall --queries - -n 25 --json`.
A question's recall@k is the fraction of its evidence turns among the top k results; the
figures are the mean over questions, overall and per category (1 multi-hop, 2 temporal,
3 open-domain, 4 single-hop). Beside it, session-level recall@5: the fraction of a question's
evidence sessions among the first five distinct sessions of its ranked results, the figure
systems that index whole sessions report.

With `--rerank N` the questions are asked with `db0 recall --rerank N`: the top N results are
rescored by the cross-encoder (`db0 model install --reranker`; a --models folder must hold it).

Prints a table and one JSON document (also written to bench/results/locomo.json, or
locomo-rerankN.json with --rerank N).
Usage: python bench/locomo.py [--limit N] [--models DIR] [--rerank N] [--label TEXT]
                              [--keep DIR]
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
# ../shared beside the repository (a clone), or beside its worktrees' folder
DATA = next((p / "shared" / "bench" / "locomo-dev.json" for p in HERE.parents
             if (p / "shared" / "bench" / "locomo-dev.json").exists()),
            HERE.parent.parent / "shared" / "bench" / "locomo-dev.json")
KS = (5, 10, 25)
SESSION_K = 5  # session-level recall: evidence sessions among the first five distinct ranked
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
_EVIDENCE = re.compile(r"D:?(\d+):(\d+)")


def session_time(text: str) -> str:
    """'1:56 pm on 8 May, 2023' -> '2023-05-08T13:56:00Z'."""
    dt = datetime.strptime(text.strip(), "%I:%M %p on %d %B, %Y")
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def turns(conv: dict[str, Any]) -> list[dict[str, Any]]:
    """One import line per turn, sessions in order."""
    out = []
    n = 1
    while f"session_{n}" in conv:
        at = session_time(conv[f"session_{n}_date_time"])
        for t in conv[f"session_{n}"]:
            content = f"{t['speaker']}: {t['text']}"
            if t.get("blip_caption"):
                content += f" [image: {t['blip_caption']}]"
            out.append({"content": content, "created_at": at,
                        "metadata": {"dia_id": t["dia_id"], "speaker": t["speaker"],
                                     "session": n}})
        n += 1
    return out


def evidence(q: dict[str, Any]) -> list[str]:
    """The evidence dia_ids, normalised ('D:11:26' and 'D8:6; D9:17' occur in the data)."""
    ids: list[str] = []
    for e in q.get("evidence") or []:
        ids += [f"D{a}:{b}" for a, b in _EVIDENCE.findall(str(e))]
    return list(dict.fromkeys(ids))


def questions(item: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"question": q["question"], "category": int(q["category"]), "evidence": evidence(q)}
            for q in item["qa"] if int(q["category"]) in CATEGORIES and evidence(q)]


def run(home: Path, args: list[str], stdin: str | None = None, timeout: float = 1800) -> str:
    p = subprocess.run([DB0, *args], input=stdin, capture_output=True, text=True,
                       timeout=timeout, env={**os.environ, "DB0_HOME": str(home)})
    if p.returncode != 0:
        raise SystemExit(f"db0 {' '.join(args)} exited {p.returncode}: {p.stderr}{p.stdout}")
    return p.stdout


@contextmanager
def conversation_home(keep: str | None, sample_id: str) -> Iterator[Path]:
    if keep:
        home = Path(keep) / sample_id
        home.mkdir(parents=True, exist_ok=True)
        yield home
        return
    with tempfile.TemporaryDirectory(prefix="db0l", dir="/tmp") as tmp:
        yield Path(tmp)


def conversation(item: dict[str, Any], models: Path, rerank: int,
                 keep: str | None = None, wrap: str = "none") -> dict[str, Any]:
    qs = questions(item)
    with conversation_home(keep, item["sample_id"]) as home:
        lines = turns(item["conversation"])
        done = home / "imported.json"
        if not done.exists():
            (home / "config").mkdir(parents=True, exist_ok=True)
            (home / "config" / "config.toml").write_text(
                f"[embed]\nthreads = {int(os.environ.get('DB0_BENCH_THREADS', '2'))}\n")
            shutil.copytree(models, home / "data" / "models", dirs_exist_ok=True)
        try:
            if done.exists():  # a kept home: ask again, import nothing
                imported, import_s = json.loads(done.read_text()), 0.0
                t0 = time.perf_counter()  # once the model is loaded (else keyword-only)
                while json.loads(run(home, ["model", "status", "--json"])).get(
                        "state") in ("starting", "loading") and time.perf_counter() - t0 < 300:
                    time.sleep(0.2)
            else:
                src = home / "turns.jsonl"
                src.write_text("".join(json.dumps(t, ensure_ascii=False) + "\n"
                                       for t in lines))
                t0 = time.perf_counter()
                imported = json.loads(run(home, ["import", str(src), "--wait",
                                                 "--allow-secrets", "--json"]))
                import_s = time.perf_counter() - t0
                if keep:
                    done.write_text(json.dumps(imported))
            stdin = "".join(json.dumps({"query": longprompt.wrap(q["question"], wrap)}) + "\n"
                            for q in qs)
            t0 = time.perf_counter()
            out = run(home, ["recall", "--queries", "-", "-n", str(max(KS)), "--json",
                             *(["--rerank", str(rerank)] if rerank else [])], stdin)
            recall_s = time.perf_counter() - t0
        finally:
            subprocess.run([DB0, "daemon", "stop"], env={**os.environ, "DB0_HOME": str(home)},
                           capture_output=True, check=False, timeout=120)
    answers = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert len(answers) == len(qs), (len(answers), len(qs))
    rows = []
    for q, a in zip(qs, answers, strict=True):
        got = [r["metadata"].get("dia_id") for r in a["results"]]
        ev = set(q["evidence"])
        sessions = list(dict.fromkeys(str(d).split(":")[0] for d in got))[:SESSION_K]
        ev_sessions = {d.split(":")[0] for d in ev}
        rows.append({"category": q["category"],
                     **{f"r@{k}": len(ev & set(got[:k])) / len(ev) for k in KS},
                     "s@5": len(ev_sessions & set(sessions)) / len(ev_sessions),
                     "took_ms": a["took_ms"], "rerank_ms": a.get("rerank_ms")})
    return {"sample_id": item["sample_id"], "memories": len(lines),
            "stored": imported.get("stored"), "questions": len(qs),
            "import_wait_s": round(import_s, 1), "recall_s": round(recall_s, 1), "rows": rows}


def means(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"n": len(rows)}
    for k in KS:
        out[f"recall@{k}"] = round(statistics.fmean(r[f"r@{k}"] for r in rows), 4) if rows \
            else None
    out["session_recall@5"] = round(statistics.fmean(r["s@5"] for r in rows), 4) if rows \
        else None
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--limit", type=int, help="only the first N conversations")
    ap.add_argument("--models", help="a models folder to copy instead of installing")
    ap.add_argument("--label", default="", help="a name for this run, kept in the JSON")
    ap.add_argument("--rerank", type=int, default=0, metavar="N",
                    help="ask with recall --rerank N (the cross-encoder rescores the top N)")
    ap.add_argument("--keep", metavar="DIR", help="keep each conversation's home in DIR; a "
                    "home kept before is asked again without importing (for ranking changes)")
    ap.add_argument("--wrap", choices=longprompt.WHERE, default="none",
                    help="ask each question as a long prompt: after (before) or before (after) "
                    "a pasted test log of about 2,000 tokens (bench/longprompt.py)")
    ap.add_argument("--out")
    args = ap.parse_args()
    args.out = args.out or str(HERE / "results" / (
        f"locomo-rerank{args.rerank}.json" if args.rerank else "locomo.json"))
    items = json.loads(Path(args.data).read_text())[:args.limit]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="db0m", dir="/tmp") as mtmp:
        if args.models:
            models = Path(args.models)
        else:  # install the default model once, copy its folder into every conversation's home
            for extra in ([], ["--reranker"]) if args.rerank else ([],):
                subprocess.run([DB0, "model", "install", *extra],
                               env={**os.environ, "DB0_HOME": mtmp},
                               check=True, capture_output=True, timeout=1800)
            subprocess.run([DB0, "daemon", "stop"], env={**os.environ, "DB0_HOME": mtmp},
                           capture_output=True, check=False, timeout=120)
            models = Path(mtmp) / "data" / "models"
        convs = []
        for item in items:
            convs.append(conversation(item, models, args.rerank, args.keep, args.wrap))
            c = convs[-1]
            print(f"{c['sample_id']}: {c['memories']} turns, {c['questions']} questions, "
                  f"{means(c['rows'])}", file=sys.stderr, flush=True)
    rows = [r for c in convs for r in c["rows"]]
    commit = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    result: dict[str, Any] = {
        "label": args.label, "commit": commit, "data": Path(args.data).name,
        "rerank": args.rerank, "wrap": args.wrap,
        "conversations": [c["sample_id"] for c in convs],
        "overall": means(rows),
        "by_category": {f"{n} {name}": means([r for r in rows if r["category"] == n])
                        for n, name in CATEGORIES.items()},
        "by_conversation": {c["sample_id"]: means(c["rows"]) for c in convs},
        "recall_took_ms_median": round(statistics.median(r["took_ms"] for r in rows), 2),
        "rerank_ms_median": round(statistics.median(r["rerank_ms"] for r in rows), 2)
        if args.rerank else None,
        "import_wait_s": {c["sample_id"]: c["import_wait_s"] for c in convs},
        "total_s": round(time.perf_counter() - started, 1),
    }
    cols = [f"recall@{k}" for k in KS] + ["session_recall@5"]
    print(f"{'questions':<16}{'n':>5}" + "".join(f"{c:>18}" for c in cols))
    for name, m in [("all", result["overall"]), *result["by_category"].items()]:
        print(f"{name:<16}{m['n']:>5}" + "".join(
            f"{m[c]:>18.3f}" if m[c] is not None else f"{'-':>18}" for c in cols))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

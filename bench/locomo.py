"""Recall quality on LoCoMo: evidence recall@k, through the real CLI and daemon.

For each conversation of ../shared/bench/locomo-dev.json (format in ../shared/bench/README.md):
a fresh DB0_HOME with the default model (installed once with `db0 model install`, or copied
from --models DIR), every turn imported as one memory (`db0 import --wait`: content
`Speaker: text`, plus ` [image: caption]` when the turn shares a photo, `created_at` the
session's date and time, metadata {dia_id, speaker, session}), then every question of
categories 1-4 that has evidence asked through `db0 recall --queries - -n 25 --json`.
A question's recall@k is the fraction of its evidence turns among the top k results; the
figures are the mean over questions, overall and per category (1 multi-hop, 2 temporal,
3 open-domain, 4 single-hop).

With `--rerank N` the questions are asked with `db0 recall --rerank N`: the top N results are
rescored by the cross-encoder (`db0 model install --reranker`; a --models folder must hold it).

Prints a table and one JSON document (also written to bench/results/locomo.json, or
locomo-rerankN.json with --rerank N).
Usage: python bench/locomo.py [--limit N] [--models DIR] [--rerank N] [--label TEXT]
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
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DB0 = str(Path(sys.executable).with_name("db0"))
DATA = HERE.parent.parent / "shared" / "bench" / "locomo-dev.json"
KS = (5, 10, 25)
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


def conversation(item: dict[str, Any], models: Path, rerank: int) -> dict[str, Any]:
    qs = questions(item)
    with tempfile.TemporaryDirectory(prefix="db0l", dir="/tmp") as tmp:
        home = Path(tmp)
        (home / "config").mkdir(parents=True)
        (home / "config" / "config.toml").write_text(
            f"[embed]\nthreads = {int(os.environ.get('DB0_BENCH_THREADS', '2'))}\n")
        shutil.copytree(models, home / "data" / "models")
        try:
            lines = turns(item["conversation"])
            src = home / "turns.jsonl"
            src.write_text("".join(json.dumps(t, ensure_ascii=False) + "\n" for t in lines))
            t0 = time.perf_counter()
            imported = json.loads(run(home, ["import", str(src), "--wait", "--allow-secrets",
                                             "--json"]))
            import_s = time.perf_counter() - t0
            stdin = "".join(json.dumps({"query": q["question"]}) + "\n" for q in qs)
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
        rows.append({"category": q["category"],
                     **{f"r@{k}": len(ev & set(got[:k])) / len(ev) for k in KS},
                     "took_ms": a["took_ms"], "rerank_ms": a.get("rerank_ms")})
    return {"sample_id": item["sample_id"], "memories": len(lines),
            "stored": imported.get("stored"), "questions": len(qs),
            "import_wait_s": round(import_s, 1), "recall_s": round(recall_s, 1), "rows": rows}


def means(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"n": len(rows)}
    for k in KS:
        out[f"recall@{k}"] = round(statistics.fmean(r[f"r@{k}"] for r in rows), 4) if rows \
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
            convs.append(conversation(item, models, args.rerank))
            c = convs[-1]
            print(f"{c['sample_id']}: {c['memories']} turns, {c['questions']} questions, "
                  f"{means(c['rows'])}", file=sys.stderr, flush=True)
    rows = [r for c in convs for r in c["rows"]]
    commit = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    result: dict[str, Any] = {
        "label": args.label, "commit": commit, "data": Path(args.data).name,
        "rerank": args.rerank,
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
    print(f"{'questions':<16}{'n':>5}" + "".join(f"{'recall@' + str(k):>11}" for k in KS))
    for name, m in [("all", result["overall"]), *result["by_category"].items()]:
        print(f"{name:<16}{m['n']:>5}" + "".join(
            f"{m[f'recall@{k}']:>11.3f}" if m[f"recall@{k}"] is not None else f"{'-':>11}"
            for k in KS))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""The late-interaction stage over larger and different candidate pools, and sitting evidence,
measured in process on kept homes (issue 18).

Homes: the LoCoMo homes `bench/locomo.py --keep DIR` built (dev, and the held-out five with
--data), and the agentmem home `bench/agentmem.py --home DIR` built, each with the late
encoder installed and every memory's token vectors stored (`--prepare` does both and waits).

Phase 1 (`--ask`, through the daemon of each home): every question asked with `db0 recall -n N
--json` for N in 25, 30, 50, 100, 200 (the first stage as shipped; its retriever pools grow
with N, `max(POOL, 2N)`); the answers are kept in the home (rank_pool-answers.json).
Phase 2 (default, daemon stopped): the query's token vectors made in process by the home's
late encoder (one thread), the candidates' stored token vectors read from the home's
database, and each variant's order scored: evidence recall@5/10/25 (LoCoMo, per category) or
recall@5/10 and MRR (agentmem), plus the ceiling (evidence recall of the whole pool).

Usage: python bench/rank_pool.py --set locomo --homes DIR [--data FILE] [--prepare] [--ask]
       python bench/rank_pool.py --set agentmem --homes DIR [--prepare] [--ask]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import agentmem  # noqa: E402
import locomo  # noqa: E402

DB0 = str(Path(sys.executable).with_name("db0"))
NS = (25, 30, 50, 100, 200)
ANSWERS = "rank_pool-answers.json"


def run(env: dict[str, str], args: list[str], stdin: str | None = None) -> str:
    p = subprocess.run([DB0, *args], input=stdin, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise SystemExit(f"db0 {' '.join(args)} exited {p.returncode}: {p.stderr[-2000:]}")
    return p.stdout


def stop(env: dict[str, str]) -> None:
    subprocess.run([DB0, "daemon", "stop"], env=env, capture_output=True, check=False)


def prepare(env: dict[str, str]) -> None:
    """The late encoder installed, every memory's token vectors stored, the model loaded."""
    run(env, ["model", "install", "--late"])
    t0 = time.perf_counter()
    while json.loads(run(env, ["daemon", "status", "--json"]))["late"].get("pending") != 0:
        if time.perf_counter() - t0 > 3600:
            raise SystemExit("token vectors still pending after an hour")
        time.sleep(2)
    while json.loads(run(env, ["model", "status", "--json"])).get("state") in (
            "starting", "loading"):
        time.sleep(0.2)


def slim(r: dict[str, Any]) -> dict[str, Any]:
    p = r.get("score_parts") or {}
    return {"id": r["id"], "score": r["score"], "b": p.get("bm25_rank"),
            "v": p.get("vector_rank"), "sess": r.get("session"), "at": r["created_at"],
            "scope": r["scope"], "owner": r["owner"],
            "dia": (r.get("metadata") or {}).get("dia_id"),
            "parts": {k: p[k] for k in ("bm25", "vector_distance", "relevance", "context",
                                        "fused", "feedback") if k in p}}


def jobs(args: argparse.Namespace) -> list[tuple[Path, dict[str, Any], list[dict[str, Any]]]]:
    """(home, context, questions) per daemon to ask."""
    homes = Path(args.homes)
    if args.set == "locomo":
        return [(homes / item["sample_id"], {}, [
            {**q, "cat": locomo.CATEGORIES[q["category"]]} for q in locomo.questions(item)])
            for item in json.loads(Path(args.data).read_text())]
    _, qs = agentmem.load_data(agentmem.DATA)
    by: dict[Any, list[dict[str, Any]]] = {}
    for q in qs:
        by.setdefault(agentmem.ctx_key(q["context"]), []).append({**q, "cat": q["category"]})
    return [(homes, g[0]["context"], g) for g in by.values()]


def ask(args: argparse.Namespace) -> None:
    done: set[Path] = set()
    for home, ctx, qs in jobs(args):
        env = agentmem.env_of(home, ctx)
        try:
            if args.prepare and home not in done:
                prepare(env)
                done.add(home)
            t0 = time.perf_counter()  # the model loaded (else the first answers are keyword-only)
            while json.loads(run(env, ["model", "status", "--json"])).get("state") in (
                    "starting", "loading") and time.perf_counter() - t0 < 300:
                time.sleep(0.2)
            stdin = "".join(json.dumps({"query": q["question"]}) + "\n" for q in qs)
            per_n = {}
            for n in NS:
                out = run(env, ["recall", "--queries", "-", "-n", str(n), "--json"], stdin)
                per_n[n] = [[slim(r) for r in json.loads(x)["results"]]
                            for x in out.splitlines() if x.strip()]
        finally:
            stop(env)
        f = home / ANSWERS
        old = json.loads(f.read_text()) if f.exists() and args.set == "agentmem" else {}
        for i, q in enumerate(qs):
            old[q["question"] + "\x00" + json.dumps(ctx, sort_keys=True)] = {
                str(n): per_n[n][i] for n in NS}
        f.write_text(json.dumps(old))


class Late:
    """Query token vectors from a home's late encoder; stored doc vectors from its database."""

    def __init__(self, home: Path) -> None:
        from db0.daemon.models.lateenc import LateEncoder

        path = next((home / "data" / "models").glob("*.late.gguf"))
        self.enc = LateEncoder(path, 1)
        db = home / "data" / "db0.sqlite3"
        self.conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        self.q_ms: list[float] = []
        # neighbours as store/search.py's neighbours() finds them: adjacent live memories of
        # one scope and owner by row order, same session, within NEIGHBOUR_GAP_S
        rows = self.conn.execute(
            "SELECT rid, id, scope, owner, session_id, created_ts, "
            "(rtrim(content) LIKE '%?' OR instr(content, '? [image:') > 0) FROM memories "
            "WHERE superseded_by IS NULL AND forgotten_ts IS NULL ORDER BY rid").fetchall()
        self.nb: dict[str, list[tuple[str, float]]] = {}
        last: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        for r in rows:
            k = (r[2], r[3])
            p = last.get(k)
            if p is not None and p[4] == r[4] and abs(p[5] - r[5]) <= 3600:
                # the reply to a question gets 0.5 of it, every other pair 0.3
                self.nb.setdefault(r[1], []).append((p[1], 0.5 if p[6] else 0.3))
                self.nb.setdefault(p[1], []).append((r[1], 0.3))
            last[k] = r
        self.load_ms: list[float] = []
        self.sim_ms: list[float] = []

    def query(self, text: str) -> Any:
        t0 = time.process_time()
        q = self.enc.query(text)
        self.q_ms.append((time.process_time() - t0) * 1000)
        return q

    def docs(self, ids: list[str]) -> dict[str, Any]:
        from db0.store import lateint

        out = {}
        for i in range(0, len(ids), 500):
            part = ids[i:i + 500]
            marks = ",".join("?" * len(part))
            for mid, dim, blob in self.conn.execute(
                    f"SELECT m.id, l.dim, l.vectors FROM memories m JOIN late_vectors l "
                    f"ON l.rid = m.rid AND l.content_hash = m.content_hash "
                    f"WHERE m.id IN ({marks})", part):
                out[str(mid)] = lateint.unpack(bytes(blob), int(dim))
        return out


def rrf(first: list[str], late: dict[str, float], r: float = 10.0) -> list[str]:
    """Reciprocal-rank fusion of the first-stage order with the MaxSim order of `first`."""
    lo = sorted(first, key=lambda i: -late.get(i, -1e9))
    lr = {x: n for n, x in enumerate(lo)}
    return sorted(first, key=lambda x: -(1 / (r + first.index(x)) + 1 / (r + lr[x])))


def sitting(c: dict[str, Any]) -> tuple[Any, ...]:
    """Memories of one sitting: same scope, owner, session and hour of writing."""
    return (c["scope"], c["owner"], c["sess"], c["at"][:13])


def variants(ans: dict[str, list[dict[str, Any]]], late: dict[str, float],
             late_ctx: dict[str, float]) -> dict[str, list[str]]:
    """Each variant's ranked ids."""
    out: dict[str, list[str]] = {}
    for n in (30, 100):
        c = ans[str(n)][:n]
        head = [x["id"] for x in c]
        out[f"late-ctx-rrf{n}"] = rrf(head, late_ctx)
    a25 = [c["id"] for c in ans["25"]]
    out["default"] = a25
    # the first stage alone with larger retriever pools (k = 50, 100: pools 100, 200)
    out["first-pool100"] = [c["id"] for c in ans["50"]]
    out["first-pool200"] = [c["id"] for c in ans["100"]]
    for n in (30, 50, 100):
        head = [c["id"] for c in ans[str(n)]][:n]
        out[f"late-rrf{n}"] = rrf(head, late)
        out[f"late-only{n}"] = sorted(head, key=lambda i: -late.get(i, -1e9))
    # the union of the keyword and dense top 50 (pool 50 each), in first-stage order
    a200 = ans["200"]
    union = [c["id"] for c in a200 if (c["b"] or 999) <= 50 or (c["v"] or 999) <= 50]
    out["late-rrf-union"] = rrf(union, late)
    out["late-only-union"] = sorted(union, key=lambda i: -late.get(i, -1e9))
    # a100 top 30 under pool 100 (what late top 30 with k=50 would see)
    # first-stage top 30 re-ordered, then the union's MaxSim best that are not in it appended
    head = [c["id"] for c in ans["30"]][:30]
    out["late-rrf30+union-tail"] = rrf(head, late) + [
        x for x in out["late-only-union"] if x not in set(head)]
    # late scores normalised into the first-stage score: s1/max1 + ms/max_ms (score fusion)
    for n in (30, 100):
        c = ans[str(n)][:n]
        if c:
            m1 = max(x["score"] for x in c) or 1.0
            lm = [late.get(x["id"], 0.0) for x in c]
            ml = max(lm) or 1.0
            out[f"late-sum{n}"] = [x["id"] for x, _ in sorted(
                zip(c, lm, strict=True), key=lambda t: -(t[0]["score"] / m1 + t[1] / ml))]
        else:
            out[f"late-sum{n}"] = []
    # sitting evidence: each memory's score plus the best score of another memory of its
    # sitting among the candidates, times w (a turn borrows its conversation's match)
    for w in (0.2, 0.5):
        for src in ("25", "100"):
            out[f"sitting{w}-{src}"] = by_sitting(ans[src], w)
    # diversity across sittings in the top 10 only (MMR-like): at most 3 per sitting first
    c = ans["100"]
    count: dict[tuple[Any, ...], int] = {}
    first, rest = [], []
    for x in c:
        k = sitting(x)
        count[k] = count.get(k, 0) + 1
        (first if count[k] <= 3 else rest).append(x["id"])
    out["cap3-sitting"] = first[:10] + [i for i in c_ids(c) if i not in set(first[:10])]
    out["pool25"] = a25
    out["pool100"] = [c["id"] for c in ans["100"]]
    out["pool200"] = [c["id"] for c in a200]
    out["union"] = union
    return out


def by_sitting(c: list[dict[str, Any]], w: float) -> list[str]:
    """Each candidate's score plus w x the best score of another candidate of its sitting."""
    scores: dict[tuple[Any, ...], list[float]] = {}
    for x in c:
        scores.setdefault(sitting(x), []).append(x["score"])

    def s(x: dict[str, Any]) -> float:
        others = sorted(scores[sitting(x)], reverse=True)
        others.remove(x["score"])
        return float(x["score"] + w * (others[0] if others else 0.0))
    return [x["id"] for x in sorted(c, key=lambda x: -s(x))]


def c_ids(c: list[dict[str, Any]]) -> list[str]:
    return [x["id"] for x in c]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", choices=("locomo", "agentmem"), required=True)
    ap.add_argument("--homes", required=True)
    ap.add_argument("--data", default="/work/shared/bench/locomo-dev.json")
    ap.add_argument("--prepare", action="store_true")
    ap.add_argument("--ask", action="store_true")
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.ask:
        ask(args)
    cpu0, wall0, load0 = time.process_time(), time.perf_counter(), os.getloadavg()
    rows: list[tuple[str, dict[str, dict[str, float]]]] = []
    ids_map = json.loads((Path(args.homes) / agentmem.IDS_FILE).read_text())["ids"] \
        if args.set == "agentmem" else {}
    lates: dict[Path, Late] = {}
    for home, ctx, qs in jobs(args):
        answers = json.loads((home / ANSWERS).read_text())
        lt = lates.get(home) or lates.setdefault(home, Late(home))
        for q in qs:
            ans = answers[q["question"] + "\x00" + json.dumps(ctx, sort_keys=True)]
            by_id = {c["id"]: c for n in NS for c in ans[str(n)]}
            qv = lt.query(q["question"])
            need = set(by_id) | {n for i in by_id for n, _ in lt.nb.get(i, [])}
            docs = lt.docs(sorted(need))
            from db0.store import lateint

            ids = list(docs)
            s = lateint.maxsim(qv, [docs[i] for i in ids])
            late = {i: float(v) for i, v in zip(ids, s, strict=True)}
            per: dict[str, dict[str, float]] = {}
            nq = len(qv)
            # MaxSim as a similarity in cosine's units (mean best cosine per query token),
            # plus the neighbours' share as the first stage adds theirs
            late_ctx = {i: late.get(i, 0.0) / nq + sum(
                w * late.get(n, 0.0) / nq for n, w in lt.nb.get(i, [])) for i in by_id}
            for name, order in variants(ans, late, late_ctx).items():
                if args.set == "locomo":
                    got = [by_id[i]["dia"] for i in order]
                    ev = set(q["evidence"])
                    ks: tuple[int, ...] = (5, 10, 25) if not name.startswith(("pool", "union")) \
                        else (25, 50, 100, 200)
                    per[name] = {f"r@{k}": len(ev & set(got[:k])) / len(ev) for k in ks}
                else:
                    groups = [{ids_map[e] for e in g} for g in q["evidence"]]
                    ks = (5, 10) if not name.startswith(("pool", "union")) else (25, 50, 100, 200)
                    per[name] = {f"r@{k}": sum(1 for g in groups if g & set(order[:k]))
                                 / len(groups) for k in ks}
                    if not name.startswith(("pool", "union")):
                        want = set().union(*groups)
                        rank = next((n for n, x in enumerate(order[:10], 1) if x in want), None)
                        per[name]["mrr"] = 1 / rank if rank else 0.0
            rows.append((q["cat"], per))
    cats = sorted({c for c, _ in rows})
    names = list(rows[0][1])
    result: dict[str, Any] = {}
    print(f"{args.set} {args.data if args.set == 'locomo' else ''}: {len(rows)} questions")
    for name in names:
        keys = list(rows[0][1][name])
        allm = {k: statistics.fmean(p[name][k] for _, p in rows) for k in keys}
        bycat = {c: statistics.fmean(p[name]["r@10"] for cc, p in rows if cc == c)
                 for c in cats} if "r@10" in keys else {}
        result[name] = {"all": allm, "r@10_by_category": bycat}
        print(f"{name:<24}" + " ".join(f"{k} {v:.3f}" for k, v in allm.items())
              + ("  | " + " ".join(f"{c[:5]} {v:.3f}" for c, v in bycat.items())
                 if bycat else ""))
    med = statistics.median
    lt0 = next(iter(lates.values()))
    result["cost"] = {"query_encode_cpu_ms_median": round(med(lt0.q_ms), 2),
                      "cpu_s": round(time.process_time() - cpu0, 1),
                      "wall_s": round(time.perf_counter() - wall0, 1),
                      "load": [load0, os.getloadavg()]}
    print(json.dumps(result["cost"]))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

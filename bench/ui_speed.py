"""Inspector latency: the inspector's API at 1,000,000 memories, server-side.

1. A fresh DB0_HOME grown to `--n` memories through the store's one write path
   (`write.prepare` + `write.remember_many`, 5,000 a transaction, the daemon stopped): user
   memories typed by hand, agent memories of three agents, session turns captured by hooks in
   2,000 sessions, git commits and watched notes, with tags from a small set and a few rare
   ones, so every filter of the memories view has something to find.
2. The daemon is started with the inspector (`db0 ui --no-open --json`), and each request is
   timed `--runs` times by the server itself (the `Server-Timing` header: routing, checks,
   queries and JSON, without the HTTP round trip), median and p95. Search goes through
   `memory.recall` as `db0 recall` does (keywords only: the home has no embedding model).

Prints one JSON document. Usage: python bench/ui_speed.py [--n 1000000] [--home DIR]
(--home keeps the grown home; a second run with the same --home skips the build).
"""

from __future__ import annotations

import argparse
import getpass
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DB0 = str(Path(sys.executable).with_name("db0"))
WORDS = ("coffee", "deploy", "postgres", "budget", "lisbon", "rust", "piano", "migration",
         "birthday", "dishwasher", "recipes", "conference", "bicycle", "tests", "peanuts",
         "rent", "hiking", "grammar", "kubernetes", "laptop", "fence", "insurance", "invoice",
         "garden", "printer", "backup", "holiday", "standup", "review", "release")
NAMES = ("Alice", "Bob", "Priya", "Marco", "Dr. Okafor", "the team", "the landlord", "Grandma")
VERBS = ("prefers", "asked about", "fixed", "scheduled", "cancelled", "wrote about", "bought")
TAGS = ("work", "home", "health", "travel", "money", "tools")
AGENTS = ("claude-code", "codex", "gemini")


# A topic word per memory from a vocabulary of 20,000 with Zipf's law (p ~ 1/rank), so the
# searches can ask for words found in about 9.5%, 1%, 0.1% and 0.01% of the memories (ranks 1,
# 10, 100, 1000); the 30 WORDS are each in about 6.5% of them.
VOCAB = [f"topic{k}" for k in range(1, 20_001)]
_CUM: list[float] = []
for _k in range(1, 20_001):
    _CUM.append((_CUM[-1] if _CUM else 0.0) + 1.0 / _k)


def sentence(rng: random.Random, i: int) -> str:
    topic = rng.choices(VOCAB, cum_weights=_CUM)[0]
    return (f"{rng.choice(NAMES)} {rng.choice(VERBS)} the {rng.choice(WORDS)} and the "
            f"{rng.choice(WORDS)} {rng.choice(('today', 'last week', 'on Tuesday', 'again'))}"
            f", about {topic} (note {i})")


def _kind(rng: random.Random, user: str, sessions: list[str]) -> tuple[Any, str, str,
                                                                    dict[str, Any]]:
    """A context, scope, op kind and metadata: typed 40%, agent 15%, captured turns 35%, git
    5%, watched notes 5%."""
    from db0.store.context import Context

    r = rng.random()
    if r < 0.40:
        return Context(user), "user", "remember", {}
    if r < 0.55:
        return Context(user, rng.choice(AGENTS)), "agent", "remember", {}
    if r < 0.90:
        agent = rng.choice(AGENTS)
        ctx = Context(user, agent, rng.choice(sessions))
        return ctx, "session", "capture", {"source": agent, "via": "hook:prompt",
                                           "agent_session": ctx.session}
    if r < 0.95:
        return Context(user), "agent", "git", {"source": "git", "repo": "/w/app"}
    return Context(user), "user", "watch", {"source": "watch", "folder": "/w/notes"}


def grow(home: Path, n: int, seed: int = 19, vectors: bool = False) -> dict[str, Any]:
    """Fill the home's database to `n` memories; what was made, and how fast. With
    `vectors`, each new memory gets a noisy copy of one of the embedded memories' vectors
    (embedding a million texts would take hours and measures nothing the search does not)."""
    os.environ["DB0_HOME"] = str(home)
    from db0.daemon.paths import get_paths
    from db0.store import write
    from db0.store.core import Store

    paths = get_paths()
    paths.db_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = Store.open(paths.db_file)
    have = int(store.conn.execute("SELECT count(*) FROM memories").fetchone()[0])
    vec: Any = None
    if vectors:
        import numpy as np

        from db0.store import vectors as vmod

        mid = int(store.conn.execute("SELECT CAST(value AS INTEGER) FROM meta "
                                     "WHERE key='embedding_active'").fetchone()[0])
        base = np.stack([vmod.from_blob(b) for (b,) in store.conn.execute(
            "SELECT vector FROM memory_vectors WHERE model_id=? LIMIT 5000", (mid,))])
        vec = (mid, base, np.random.default_rng(seed), vmod)
    user = os.environ.get("DB0_USER") or getpass.getuser()
    rng = random.Random(seed)
    started = time.perf_counter()
    i = have
    sessions = [f"s-bench-{k:04d}" for k in range(2000)]
    while i < n:
        size = min(5000, n - i)
        with store.transaction():  # 5,000 a transaction, in runs of 250 of one kind
            for k in range(0, size, 250):
                ctx, scope, kind, meta = _kind(rng, user, sessions)
                items = []
                for j in range(i + k, i + min(size, k + 250)):
                    tags = [rng.choice(TAGS)] + (["rare"] if rng.random() < 0.001 else [])
                    if scope == "session":
                        tags = ["turn", rng.choice(("user", "assistant"))]
                    items.append(write.prepare({"content": sentence(rng, j), "scope": scope,
                                                "tags": tags, "metadata": meta or None}))
                last = int(store.conn.execute("SELECT coalesce(max(rid), 0) FROM memories")
                           .fetchone()[0])
                write.remember_many(store, ctx, items, kind=kind)
                if vec is not None:
                    _add_vectors(store, vec, last)
        i += size
    took = time.perf_counter() - started
    total = int(store.conn.execute("SELECT count(*) FROM memories").fetchone()[0])
    store.close()
    return {"memories": total, "added": total - have, "build_s": round(took, 1),
            "per_s": round((total - have) / took) if total > have else None}


def _add_vectors(store: Any, vec: Any, after: int) -> None:
    mid, base, nrng, vmod = vec
    rows = store.conn.execute("SELECT rid, content_hash FROM memories WHERE rid > ?",
                              (after,)).fetchall()
    picks = base[nrng.integers(0, len(base), len(rows))]
    v = picks + nrng.normal(0, 0.02, picks.shape).astype("float32")
    v /= (v * v).sum(axis=1, keepdims=True) ** 0.5
    vmod.put(store, mid, [(int(r), str(h), vmod.to_blob(x)) for (r, h), x in zip(rows, v,
                                                                                strict=True)])


def seed_vectors(home: Path, models: Path, n: int = 2000) -> dict[str, Any]:
    """The default model in the home, and `n` memories embedded by it through the daemon (the
    vectors the grown memories copy)."""
    import shutil

    if not (home / "data" / "models").exists():
        shutil.copytree(models, home / "data" / "models")
    (home / "config").mkdir(parents=True, exist_ok=True)
    (home / "config" / "config.toml").write_text("[embed]\nthreads = 2\n")
    os.environ["DB0_HOME"] = str(home)
    from db0.daemon.client import Client

    rng = random.Random(7)
    texts = list(dict.fromkeys(sentence(rng, -k) for k in range(1, n + 1)))
    c = Client()
    t = time.perf_counter()
    res = c.call("memory.import", {"items": [{"content": x} for x in texts], "wait": True,
                                   "wait_timeout": 3600}, timeout=3700)
    c.close()
    subprocess.run([DB0, "daemon", "stop"], env={**os.environ}, capture_output=True,
                   check=False)
    return {"embedded": res["stored"], "embed_s": round(time.perf_counter() - t, 1)}


def summary(ms: list[float]) -> dict[str, float]:
    ms = sorted(ms)
    return {"median_ms": round(statistics.median(ms), 2),
            "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 2),
            "max_ms": round(ms[-1], 2), "n": len(ms)}


class Ui:
    def __init__(self, info: dict[str, Any]) -> None:
        self.port, self.token = int(info["port"]), str(info["token"])

    def get(self, path: str) -> tuple[float, dict[str, Any]]:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        c.request("GET", path, headers={"Host": f"127.0.0.1:{self.port}",
                                        "X-Db0-Token": self.token})
        r = c.getresponse()
        body = json.loads(r.read())
        c.close()
        if r.status != 200:
            raise SystemExit(f"{path}: {r.status} {body}")
        timing = r.getheader("Server-Timing") or "app;dur=nan"
        return float(timing.split("dur=")[1]), body


def _ready(ui: Ui, env: dict[str, str]) -> float:
    """Seconds until the daemon searches with the vectors of every memory (index loaded)."""
    t = time.perf_counter()
    while True:
        st = json.loads(subprocess.run([DB0, "model", "status", "--json"], env=env,
                                       capture_output=True, check=True).stdout)
        if st.get("state") == "ready" and not st.get("pending"):
            return round(time.perf_counter() - t, 1)
        if time.perf_counter() - t > 1800:
            raise SystemExit(f"the index was not ready in 30 minutes: {st}")
        time.sleep(1)


def timed(ui: Ui, path: str, runs: int) -> dict[str, Any]:
    ui.get(path)  # warm: the first read pages the data in
    ms, embed, last = [], [], {}
    for _ in range(runs):
        t, last = ui.get(path)
        ms.append(t)
        if "embed_ms" in last:
            embed.append(last["embed_ms"])
    out: dict[str, Any] = summary(ms)
    if embed:  # embedding the query, part of the time above
        out["embed_median_ms"] = round(statistics.median(embed), 2)
    if "memories" in last:
        out["rows"] = len(last["memories"])
        out["partial"] = bool(last.get("partial"))
        if last.get("search"):
            out["vector_hits"] = sum("vector_rank" in m["score_parts"]
                                     for m in last["memories"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--home", help="keep the home here (default: a temporary folder)")
    ap.add_argument("--vectors", action="store_true",
                    help="with the embedding model: every memory has a vector, and search "
                    "is hybrid (keywords and meaning), as recall is with a model installed")
    ap.add_argument("--models", default=str(Path.home() / ".local/share/db0/models"),
                    help="the models folder to copy into the home (with --vectors)")
    args = ap.parse_args()
    out: dict[str, Any] = {"cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="db0b", dir="/tmp") as tmp:
        home = Path(args.home or tmp)
        env = {**os.environ, "DB0_HOME": str(home)}
        subprocess.run([DB0, "daemon", "stop"], env=env, capture_output=True, check=False)
        if args.vectors and not (home / "data" / "db0.sqlite3").exists():
            out["seed"] = seed_vectors(home, Path(args.models))
        out["build"] = grow(home, args.n, vectors=args.vectors)
        try:
            t = time.perf_counter()
            info = json.loads(subprocess.run([DB0, "ui", "--no-open", "--json"], env=env,
                                             capture_output=True, check=True).stdout)
            out["daemon_start_s"] = round(time.perf_counter() - t, 2)
            ui = Ui(info)
            if args.vectors:
                out["index_ready_s"] = _ready(ui, env)
            _, first = ui.get("/api/memories")
            middle = first["next"] - args.n // 2
            _, sessions = ui.get("/api/sessions?limit=1")
            sid = sessions["sessions"][0]["id"] if sessions["sessions"] else "none"
            one = first["memories"][0]["id"]
            paths = {
                "memories_first_page": "/api/memories",
                "memories_page_in_the_middle": f"/api/memories?before={middle}",
                "memories_200_per_page": "/api/memories?limit=200",
                "filter_scope_agent": "/api/memories?scope=agent",
                "filter_agent_codex": "/api/memories?agent=codex",
                "filter_tag_common": "/api/memories?tag=work",
                "filter_tag_rare": "/api/memories?tag=rare",
                "filter_session_one_of_2000": f"/api/memories?session={sid}",
                "filter_source_git": "/api/memories?source=git",
                "filter_source_import_none": "/api/memories?source=import",
                "filter_state_forgotten_none": "/api/memories?state=forgotten",
                # The rarest word of a query is always scored: its share of the memories
                # sets the cost (every match is ranked).
                "search_word_in_6.5pct": "/api/memories?q=coffee+budget",
                "search_question_6.5pct": "/api/memories?q=when+did+Priya+fix+the+printer",
                "search_word_in_9.5pct": "/api/memories?q=topic1",
                "search_word_in_1pct": "/api/memories?q=printer+topic10",
                "search_word_in_0.1pct": "/api/memories?q=what+about+topic100",
                "search_word_in_0.01pct": "/api/memories?q=Alice+and+topic1000",
                "search_one_match": "/api/memories?q=note+123457",
                "search_in_scope_agent_1pct": "/api/memories?q=release+topic10&scope=agent",
                "fact_timeline": f"/api/fact?id={one}",
                "facets": "/api/facets",
                "sessions_page": "/api/sessions",
                "session_detail": f"/api/session?id={sid}",
            }
            out["server_ms"] = {name: timed(ui, p, args.runs) for name, p in paths.items()}
        finally:
            subprocess.run([DB0, "daemon", "stop"], env=env, capture_output=True, check=False)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

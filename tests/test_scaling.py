"""Work that grows with the store, found by SQLite's own counters.

The same workload, every command of the CLI that reaches the daemon run as a user runs it, is
run against two stores: a small one, and one holding ten times as many memories (the others
in other agents' scopes and in the user's), both with a vector for every memory. The daemon
traces its statements (DB0_SQL_STATS, store/sqlstats.py). A statement whose virtual machine
steps (or full-scan steps: a table walked row by row) per run grow with the store fails the
test, unless its job is to look at everything
(counts, checks, an export), listed in GROWS with why. Defects this finds: a lookup the
planner runs as a scan, a background step that walks every row after each write.

The workload is checked against the command tree (tests/test_cli_sweep.COMMANDS): a new
command must be added to it, or to NOT_RUN with a reason, or this test fails.
"""

from __future__ import annotations

import json
import random
import string
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import give_models

from tests.conftest import Db0
from tests.test_cli_sweep import COMMANDS, HELP_ONLY
from tests.test_embeddings import models_dir  # noqa: F401  (the session-wide models folder)

pytestmark = pytest.mark.slow

SMALL, FACTOR = 1_000, 10
AGENT = "scaling-agent"
QUESTION = "When does the deploy key rotate?"

# Commands the workload does not run, and why.
NOT_RUN = {
    **{p: "help only (tests/test_cli_sweep.HELP_ONLY)" for p in HELP_ONLY},
    ("daemon", "start"): "the daemon's life cycle, not a read or write of memories",
    ("daemon", "stop"): "the daemon's life cycle, not a read or write of memories",
    ("daemon", "restart"): "the daemon's life cycle, not a read or write of memories",
    ("daemon", "logs"): "reads the log file, not the store",
    ("model", "use"): "re-embeds every memory by design (a model switch)",
    ("mcp",): "a server on stdin (tests/test_mcp.py); its tools call the same methods",
    ("integrate",): "edits agents' settings files, no store work",
    ("completions", "install"): "no daemon",
    ("completions", "show"): "no daemon",
    ("daemon", "install-service"): "writes a service file, no store work",
    ("sync",): "needs a Postgres remote (tests/test_sync.py)",
    ("remote", "add"): "needs a Postgres remote (tests/test_sync.py)",
    ("remote", "remove"): "needs a Postgres remote (tests/test_sync.py)",
}

# Statements whose work is the store's size by design (a substring of the statement).
GROWS = {
    "PRAGMA quick_check": "doctor checks every page (bounded in time)",
    "SELECT scope, count(*) FROM memories": "stats: counts by scope",
    "SELECT (SELECT count(*) FROM memories INDEXED BY memories_created)": "stats: counts",
    "SELECT count(*), max(seq) FROM ops": "stats: the op log's size",
    "SELECT count(DISTINCT tag) FROM memory_tags": "stats: how many tags",
    "SELECT count(*) FROM memories INDEXED BY memories_owner WHERE superseded_by IS NULL":
        "daemon status and doctor: live memories",
    "SELECT count(*) FROM memories INDEXED BY memories_live_hash": "the embedder's progress",
    "SELECT count(*) FROM memory_vectors WHERE model_id=?": "model status: vectors made",
    "SELECT v.model_id, count(*) FROM memory_vectors": "model list: vectors per model",
    "SELECT count(*) FROM (SELECT 1 FROM memories INDEXED BY memories_owner WHERE scope=?":
        "recall's 'more than KEYWORD_SCAN?' probe: bounded by its LIMIT",
    "SELECT count(*), total(b) FROM (SELECT octet_length(content) AS b FROM memories INDEXED BY "
    "memories_owner": "recall's 'a small scope?' probe: bounded by its LIMIT (SMALL_SCOPE)",
    "FROM memories m WHERE m.rid > ? AND": "export pages through every row in rid order",
    "FROM memories m NOT INDEXED WHERE m.rid < ? AND m.rid >= ?":
        "the inspector's filtered browse walks row ids back in windows, within a time budget",
    "SELECT DISTINCT agent_id FROM sessions WHERE user_id = ?":
        "the inspector's agent facet names every agent that ever had a session",
    "'main'.'memories_fts_": "FTS5's own segment writes and merges (amortised over writes)",
    "VALUES ('optimize')": "purge merges the whole full-text index, so no copy of the text stays",
    "UPDATE injections SET text='', query=NULL WHERE": "purge reads every injection",
    "=NULL WHERE (": "purge looks for the text in every session's prompts and summary",
}
IGNORE_BELOW = 2_000  # steps per run under which a statement is too cheap to judge
# Full-scan steps per run (a table walked row by row) are judged from a lower bar: a lookup
# that scans a small table is cheap today and grows with every row added. A statement that
# ran in one store only (a path taken below a size threshold) is judged by its scan alone.
SCAN_BELOW = 200
SCAN_ALONE = SMALL // 4


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(9))


def _fill(home: Path, n: int) -> None:
    """`n` memories: a tenth in the user's scope, the rest over many agents' scopes, each
    with a unit vector from the installed model's row, so nothing waits to be embedded."""
    import getpass

    from db0.daemon.models import registry
    from db0.store import vectors, write
    from db0.store.context import Context
    from db0.store.core import Store

    info = registry.current(home / "data" / "models")
    assert info is not None
    rng = random.Random(n)
    nrng = np.random.default_rng(n)
    store = Store.open(home / "data" / "db0.sqlite3")
    try:
        with store.transaction():
            mid = vectors.model_id(store, info.name, info.sha256, info.dim)
        user = getpass.getuser()

        def give_vectors() -> None:
            """A random unit vector for every memory that has none, in the caller's
            transaction."""
            rows = store.conn.execute(
                "SELECT rid, content_hash FROM memories m WHERE NOT EXISTS (SELECT 1 FROM "
                "memory_vectors v WHERE v.rid=m.rid)").fetchall()
            v = nrng.normal(size=(len(rows), info.dim)).astype(np.float32)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            vectors.put(store, mid, [(int(r), str(h), vectors.to_blob(x))
                                     for (r, h), x in zip(rows, v, strict=True)])
        for start in range(0, n, 500):
            k = min(500, n - start)
            ctx = Context(user, agent=f"filler-{start // 500}")
            items = [write.prepare({"content": " ".join(_word(rng) for _ in range(8)),
                                    "scope": "user" if i % 10 == 0 else "agent",
                                    "tags": [f"t{i % 13}"] if i % 4 == 0 else []})
                     for i in range(k)]
            with store.transaction():
                write.remember_many(store, ctx, items)
                give_vectors()
        _history(store, user, n // 20, rng)
        with store.transaction():  # the history's own memories (captured prompts) get theirs
            give_vectors()
    finally:
        store.close()


def _history(store: Any, user: str, n: int, rng: random.Random) -> None:
    """What a store gathers beside its memories, `n` of each, as the real paths write it:
    sessions (half of them ended) with a task and a checkpoint, and agent sessions whose
    prompts were captured and given context (hook events, injections)."""
    from db0.store import capture, checkpoints, sessions
    from db0.store.context import Context

    for i in range(n):
        with store.transaction():
            ctx = Context(user, f"filler-{i % 7}")
            sid = sessions.start_session(store, ctx, label=f"filler {i}")["id"]
            sctx = Context(user, ctx.agent, sid)
            task = sessions.start_task(store, sctx)["id"]
            checkpoints.create(store, Context(user, ctx.agent, sid, task), None, {"i": i})
            if i % 2:
                sessions.end_task(store, task)
                sessions.end_session(store, sid)
            for j in range(2):
                ev = capture.Event(event_id=f"fill-{i}-{j}", agent="claude-code",
                                   event="prompt", session_id=f"fill-agent-{i}",
                                   transcript_format="claude-code", cwd=f"/work/p{i % 5}",
                                   prompt=" ".join(_word(rng) for _ in range(6)))
                capture.record(store, Context(user, "claude-code"), ev, capture.Injection(
                    "prompt", str(ev.prompt), "<memory>filler</memory>", [f"m{i}", f"m{j}"]))


class Workload:
    """Runs the workload's commands in one home, remembering which command paths ran."""

    def __init__(self, db: Db0, tmp: Path) -> None:
        self.db, self.tmp = db, tmp
        self.ran: set[tuple[str, ...]] = set()
        self.env: dict[str, str] = {"DB0_AGENT": AGENT}

    def __call__(self, words: int, *args: str, input: str | None = None) -> Any:
        self.ran.add(tuple(args[:words]))
        r = self.db.run(*args, input=input, env=self.env, check=False, timeout=300)
        assert r.code in (0, 1), f"db0 {' '.join(args)} exited {r.code}: {r.err[-400:]}"
        try:
            return json.loads(r.out)
        except ValueError:
            return r.out

    def run_all(self) -> None:
        w = self.tmp
        a = self(1, "remember", "--json", "The deploy key rotates every ninety days")["id"]
        self(1, "remember", "--json", "--key", "deploy.rotation", "Deploy keys rotate monthly")
        b = self(1, "remember", "--json", "--key", "deploy.rotation",
                 "Deploy keys rotate every thirty days now")["id"]
        tabs = self(1, "remember", "--json", "--wait", "--scope", "agent", "--tag", "style",
                    "This agent prefers tabs over spaces")["id"]
        self(1, "remember", "--json", input="a note about pipelines from stdin")
        for extra in ([], ["--scope", "agent"], ["--tag", "style"], ["--expand"]):
            self(1, "recall", "--json", *extra, QUESTION)
        self(1, "pack", "--json", QUESTION)
        self(1, "pack", "--json", "--budget", "300", "--scope", "agent", "tabs or spaces")
        self(1, "list", "--json", "--limit", "20")
        self(1, "list", "--json", "--scope", "agent", "--limit", "5")
        self(1, "show", "--json", a)
        self(1, "history", "--json", b)
        self(1, "link", "--json", a, b)
        self(1, "forget", "--json", a)
        gone = self(1, "remember", "--json", "a mistaken note with a secret in it")["id"]
        self(1, "purge", "--json", "--yes", gone)
        lines = "".join(json.dumps({"content": f"imported scaling line {i}"}) + "\n"
                        for i in range(20))
        self(1, "import", "--json", "-", input=lines)
        self(1, "export", "--json", "--agent", AGENT)
        s = self(2, "session", "start", "--json", "--label", "scaling")["session"]
        self.env["DB0_SESSION"] = s
        t = self(2, "task", "start", "--json")["task"]
        self.env["DB0_TASK"] = t
        self(1, "remember", "--json", "--scope", "session", "a session note before the mark")
        self(1, "remember", "--json", "--scope", "task", "a task note before the mark")
        c1 = self(2, "checkpoint", "create", "--json")["id"]
        self(1, "remember", "--json", "--scope", "session", "a session note after the mark")
        c2 = self(2, "checkpoint", "create", "--json")["id"]
        self(2, "checkpoint", "list", "--json")
        self(2, "checkpoint", "show", "--json", c1)
        self(2, "checkpoint", "diff", "--json", c1, c2)
        self(2, "checkpoint", "restore", "--json", c1)
        self(2, "checkpoint", "branch", "--json", c1)
        self.inspector(memory=b, session=s, task=t, checkpoint=c1, other=tabs)
        self(2, "task", "end", "--json")
        self(2, "session", "end", "--json")
        del self.env["DB0_SESSION"], self.env["DB0_TASK"]
        self(2, "session", "list", "--json", "--all")
        self(2, "task", "list", "--json", "--all")
        self(1, "spawn", "--json", "--agent", "scaling-sub", "--", "true")
        event = {"session_id": "scaling-s1", "cwd": str(w), "transcript_path": "",
                 "prompt": QUESTION, "hook_event_name": "UserPromptSubmit"}
        for ev in ("session-start", "prompt", "prompt", "stop", "session-end"):
            self(1, "hook", ev, "--agent", "claude-code", input=json.dumps(event))
        (w / "t.jsonl").write_text(
            '{"role":"user","content":"We decided to use Postgres for sync."}\n'
            '{"role":"assistant","content":"Noted: Postgres it is."}\n')
        self(1, "ingest", "--json", "-f", "messages", "--session-id", "scaling-t",
             str(w / "t.jsonl"))
        notes = w / "notes"
        notes.mkdir(exist_ok=True)
        (notes / "a.md").write_text("# Notes\n\n## Build\nUse make.\n\n## Ship\nNot Fridays.\n")
        self(2, "watch", "add", "--json", str(notes))
        time.sleep(1)
        self(2, "watch", "status", "--json")
        self(2, "watch", "list", "--json")
        self(2, "watch", "remove", "--json", str(notes))
        repo = w / "repo"
        subprocess.run(["git", "init", "-q", str(repo)], check=True)
        subprocess.run(["git", "-C", str(repo), "-c", "user.email=a@b", "-c", "user.name=a",
                        "commit", "-q", "--allow-empty", "-m", "scaling: the first commit"],
                       check=True)
        self.db.run("git", "capture", "--json", env={**self.env, "GIT_DIR": str(repo / ".git")},
                    check=True)
        self.ran.add(("git", "capture"))
        self(2, "remote", "list", "--json")
        self(2, "model", "status", "--json")
        self(2, "model", "list", "--json")
        self(2, "daemon", "status", "--json")
        self(1, "stats", "--json")
        self(1, "doctor", "--json")


    def inspector(self, **ids: str) -> None:
        """Every read of the inspector's API and the preview of every action it offers, from
        its own route tables (daemon/ui/api.py), which run queries of their own: a new route
        or action is run here without editing this (one that needs an id fails until given)."""
        import http.client
        from urllib.parse import urlencode

        from db0.daemon.ui.api import ACTIONS, GET_PARAMS

        info = self(1, "ui", "--no-open", "--json")
        port, token = int(info["port"]), str(info["token"])

        def request(method: str, path: str, body: Any = None) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            h = {"Host": f"127.0.0.1:{port}", "X-Db0-Token": token,
                 "Origin": f"http://127.0.0.1:{port}", "Content-Type": "application/json"}
            conn.request(method, path, body=None if body is None else json.dumps(body),
                         headers=h)
            resp = conn.getresponse()
            raw = resp.read()
            conn.close()
            assert resp.status == 200, (path, body, raw[:300])

        gets = {"memory": {"id": ids["memory"]}, "fact": {"id": ids["memory"]},
                "session": {"id": ids["session"]}, "checkpoint": {"id": ids["checkpoint"]},
                "memories": {"q": QUESTION}}
        for route in GET_PARAMS:
            request("GET", f"/api/{route}?{urlencode(gets.get(route, {}))}")
        request("GET", "/api/memories?" + urlencode({"agent": AGENT, "state": "all"}))
        params = {"forget": {"id": ids["memory"]},
                  "edit": {"id": ids["memory"], "content": "Deploy keys rotate weekly"},
                  "pin": {"id": ids["memory"]}, "unpin": {"id": ids["memory"]},
                  "link": {"a": ids["memory"], "b": ids["other"]},
                  "restore": {"id": ids["checkpoint"]}, "end_session": {"id": ids["session"]},
                  "end_task": {"id": ids["task"]}}
        for action in ACTIONS:
            request("POST", "/api/preview", {"action": action, "params": params[action]})
        self(1, "ui", "--stop", "--json")


def _window(before: dict[str, Any], after: dict[str, Any]
            ) -> dict[str, tuple[int, float, float]]:
    """Per statement run in between: (runs, vm steps per run, full-scan steps per run)."""
    out = {}
    for k, s in after.items():
        was = before.get(k, {})
        runs = s["runs"] - was.get("runs", 0)
        if runs > 0:
            out[k] = (runs, (s["vm_steps"] - was.get("vm_steps", 0)) / runs,
                      (s["fullscan_steps"] - was.get("fullscan_steps", 0)) / runs)
    return out


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def _plant_uniform_stats(db_path: Path) -> None:
    """Planner statistics as `PRAGMA optimize` takes them from a young store: every table
    analysed at 100 rows, all holding one value in every indexed column (one user, one
    agent, one session), so each index looks useless. Such statistics stay until a table has
    grown tenfold; a query that is fast only while they are right is a scan waiting."""
    import apsw

    conn = apsw.Connection(str(db_path))
    try:
        with conn:
            conn.execute("ANALYZE")
            rows = conn.execute("SELECT tbl, idx, stat FROM sqlite_stat1").fetchall()
            conn.execute("DELETE FROM sqlite_stat1")
            for tbl, idx, stat in rows:
                cols = len(str(stat).split()) - 1
                planted = " ".join(["100"] * (1 + cols)) if idx else "100"
                conn.execute("INSERT INTO sqlite_stat1 VALUES (?,?,?)", (tbl, idx, planted))
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name='sqlite_stat4'").fetchall():
                conn.execute("DELETE FROM sqlite_stat4")
    finally:
        conn.close()


def _measure(home: Path, models: Path, n: int, planted: bool = False
             ) -> tuple[dict[str, tuple[int, float, float]], set[tuple[str, ...]]]:
    give_models(home, models)
    _fill(home, n)
    stats = home / "sql-stats.json"
    db = Db0(home, {"DB0_SQL_STATS": str(stats)})
    try:
        # A first start looks at every memory for work (nothing waits: every one has its
        # vector) and, stopped with nothing waiting, leaves the mark that spares the next
        # start that look: the workload runs on the daemon as it is from then on.
        mark = home / "data" / "vectors" / "drained"
        for first in (True, False):
            db.run("daemon", "start")
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                e = db.json("daemon", "status")["embedder"]
                if e.get("state") == "ready" and e.get("pending") == 0:
                    break
                time.sleep(0.3)
            if first:
                db.stop()
                assert mark.exists()
                if planted:
                    _plant_uniform_stats(home / "data" / "db0.sqlite3")
        assert not mark.exists()  # taken by the second start, which trusted it
        time.sleep(1.5)  # past the stats file's next write
        before = _read(stats)
        work = Workload(db, home)
        work.run_all()
        time.sleep(2)  # what the writes set off in the background (the embedder)
    finally:
        db.stop()
    return _window(before, _read(stats)), work.ran


def _grown(small: dict[str, tuple[int, float, float]], big: dict[str, tuple[int, float, float]]
           ) -> list[str]:
    grew = []
    for k in sorted(set(small) | set(big)):
        if any(g in k for g in GROWS):
            continue
        if k not in small or k not in big:
            name, (runs, _, scan) = ("large", big[k]) if k in big else ("small", small[k])
            if scan >= SCAN_ALONE:
                grew.append(f"{scan:,.0f} full-scan steps a run in the {name} store only "
                            f"({runs} runs): {k[:300]}")
            continue
        (n0, steps0, scan0), (n1, steps1, scan1) = small[k], big[k]
        if steps1 >= IGNORE_BELOW and steps1 > 3 * steps0 + IGNORE_BELOW:
            grew.append(f"{steps0:,.0f} -> {steps1:,.0f} steps a run ({n0} / {n1} runs): "
                        f"{k[:300]}")
        elif scan1 >= SCAN_BELOW and scan1 > 3 * scan0 + SCAN_BELOW:
            grew.append(f"{scan0:,.0f} -> {scan1:,.0f} full-scan steps a run ({n0} / {n1} "
                        f"runs): {k[:300]}")
    return grew


def test_no_statement_grows_with_the_store(models_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    """The large store's daemon starts on a young store's planner statistics
    (_plant_uniform_stats), which made most lookups scans while the daemon used them."""
    small, ran = _measure(tmp_path / "s", models_dir, SMALL)
    big, _ = _measure(tmp_path / "b", models_dir, SMALL * FACTOR, planted=True)
    grew = _grown(small, big)
    assert not grew, "statements whose cost grows with the store:\n" + "\n".join(grew)
    # The workload covers the command tree: a new command joins it or NOT_RUN.
    paths = {p for p, _ in COMMANDS}
    missing = sorted(p for p in paths if p not in ran and p not in NOT_RUN)
    assert not missing, f"commands the workload does not run: {missing}"
    assert not (set(NOT_RUN) - paths), "NOT_RUN names a command that is gone"


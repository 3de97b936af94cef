"""The inspector's read-only queries: what its views need beyond the RPC methods.

- `memories_page`: one user's memories, newest written first, filtered by scope, agent,
  session, task, tag, source and state, a keyset page at a time (`rid < cursor`, never
  OFFSET). Filters without an index of their own are read in windows of row ids, newest
  first, for at most a time budget: a page whose filter matches rarely comes back partial with
  the cursor to go on from, so no request scans a million rows at once.
- `sources`: where each memory came from (typed, hook capture, git, watched folder, import, or
  sync from another device), read from its metadata and the first op of its log.
- `origins`: who wrote each op of a fact's history and on which device (a pulled op names the
  remote it came from).
- sessions: a keyset page of sessions, and one session with its agent sessions, turns, what
  the hooks injected at each prompt, what was extracted, its checkpoints and its branch tree.
- previews: what an action will change, before it is sent.

Everything here reads; nothing writes (changes go through the dispatcher, in `api.py`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from db0.store import db as dbmod
from db0.store.checkpoints import changed_since
from db0.store.context import live_sql
from db0.store.core import STATE_COLUMNS, Store
from db0.store.memories import now_iso, to_public

SOURCES = ("typed", "capture", "git", "watch", "import", "sync")
STATES = ("live", "all", "superseded", "forgotten", "expired")
FIRST_WINDOW = 2_000  # row ids read by a page's first step (then sized to the time left)
MAX_WINDOW = 500_000
BUDGET_S = 0.04  # a page stops reading after about this long and says where to go on
MAX_TURNS = 500
MAX_SPAN = 50_000  # row ids read around a session's turns for what was extracted from them

_COLS = ", ".join(f"m.{c}" for c in STATE_COLUMNS)

# The first op of a memory says how it was made; a few front doors also mark the metadata.
SOURCE_SQL = """coalesce(CASE
  WHEN json_extract(m.metadata, '$.source') IN ('git', 'watch')
    THEN json_extract(m.metadata, '$.source')
  WHEN json_extract(m.metadata, '$.via') IS NOT NULL THEN 'capture'
  ELSE (SELECT CASE WHEN o.device_id != ? THEN 'sync' WHEN o.kind = 'import' THEN 'import'
                    WHEN o.kind IN ('git', 'watch', 'capture') THEN o.kind ELSE 'typed' END
        FROM ops o WHERE o.memory_id = m.id ORDER BY o.seq LIMIT 1)
END, 'typed')"""


@dataclass(frozen=True)
class Browse:
    """What the memories view filters on (None: anything)."""

    scope: str | None = None
    agent: str | None = None
    session: str | None = None
    task: str | None = None
    tag: str | None = None
    source: str | None = None
    state: str = "live"
    as_of: float | None = None  # with state "live": live at this time


def _state_sql(state: str, now: float, as_of: float | None) -> tuple[str, list[Any]]:
    if state == "live":
        return live_sql("m", as_of, now)
    if state == "superseded":
        return "m.superseded_by IS NOT NULL", []
    if state == "forgotten":
        return "m.forgotten_ts IS NOT NULL", []
    if state == "expired":
        return "m.expires_ts IS NOT NULL AND m.expires_ts <= ?", [now]
    return "1", []


def _where(user: str, f: Browse, device: str, now: float) -> tuple[str, list[Any]]:
    """The filter as SQL, and its arguments."""
    parts, args = ["m.user_id = ?"], [user]
    for col, value in (("scope", f.scope), ("agent_id", f.agent), ("session_id", f.session),
                       ("task_id", f.task)):
        if value is not None:
            parts.append(f"m.{col} = ?")
            args.append(value)
    sql, sargs = _state_sql(f.state, now, f.as_of)
    parts.append(sql)
    args += sargs
    if f.source is not None:
        parts.append(f"{SOURCE_SQL} = ?")
        args += [device, f.source]
    return " AND ".join(parts), args


def memories_page(store: Store, user: str, f: Browse, before: int | None, limit: int,
                  budget_s: float = BUDGET_S) -> dict[str, Any]:
    """A page of memories, newest written first: {memories, next, partial, took_ms}.
    `next` is the cursor for the following page (None at the end); `partial` says the time
    budget ran out before the page filled (go on from `next`). Each step reads a window of
    row ids sized from the last step's speed to fit the time left, so a filter costs about
    the budget at most, however rarely it matches."""
    now = time.time()
    where, args = _where(user, f, store.device_id, now)
    top = int(dbmod.scalar(store.conn, "SELECT coalesce(max(rid), 0) FROM memories")) + 1
    hi = min(before, top) if before else top
    window = FIRST_WINDOW
    started = time.perf_counter()
    rows: list[Any] = []
    partial = False
    while hi > 1 and len(rows) < limit:
        lo = max(1, hi - window)
        step = time.perf_counter()
        # NOT INDEXED: walk the row ids backwards (a partial index on scope and owner would
        # make the planner sort every match first: a million for a busy user).
        if f.tag is None:
            sql = (f"SELECT m.rid, {_COLS} FROM memories m NOT INDEXED WHERE m.rid < ? AND "
                   f"m.rid >= ? AND {where} ORDER BY m.rid DESC LIMIT ?")
            step_args = [hi, lo, *args, limit - len(rows)]
        else:  # the tag's own index, (tag, rid), walked backwards
            sql = (f"SELECT m.rid, {_COLS} FROM memory_tags t JOIN memories m NOT INDEXED "
                   f"ON m.rid = t.rid WHERE t.tag = ? AND t.rid < ? AND t.rid >= ? AND "
                   f"{where} ORDER BY t.rid DESC LIMIT ?")
            step_args = [f.tag, hi, lo, *args, limit - len(rows)]
        rows += store.conn.execute(sql, step_args).fetchall()
        if len(rows) >= limit:
            hi = int(rows[-1][0])
            break
        rate = (hi - lo) / max(time.perf_counter() - step, 1e-5)  # row ids per second
        hi = lo
        left = budget_s - (time.perf_counter() - started)
        if left <= 0 and hi > 1:
            partial = True
            break
        window = int(min(MAX_WINDOW, max(FIRST_WINDOW, rate * left * 0.5)))
    items = [to_public(dict(zip(STATE_COLUMNS, r[1:], strict=True))) for r in rows]
    src = sources(store, [i["id"] for i in items])
    for i in items:
        i["source"] = src.get(i["id"], {"source": "typed"})
    more = hi > 1 and (partial or len(rows) >= limit)
    return {"memories": items, "next": hi if more else None, "partial": partial,
            "took_ms": round((time.perf_counter() - started) * 1000, 3)}


def sources(store: Store, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Where each memory came from: {source, agent?, via?, remote?, device?}."""
    ids = list(dict.fromkeys(ids))
    if not ids:
        return {}
    out: dict[str, dict[str, Any]] = {}
    meta = {str(i): (s, v) for i, s, v in store.conn.execute(
        "SELECT id, json_extract(metadata, '$.source'), json_extract(metadata, '$.via') "
        "FROM memories WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(ids),))}
    first = {str(mid): (kind, dev, remote) for mid, kind, dev, remote in store.conn.execute(
        "SELECT o.memory_id, o.kind, o.device_id, s.remote FROM ops o "
        "LEFT JOIN sync_origin s ON s.op_id = o.op_id WHERE o.seq IN (SELECT "
        "(SELECT min(seq) FROM ops WHERE memory_id = j.value) FROM json_each(?) j)",
        (json.dumps(ids),))}
    for mid in ids:
        msrc, via = meta.get(mid, (None, None))
        kind, dev, remote = first.get(mid, (None, None, None))
        item: dict[str, Any]
        if msrc in ("git", "watch"):
            item = {"source": msrc}
        elif via is not None:
            item = {"source": "capture", "agent": msrc, "via": via}
        elif dev is not None and dev != store.device_id:
            item = {"source": "sync", "device": dev}
            if remote:
                item["remote"] = remote
        elif kind == "import":
            item = {"source": "import"}
        elif kind in ("git", "watch", "capture"):
            item = {"source": kind}
        else:
            item = {"source": "typed"}
        out[mid] = item
    return out


# -- a fact's life ----------------------------------------------------------------------------

_WHO = {"remember": "typed (CLI, MCP or db0 ui)", "import": "import", "capture": "hook capture",
        "git": "git capture", "watch": "watched folder", "supersede": "a newer version",
        "forget": "forget (CLI, MCP or db0 ui)", "expire": "expiry (ttl, or its session or "
        "task ended)", "restore": "checkpoint restore", "rollback": "checkpoint restore",
        "link": "link", "purge": "purge"}


def origins(store: Store, seqs: list[int]) -> dict[int, dict[str, Any]]:
    """For each op: who wrote it and on which device (`this device` or its id; a pulled op
    names its remote)."""
    if not seqs:
        return {}
    out: dict[int, dict[str, Any]] = {}
    for seq, kind, dev, remote, payload in store.conn.execute(
            "SELECT o.seq, o.kind, o.device_id, s.remote, o.payload FROM ops o "
            "LEFT JOIN sync_origin s ON s.op_id = o.op_id "
            "WHERE o.seq IN (SELECT value FROM json_each(?))", (json.dumps(seqs),)):
        who = _WHO.get(str(kind), str(kind))
        meta: dict[str, Any] = {}
        try:
            state = json.loads(str(payload)).get("state") or {}
            raw = state.get("metadata")
            meta = json.loads(raw) if isinstance(raw, str) else dict(raw or {})
        except (ValueError, TypeError, AttributeError):
            pass
        if kind == "capture" and meta.get("via"):
            who = f"hook capture ({meta.get('source')}, {meta['via']})"
        item: dict[str, Any] = {"who": who, "device": "this device" if dev == store.device_id
                                else str(dev)}
        if remote or dev != store.device_id:
            item["who"] = f"sync from {remote or 'another device'}: {who}"
            if remote:
                item["remote"] = remote
        out[int(seq)] = item
    return out


def current_at(versions: list[dict[str, Any]], at: float) -> str | None:
    """The version that was the fact's live one at time `at` (None: none was)."""
    from db0.store.memories import parse_time

    def ts(v: Any) -> float | None:
        return parse_time(v)[1] if v else None

    for v in versions:
        made = ts(v["created_at"]) or 0.0
        gone = [t for t in (ts(v["superseded_at"]), ts(v["forgotten_at"]), ts(v["expires_at"]))
                if t is not None]
        if made <= at and all(t > at for t in gone):
            return str(v["id"])
    return None


def newest_with_key(store: Store, user: str, key: str) -> str | None:
    row = store.conn.execute("SELECT id FROM memories WHERE key = ? AND user_id = ? "
                             "ORDER BY rid DESC LIMIT 1", (key, user)).fetchone()
    return str(row[0]) if row else None


# -- facets for the filters -------------------------------------------------------------------

def facets(store: Store, user: str) -> dict[str, Any]:
    """Values to offer in the filters: agents, recent sessions and tasks, the first tags."""
    c = store.conn
    agents = sorted({str(a) for (a,) in c.execute(
        "SELECT DISTINCT agent_id FROM sessions WHERE user_id = ? UNION "
        "SELECT DISTINCT agent_id FROM tasks WHERE user_id = ?", (user, user))} | {"default"})
    sessions = [{"id": r[0], "label": r[1]} for r in c.execute(
        "SELECT id, label FROM sessions WHERE user_id = ? ORDER BY started_ts DESC LIMIT 50",
        (user,))]
    tasks = [{"id": r[0], "label": r[1]} for r in c.execute(
        "SELECT id, label FROM tasks WHERE user_id = ? ORDER BY started_ts DESC LIMIT 50",
        (user,))]
    # A loose index scan: one seek per distinct tag, however many memories carry each.
    tags = [str(t) for (t,) in c.execute(
        "WITH RECURSIVE t(tag) AS (SELECT min(tag) FROM memory_tags UNION ALL "
        "SELECT (SELECT min(tag) FROM memory_tags WHERE tag > t.tag) FROM t "
        "WHERE t.tag IS NOT NULL) SELECT tag FROM t WHERE tag IS NOT NULL LIMIT 200")]
    return {"agents": agents, "sessions": sessions, "tasks": tasks, "tags": tags,
            "sources": list(SOURCES), "states": list(STATES),
            "scopes": ["user", "agent", "session", "task"]}


# -- sessions ---------------------------------------------------------------------------------

def _session(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "user": row["user_id"], "agent": row["agent_id"],
            "label": row["label"], "started_at": now_iso(row["started_ts"]),
            "last_seen_at": now_iso(row["last_seen_ts"]),
            "ended_at": now_iso(row["ended_ts"]) if row["ended_ts"] else None,
            "end_reason": row["end_reason"], "parent": row["parent_session"],
            "checkpoint": row["checkpoint_id"], "summary": row["summary"]}


def sessions_page(store: Store, user: str, before: str | None, limit: int) -> dict[str, Any]:
    """Sessions newest first, a keyset page at a time (cursor: `started_ts|id`)."""
    args: list[Any] = [user]
    where = "user_id = ?"
    if before:
        ts, _, sid = before.partition("|")
        where += " AND (started_ts, id) < (?, ?)"
        args += [float(ts), sid]
    rows = dbmod.rows(store.conn, f"SELECT * FROM sessions WHERE {where} "
                      "ORDER BY started_ts DESC, id DESC LIMIT ?", [*args, limit])
    ids = [r["id"] for r in rows]
    agents: dict[str, list[dict[str, Any]]] = {}
    for a in dbmod.rows(store.conn, "SELECT agent, agent_session, session_id, cwd, turns "
                        "FROM agent_sessions WHERE session_id IN "
                        "(SELECT value FROM json_each(?))", (json.dumps(ids),)):
        agents.setdefault(a["session_id"], []).append(a)
    out = []
    for r in rows:
        s = _session(r)
        s["agent_sessions"] = [{"agent": a["agent"], "agent_session": a["agent_session"],
                                "cwd": a["cwd"], "turns": a["turns"]}
                               for a in agents.get(r["id"], [])]
        out.append(s)
    nxt = f"{rows[-1]['started_ts']!r}|{rows[-1]['id']}" if len(rows) == limit else None
    return {"sessions": out, "next": nxt}


def _tree(store: Store, sid: str) -> dict[str, Any]:
    """The branch tree the session is in: from its root, each session with its checkpoints
    and the sessions branched from them."""
    root = sid
    seen = {sid}
    for _ in range(1000):
        row = store.conn.execute("SELECT parent_session FROM sessions WHERE id = ?",
                                 (root,)).fetchone()
        if row is None or row[0] is None or row[0] in seen:
            break
        root = str(row[0])
        seen.add(root)

    def node(s: str, depth: int) -> dict[str, Any]:
        srow = dbmod.row(store.conn, "SELECT id, label, ended_ts, checkpoint_id FROM sessions "
                         "WHERE id = ?", (s,))
        cps = [{"id": c["id"], "label": c["label"], "created_at": now_iso(c["created_ts"])}
               for c in dbmod.rows(store.conn, "SELECT id, label, created_ts FROM checkpoints "
                                   "WHERE session_id = ? ORDER BY created_ts", (s,))]
        kids = [str(k) for (k,) in store.conn.execute(
            "SELECT id FROM sessions WHERE parent_session = ? ORDER BY started_ts", (s,))]
        return {"id": s, "label": srow["label"] if srow else None,
                "ended": bool(srow and srow["ended_ts"]),
                "from_checkpoint": srow["checkpoint_id"] if srow else None,
                "checkpoints": cps,
                "branches": [node(k, depth + 1) for k in kids] if depth < 20 else []}

    return node(root, 0)


def session_detail(store: Store, sid: str) -> dict[str, Any] | None:
    """One session: its agent sessions, turns, injections, extracted facts, checkpoints,
    tasks and branch tree; None when there is no such session."""
    row = dbmod.row(store.conn, "SELECT * FROM sessions WHERE id = ?", (sid,))
    if row is None:
        return None
    c = store.conn
    agents = dbmod.rows(c, "SELECT agent, agent_session, cwd, transcript_path, started_ts, "
                        "last_event_ts, summary, summary_kind, turns FROM agent_sessions "
                        "WHERE session_id = ?", (sid,))
    turn_rows = c.execute(
        f"SELECT m.rid, {_COLS} FROM memories m WHERE m.scope = 'session' AND m.owner = ? "
        "AND m.superseded_by IS NULL AND m.forgotten_ts IS NULL "
        "ORDER BY m.created_ts, m.rid LIMIT ?", (sid, MAX_TURNS + 1)).fetchall()
    more_turns = len(turn_rows) > MAX_TURNS
    turn_rows = turn_rows[:MAX_TURNS]
    turns = [to_public(dict(zip(STATE_COLUMNS, r[1:], strict=True))) for r in turn_rows]
    injections = []
    for a in agents:
        for inj in dbmod.rows(c, "SELECT event, ts, query, tokens, memory_ids, text FROM "
                              "injections WHERE agent = ? AND agent_session = ? ORDER BY ts",
                              (a["agent"], a["agent_session"])):
            ids = json.loads(inj["memory_ids"])
            injections.append({"agent": a["agent"], "event": inj["event"],
                               "at": now_iso(inj["ts"]), "query": inj["query"],
                               "tokens": inj["tokens"], "memory_ids": ids,
                               "text": inj["text"]})
    injections.sort(key=lambda i: i["at"])
    extracted: list[dict[str, Any]] = []
    cut = False
    if turn_rows:
        # What was extracted is written in the same transactions as the turns, so its row ids
        # lie among theirs (bounded, so a session spanning a whole import stays cheap).
        rids = [int(r[0]) for r in turn_rows]  # type: ignore[arg-type]
        lo = min(rids)
        hi = min(max(rids) + 1000, lo + MAX_SPAN)
        cut = max(rids) + 1000 > hi
        extracted = [to_public(dict(zip(STATE_COLUMNS, r, strict=True))) for r in c.execute(
            f"SELECT {_COLS} FROM memories m NOT INDEXED WHERE m.rid BETWEEN ? AND ? AND "
            "m.session_id = ? AND m.scope != 'session' ORDER BY m.rid LIMIT 500",
            (lo, hi, sid))]
    checkpoints = [{"id": r["id"], "label": r["label"], "task": r["task_id"],
                    "created_at": now_iso(r["created_ts"]), "op_seq": r["op_seq"],
                    "has_state": r["state"] is not None}
                   for r in dbmod.rows(c, "SELECT * FROM checkpoints WHERE session_id = ? "
                                       "ORDER BY created_ts", (sid,))]
    tasks = [{"id": t["id"], "label": t["label"], "started_at": now_iso(t["started_ts"]),
              "ended_at": now_iso(t["ended_ts"]) if t["ended_ts"] else None}
             for t in dbmod.rows(c, "SELECT * FROM tasks WHERE session_id = ? "
                                 "ORDER BY started_ts", (sid,))]
    return {
        "session": _session(row),
        "agent_sessions": [{**a, "started_at": now_iso(a.pop("started_ts")),
                            "last_event_at": now_iso(a.pop("last_event_ts"))} for a in agents],
        "turns": turns, "more_turns": more_turns, "injections": injections,
        "extracted": extracted, "extracted_partial": cut, "checkpoints": checkpoints,
        "tasks": tasks,
        "tree": _tree(store, sid),
    }


def contents(store: Store, ids: list[str]) -> dict[str, str]:
    """The text of some memories (what an injection gave), by id."""
    if not ids:
        return {}
    return {str(i): str(t) for i, t in store.conn.execute(
        "SELECT id, content FROM memories WHERE id IN (SELECT value FROM json_each(?))",
        (json.dumps(ids[:1000]),))}


# -- what an action will change ---------------------------------------------------------------

def live_count(store: Store, scope: str, owner: str) -> int:
    return int(dbmod.scalar(
        store.conn, "SELECT count(*) FROM memories WHERE scope = ? AND owner = ? AND "
        "superseded_by IS NULL AND forgotten_ts IS NULL AND (expires_ts IS NULL OR "
        "expires_ts > ?)", (scope, owner, time.time())))


def restore_plan(store: Store, cp: dict[str, Any]) -> dict[str, Any]:
    """What restoring a checkpoint will do: the memories of its session and task changed
    since, each to be put back ("restore") or, if written after it, forgotten ("rollback")."""
    changed = changed_since(store, cp["session"], cp["task"], cp["op_seq"], limit=1000)
    plan = []
    for mid in changed:
        then = store.conn.execute(
            "SELECT 1 FROM ops WHERE memory_id = ? AND seq <= ? AND "
            "json_extract(payload, '$.state') IS NOT NULL LIMIT 1",
            (mid, cp["op_seq"])).fetchone()
        text = dbmod.scalar(store.conn, "SELECT content FROM memories WHERE id = ?", (mid,))
        plan.append({"id": mid, "will": "restore" if then else "rollback",
                     "content": str(text or "")[:300]})
    return {"changes": plan}

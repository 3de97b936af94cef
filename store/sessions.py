"""Sessions and tasks: their lifetimes, and what ending one does to its memories.

Ending a session or a task expires its live memories at once (an "expire" op each, so sync and
history see it); a session idle past its TTL is ended by the daemon's expiry job; a memory's own
`--ttl` expires it the same way. Expired memories leave search; history keeps them.
"""

from __future__ import annotations

import time
from typing import Any

from db0.store import db as dbmod
from db0.store.context import Context
from db0.store.core import STATE_COLUMNS, Store, write_state
from db0.store.errors import InvalidError, NotFoundError
from db0.store.ids import new_id


def start_session(store: Store, ctx: Context, *, label: str | None = None,
                  idle_ttl: float | None = None, parent: str | None = None,
                  cutoff_ts: float | None = None, cutoff_seq: int | None = None,
                  checkpoint_id: str | None = None) -> dict[str, Any]:
    sid = "s" + new_id()[1:]
    now = time.time()
    store.conn.execute(
        "INSERT INTO sessions(id, user_id, agent_id, label, started_ts, last_seen_ts, idle_ttl, "
        "parent_session, parent_cutoff_ts, parent_cutoff_seq, checkpoint_id) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (sid, ctx.user, ctx.agent, label, now, now, idle_ttl, parent, cutoff_ts, cutoff_seq,
         checkpoint_id))
    return get_session(store, sid)


def get_session(store: Store, sid: str) -> dict[str, Any]:
    row = dbmod.row(store.conn, "SELECT * FROM sessions WHERE id=?", (sid,))
    if row is None:
        raise NotFoundError(f"no session {sid}", "see: db0 session list")
    return row


def lineage(conn: Any, sid: str | None) -> tuple[tuple[str, float], ...]:
    """The ancestors a branched session sees, nearest first, each with its (tightest) cutoff."""
    out: list[tuple[str, float]] = []
    seen = {sid}
    cutoff: float | None = None
    while sid:
        row = conn.execute("SELECT parent_session, parent_cutoff_ts FROM sessions WHERE id=?",
                           (sid,)).fetchone()
        if row is None or row[0] is None or row[0] in seen:
            break
        cutoff = float(row[1]) if cutoff is None else min(cutoff, float(row[1]))
        sid = str(row[0])
        seen.add(sid)
        out.append((sid, cutoff))
    return tuple(out)


def _expire_owner(store: Store, scope: str, owner: str, why: str, now: float) -> int:
    """Expire the live memories of one owner, an op each."""
    cols = ", ".join(STATE_COLUMNS)
    rows = store.conn.execute(
        f"SELECT {cols} FROM memories WHERE scope=? AND owner=? AND superseded_by IS NULL "
        "AND forgotten_ts IS NULL AND (expires_ts IS NULL OR expires_ts > ?)",
        (scope, owner, now)).fetchall()
    for r in rows:
        state = dict(zip(STATE_COLUMNS, r, strict=True))
        state.update(expires_ts=now, updated_ts=now)
        write_state(store, state, "expire", {"reason": why})
    return len(rows)


def end_session(store: Store, sid: str, reason: str = "ended") -> dict[str, Any]:
    s = get_session(store, sid)
    if s["ended_ts"] is not None:
        return {**s, "expired": 0, "already_ended": True}
    now = time.time()
    store.conn.execute("UPDATE sessions SET ended_ts=?, end_reason=? WHERE id=?",
                       (now, reason, sid))
    n = _expire_owner(store, "session", sid, f"session {reason}", now)
    tasks = [str(t) for (t,) in store.conn.execute(
        "SELECT id FROM tasks WHERE session_id=? AND ended_ts IS NULL", (sid,))]
    for t in tasks:
        n += end_task(store, t, f"session {reason}")["expired"]
    return {**get_session(store, sid), "expired": n}


def list_sessions(store: Store, ctx: Context, include_ended: bool = False,
                  limit: int = 100) -> list[dict[str, Any]]:
    where = "user_id=?" + ("" if include_ended else " AND ended_ts IS NULL")
    return dbmod.rows(store.conn, f"SELECT * FROM sessions WHERE {where} "
                      "ORDER BY started_ts DESC LIMIT ?", (ctx.user, limit))


def touch(store: Store, seen: dict[str, float]) -> None:
    """Record when sessions were last used (the daemon batches these)."""
    store.conn.executemany("UPDATE sessions SET last_seen_ts=max(last_seen_ts, ?) WHERE id=?",
                           [(ts, sid) for sid, ts in seen.items()])


def start_task(store: Store, ctx: Context, label: str | None = None) -> dict[str, Any]:
    tid = "t" + new_id()[1:]
    store.conn.execute(
        "INSERT INTO tasks(id, session_id, user_id, agent_id, label, started_ts) "
        "VALUES (?, ?, ?, ?, ?, ?)", (tid, ctx.session, ctx.user, ctx.agent, label, time.time()))
    return get_task(store, tid)


def get_task(store: Store, tid: str) -> dict[str, Any]:
    row = dbmod.row(store.conn, "SELECT * FROM tasks WHERE id=?", (tid,))
    if row is None:
        raise NotFoundError(f"no task {tid}", "see: db0 task list")
    return row


def end_task(store: Store, tid: str, reason: str = "ended") -> dict[str, Any]:
    t = get_task(store, tid)
    if t["ended_ts"] is not None:
        return {**t, "expired": 0, "already_ended": True}
    now = time.time()
    store.conn.execute("UPDATE tasks SET ended_ts=?, end_reason=? WHERE id=?", (now, reason, tid))
    n = _expire_owner(store, "task", tid, f"task {reason}", now)
    return {**get_task(store, tid), "expired": n}


def list_tasks(store: Store, ctx: Context, include_ended: bool = False,
               limit: int = 100) -> list[dict[str, Any]]:
    where = "user_id=?" + ("" if include_ended else " AND ended_ts IS NULL")
    return dbmod.rows(store.conn, f"SELECT * FROM tasks WHERE {where} "
                      "ORDER BY started_ts DESC LIMIT ?", (ctx.user, limit))


def expire_due(store: Store, default_idle_ttl: float, now: float | None = None) -> dict[str, int]:
    """The expiry job: end idle sessions, and log an op for memories whose TTL passed."""
    now = time.time() if now is None else now
    # Idle past its own TTL, else past the default: each half read from its index (m016), so
    # the job costs the sessions it ends, not every open one.
    idle = [str(s) for (s,) in store.conn.execute(
        "SELECT id FROM sessions INDEXED BY sessions_open WHERE ended_ts IS NULL "
        "AND last_seen_ts <= ? AND idle_ttl IS NULL UNION ALL "
        "SELECT id FROM sessions INDEXED BY sessions_ttl WHERE ended_ts IS NULL "
        "AND idle_ttl IS NOT NULL AND last_seen_ts + idle_ttl <= ?",
        (now - default_idle_ttl, now))]
    ended = 0
    for sid in idle:
        end_session(store, sid, "idle")
        ended += 1
    # Memories past their own TTL already left search (the filter compares expires_ts with
    # now); the job forgets them, so the op log records the expiry and sync carries it.
    cols = ", ".join(STATE_COLUMNS)
    rows = store.conn.execute(
        f"SELECT {cols} FROM memories WHERE expires_ts IS NOT NULL AND expires_ts <= ? "
        "AND forgotten_ts IS NULL LIMIT 5000", (now,)).fetchall()
    for r in rows:
        state = dict(zip(STATE_COLUMNS, r, strict=True))
        state.update(forgotten_ts=now, updated_ts=now)
        write_state(store, state, "expire", {"reason": "ttl"})
    return {"sessions_ended": ended, "memories_expired": len(rows)}


def check_ttl(value: Any) -> float | None:
    if value is None:
        return None
    from db0.store.memories import parse_duration

    ttl = parse_duration(value)
    if ttl <= 0:
        raise InvalidError("the TTL must be positive", "write it like 30m, 2h or 7d")
    return ttl


def open_session(conn: Any, sid: str) -> bool:
    return bool(dbmod.scalar(conn, "SELECT 1 FROM sessions WHERE id=? AND ended_ts IS NULL",
                             (sid,)))

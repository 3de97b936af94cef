"""Checkpoints of a session: a label, an optional state document and the op log position.

Restore puts the session's and task's memories back as they were at that position, from the
states the op log holds (each change an op: "restore" for a memory brought back to its earlier
state, "rollback" for one written after the checkpoint, which is forgotten; history shows both).
A branch is a new session whose lineage (store.sessions) shows the parent as it was then.
"""

from __future__ import annotations

import json
import time
from typing import Any

from db0.store import db as dbmod
from db0.store import sessions
from db0.store.context import Context
from db0.store.core import STATE_COLUMNS, Store, full_state, state_of, write_state
from db0.store.errors import InvalidError, NotFoundError
from db0.store.ids import new_id
from db0.store.memories import now_iso

MAX_STATE = 1 << 20  # a state document of up to 1 MiB
ADDED = ("remember", "import", "sync")
_KINDS = {"remember": "added", "import": "added", "supersede": "superseded",
          "forget": "forgotten", "expire": "expired", "rollback": "rolled_back",
          "restore": "restored"}


def _owners(cp: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    if cp["session_id"]:
        out.append(("session", cp["session_id"]))
    if cp["task_id"]:
        out.append(("task", cp["task_id"]))
    return out


def create(store: Store, ctx: Context, label: str | None, state: Any) -> dict[str, Any]:
    if not ctx.session and not ctx.task:
        raise InvalidError("a checkpoint belongs to a session or a task, and there is none",
                           'run: eval "$(db0 session start)" (or pass --session ID)')
    doc = None
    if state is not None:
        doc = json.dumps(state, ensure_ascii=False)
        if len(doc.encode()) > MAX_STATE:
            raise InvalidError("the state document is over 1 MiB", "store less state")
    cid = "c" + new_id()[1:]
    seq = int(dbmod.scalar(store.conn, "SELECT coalesce(max(seq), 0) FROM ops"))
    store.conn.execute(
        "INSERT INTO checkpoints(id, session_id, task_id, user_id, agent_id, label, state, "
        "op_seq, created_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (cid, ctx.session, ctx.task, ctx.user, ctx.agent, label, doc, seq, time.time()))
    return get(store, cid)


def get(store: Store, ref: str) -> dict[str, Any]:
    found = dbmod.row(store.conn, "SELECT * FROM checkpoints WHERE id=?", (ref.strip(),))
    if found is None:
        raise NotFoundError(f"no checkpoint {ref}", "see: db0 checkpoint list")
    return found


def public(cp: dict[str, Any]) -> dict[str, Any]:
    return {"id": cp["id"], "label": cp["label"], "session": cp["session_id"],
            "task": cp["task_id"], "user": cp["user_id"], "agent": cp["agent_id"],
            "op_seq": cp["op_seq"], "created_at": now_iso(cp["created_ts"]),
            "has_state": cp["state"] is not None}


def show(store: Store, ref: str) -> dict[str, Any]:
    cp = get(store, ref)
    return {**public(cp), "state": json.loads(cp["state"]) if cp["state"] else None}


def list_(store: Store, ctx: Context, everything: bool = False) -> list[dict[str, Any]]:
    if everything or not ctx.session:
        where, args = "user_id=?", [ctx.user]
    else:
        where, args = "session_id=?", [ctx.session]
    return [public(r) for r in dbmod.rows(
        store.conn, f"SELECT * FROM checkpoints WHERE {where} ORDER BY created_ts DESC", args)]


def _state_at(store: Store, memory_id: str, seq: int) -> dict[str, Any] | None:
    row = store.conn.execute("SELECT payload FROM ops WHERE memory_id=? AND seq<=? AND "
                             "json_extract(payload, '$.state') IS NOT NULL "
                             "ORDER BY seq DESC LIMIT 1", (memory_id, seq)).fetchone()
    if row is None:
        return None
    state = full_state(store.conn, str(row[0]))
    return {c: state.get(c) for c in STATE_COLUMNS}


def changed_since(store: Store, session: str | None, task: str | None, op_seq: int,
                  limit: int | None = None) -> list[str]:
    """The memories of this session and task changed since op `op_seq`, in the order of
    their first change. Read from the ops after `op_seq` (CROSS JOIN keeps that order): the
    changes since a checkpoint, not a pass over every memory of the store, which is what
    the planner chose when driven by the memories (no index holds a session's memories
    whatever their state)."""
    parts = [(s, o) for s, o in (("session", session), ("task", task)) if o]
    if not parts:
        return []
    where = " OR ".join("(m.scope=? AND m.owner=?)" for _ in parts)
    rows = store.conn.execute(
        "SELECT o.memory_id FROM ops o CROSS JOIN memories m ON m.id=o.memory_id "
        f"WHERE o.seq>? AND ({where}) ORDER BY o.seq",
        [op_seq, *(v for pair in parts for v in pair)])
    out: dict[str, None] = {}
    for (mid,) in rows:
        out[str(mid)] = None
        if limit is not None and len(out) >= limit:
            break
    rows.close()
    return list(out)


def restore(store: Store, ref: str) -> dict[str, Any]:
    cp = get(store, ref)
    now = time.time()
    restored = rolled_back = 0
    for mid in changed_since(store, cp["session_id"], cp["task_id"], cp["op_seq"]):
        current = state_of(store.conn, mid)
        if current is None:
            continue
        then = _state_at(store, mid, cp["op_seq"])
        if then is None:  # written after the checkpoint
            if current["forgotten_ts"] is None:
                current.update(forgotten_ts=now, updated_ts=now)
                write_state(store, current, "rollback", {"checkpoint": cp["id"]})
                rolled_back += 1
            continue
        then.update(updated_ts=now)
        write_state(store, then, "restore", {"checkpoint": cp["id"]})
        restored += 1
    return {**public(cp), "restored": restored, "rolled_back": rolled_back}


def branch(store: Store, ctx: Context, ref: str, label: str | None = None) -> dict[str, Any]:
    cp = get(store, ref)
    if not cp["session_id"]:
        raise InvalidError(f"checkpoint {cp['id']} has no session to branch from",
                           "branch from a checkpoint made inside a session")
    owner_ctx = Context(cp["user_id"], cp["agent_id"] if not ctx.agent else ctx.agent)
    s = sessions.start_session(store, owner_ctx, label=label or f"branch of {cp['id']}",
                               parent=cp["session_id"], cutoff_ts=cp["created_ts"],
                               cutoff_seq=cp["op_seq"], checkpoint_id=cp["id"])
    return {"session": s["id"], "parent": cp["session_id"], "checkpoint": cp["id"],
            "label": s["label"]}


def diff(store: Store, a_ref: str, b_ref: str) -> dict[str, Any]:
    a, b = get(store, a_ref), get(store, b_ref)
    if a["op_seq"] > b["op_seq"]:
        a, b = b, a
    owners = {*_owners(a), *_owners(b)}
    out: dict[str, list[dict[str, Any]]] = {k: [] for k in dict.fromkeys(_KINDS.values())}
    seen: set[tuple[str, str]] = set()
    for scope, owner in owners:
        for mid, kind, content in store.conn.execute(
                "SELECT o.memory_id, o.kind, m.content FROM ops o CROSS JOIN memories m "
                "ON m.id=o.memory_id WHERE o.seq>? AND o.seq<=? AND m.scope=? AND m.owner=? "
                "ORDER BY o.seq", (a["op_seq"], b["op_seq"], scope, owner)):
            group = _KINDS.get(str(kind))
            if group is None or (str(mid), group) in seen:
                continue
            seen.add((str(mid), group))
            out[group].append({"id": mid, "content": content, "scope": scope})
    return {"from": public(a), "to": public(b), **out}

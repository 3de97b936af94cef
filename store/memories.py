"""Memories once written: show, list, forget, purge, history and export, and the value rules
they share (content hash, durations, times, the public JSON shape). New memories are written by
`store/write.py` alone; every change goes through `core.write_state` (row + op log).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import time
from datetime import UTC, datetime
from typing import Any

from db0.store import db as dbmod
from db0.store.context import Context, live_sql, visible_sql
from db0.store.core import (
    STATE_COLUMNS,
    Store,
    append_op,
    state_of,
    write_state,
)
from db0.store.errors import InvalidError, NotFoundError

MAX_CONTENT_BYTES = 64 * 1024
MAX_TAGS = 64
MAX_TAG_CHARS = 200  # one tag, and a memory's key below: checked by the one write path
MAX_KEY_CHARS = 500
LIST_SCAN = 20  # newest memories `list` reads first per row it returns (list_memories)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def content_hash(content: str) -> str:
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def parse_duration(value: Any) -> float:
    """'90s', '15m', '2h', '7d', '1w' or a number of seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise InvalidError(f"'{value}' is not a duration", "write it like 90s, 15m, 2h, 7d")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds <= 0:
        raise InvalidError(f"duration '{value}' must be positive", "write it like 2h")
    return seconds


def parse_time(value: Any) -> tuple[str, float]:
    """An ISO 8601 time (or Unix seconds) as (text as given, Unix seconds); naive means UTC."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        ts = float(value)
        return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z"), ts
    text = str(value).strip()
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidError(f"'{text}' is not an ISO 8601 time",
                           "write it like 2024-05-08T13:56:00Z") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return text, dt.timestamp()


@functools.lru_cache(maxsize=64)
def now_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def to_public(state: dict[str, Any]) -> dict[str, Any]:
    """The JSON shape of a memory in answers (the contract: only add fields)."""
    return {
        "id": state["id"],
        "content": state["content"],
        "scope": state["scope"],
        "owner": state["owner"],
        "user": state["user_id"],
        "agent": state["agent_id"],
        "session": state["session_id"],
        "task": state["task_id"],
        "key": state["key"],
        "tags": json.loads(state["tags"]) if isinstance(state["tags"], str) else state["tags"],
        "metadata": (json.loads(state["metadata"]) if isinstance(state["metadata"], str)
                     else state["metadata"]),
        "pinned": bool(state["pinned"]),
        "created_at": state["created_at"],
        "updated_at": now_iso(state["updated_ts"]),
        "expires_at": now_iso(state["expires_ts"]) if state["expires_ts"] else None,
        "superseded_by": state["superseded_by"],
        "superseded_at": now_iso(state["superseded_ts"]) if state["superseded_ts"] else None,
        "forgotten_at": now_iso(state["forgotten_ts"]) if state["forgotten_ts"] else None,
    }


def resolve_id(store: Store, ref: str) -> str:
    """A full id from an id or a unique prefix of at least 6 characters."""
    ref = ref.strip().lower()
    if store.conn.execute("SELECT 1 FROM memories WHERE id=?", (ref,)).fetchone():
        return ref
    if len(ref) >= 6:
        rows = store.conn.execute("SELECT id FROM memories WHERE id >= ? AND id < ? LIMIT 2",
                                  (ref, ref + "\U0010ffff")).fetchall()
        if len(rows) == 1:
            return str(rows[0][0])
        if len(rows) > 1:
            raise InvalidError(f"id prefix '{ref}' matches several memories",
                               "give more characters of the id")
    raise NotFoundError(f"no memory with id '{ref}'", "find ids with: db0 list, db0 recall")


def get(store: Store, ref: str) -> dict[str, Any]:
    state = state_of(store.conn, resolve_id(store, ref))
    assert state is not None
    return to_public(state)


def forget(store: Store, ref: str, reason: str | None = None) -> dict[str, Any]:
    state = state_of(store.conn, resolve_id(store, ref))
    assert state is not None
    if state["forgotten_ts"] is not None:
        return {"id": state["id"], "status": "already_forgotten"}
    now = time.time()
    state.update(forgotten_ts=now, updated_ts=now)
    write_state(store, state, "forget", {"reason": reason} if reason else None)
    return {"id": state["id"], "status": "forgotten"}


def purge(store: Store, ref: str) -> dict[str, Any]:
    """Erase a memory for real (privacy): its row, tags, index entries, the op payloads
    that held its text and the copies capture keeps (`erase`). One `purge` op, with no
    content, records that it happened; it carries the memory's scope and owner so sync takes
    it to the remotes of that scope, which erase it too (store/pgsync.py)."""
    mid = resolve_id(store, ref)
    where = store.conn.execute("SELECT scope, owner FROM memories WHERE id=?", (mid,)).fetchone()
    erase(store, [mid])
    scope, owner = where if where else (None, None)
    append_op(store, "purge", mid, {"id": mid, "scope": scope, "owner": owner})
    return {"id": mid, "status": "purged"}


def erase(store: Store, ids: list[str]) -> int:
    """Delete these memories, every op about them and the copies capture keeps of their
    text, leaving no trace of the text in the file; the caller logs the purge op. Returns
    how many memories were there."""
    from db0.store import capture

    n = 0
    for mid in ids:
        content = dbmod.scalar(store.conn, "SELECT content FROM memories WHERE id=?", (mid,))
        if content is not None:
            capture.erase_copies(store, mid, str(content))
            store.conn.execute("DELETE FROM memories WHERE id=?", (mid,))
            n += 1
        store.conn.execute("DELETE FROM ops WHERE memory_id=?", (mid,))
    if n:
        # FTS5 keeps deleted tokens in old segments until they merge: merge them now.
        store.conn.execute("INSERT INTO memories_fts(memories_fts) VALUES ('optimize')")
    return n


def list_memories(store: Store, ctx: Context, *, scopes: list[str] | None = None,
                  limit: int = 50, offset: int = 0, include_superseded: bool = False,
                  tags: list[str] | None = None) -> list[dict[str, Any]]:
    where, args = visible_sql(ctx, scopes, live=not include_superseded)
    if include_superseded:
        where += " AND m.forgotten_ts IS NULL"
    for tag in tags or []:
        where += " AND m.rid IN (SELECT rid FROM memory_tags WHERE tag=?)"
        args.append(tag)
    cols = ", ".join(f"m.{c}" for c in STATE_COLUMNS)
    order = "ORDER BY m.created_ts DESC, m.id DESC LIMIT ? OFFSET ?"
    # The visible partitions are an OR of (scope, owner) pairs, which SQLite answers by reading
    # every memory and sorting the visible ones. The newest memories of the whole store are
    # read first: every memory made at or after `edge`, the time of the LIST_SCAN x (rows
    # wanted)-th newest (ties included). Any visible memory outside them is older than all of
    # them, so when they hold the whole page it is the answer; else each visible partition's
    # first rows through its index, merged (what the context sees, not the store); the full
    # query only for superseded memories, which no partition index holds.
    scan = LIST_SCAN * (limit + offset)
    edge = dbmod.scalar(store.conn, "SELECT created_ts FROM memories INDEXED BY "
                        "memories_created ORDER BY created_ts DESC LIMIT 1 OFFSET ?", (scan,))
    if edge is not None:
        rows = store.conn.execute(
            f"SELECT {cols} FROM memories m WHERE m.rid IN (SELECT rid FROM memories INDEXED BY "
            f"memories_created WHERE created_ts >= ?) AND {where} {order}",
            [edge, *args, limit, offset]).fetchall()
        if len(rows) == limit:
            return [to_public(dict(zip(STATE_COLUMNS, r, strict=True))) for r in rows]
    if include_superseded:
        rows = store.conn.execute(f"SELECT {cols} FROM memories m WHERE {where} {order}",
                                  [*args, limit, offset]).fetchall()
    else:
        from db0.store.context import visible_partitions

        rows = []
        for part in visible_partitions(ctx, scopes):
            rows += store.conn.execute(
                f"SELECT {cols} FROM memories m INDEXED BY memories_owner WHERE m.scope=? AND "
                f"m.owner=? AND {where} {order}", [*part, *args, limit + offset, 0]).fetchall()
        ts, rid = STATE_COLUMNS.index("created_ts"), STATE_COLUMNS.index("id")
        rows.sort(key=lambda r: (r[ts], r[rid]), reverse=True)
        rows = rows[offset:offset + limit]
    return [to_public(dict(zip(STATE_COLUMNS, r, strict=True))) for r in rows]


def history(store: Store, ref: str) -> dict[str, Any]:
    """The whole supersede chain of a memory, oldest first, each with its ops."""
    start = resolve_id(store, ref)
    chain = [start]
    seen = {start}
    cur = start
    while True:  # back to the first version
        row = store.conn.execute("SELECT id FROM memories WHERE superseded_by=? "
                                 "ORDER BY superseded_ts LIMIT 1", (cur,)).fetchone()
        if row is None or row[0] in seen:
            break
        cur = str(row[0])
        chain.insert(0, cur)
        seen.add(cur)
    cur = start
    while True:  # forward to the current version
        nxt = store.conn.execute("SELECT superseded_by FROM memories WHERE id=?",
                                 (cur,)).fetchone()
        if nxt is None or nxt[0] is None or nxt[0] in seen:
            break
        cur = str(nxt[0])
        chain.append(cur)
        seen.add(cur)
    versions = []
    for mid in chain:
        state = state_of(store.conn, mid)
        assert state is not None
        events = [
            {"seq": seq, "kind": kind, "at": now_iso(ts), "hlc": hlc, "device": dev,
             **({"note": json.loads(p).get("note")} if json.loads(p).get("note") else {})}
            for seq, kind, ts, hlc, dev, p in store.conn.execute(
                "SELECT seq, kind, created_ts, hlc, device_id, payload FROM ops "
                "WHERE memory_id=? ORDER BY seq", (mid,))
        ]
        versions.append({**to_public(state), "reason": state["supersede_reason"],
                         "events": events})
    return {"id": start, "current": chain[-1], "versions": versions}


def export_page(store: Store, ctx: Context | None, *, after: int = 0, limit: int = 1000,
                include_all: bool = False) -> tuple[list[dict[str, Any]], int]:
    """Memories in a stable order (by row id), a page at a time; returns (items, last rid)."""
    where, args = "1", list[Any]()
    if ctx is not None:
        where, args = visible_sql(ctx, None, live=not include_all)
    elif not include_all:  # everyone's memories, but only the live ones
        where, args = live_sql("m")
    cols = ", ".join(f"m.{c}" for c in STATE_COLUMNS)
    rows = store.conn.execute(
        f"SELECT m.rid, {cols} FROM memories m WHERE m.rid > ? AND {where} ORDER BY m.rid "
        "LIMIT ?", [after, *args, limit]).fetchall()
    items = [to_public(dict(zip(STATE_COLUMNS, r[1:], strict=True))) for r in rows]
    return items, (int(rows[-1][0]) if rows else after)  # type: ignore[arg-type]

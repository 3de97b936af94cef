"""Writing and reading memories: remember (with duplicates and keys), import, show, list,
forget, history and export. Every change goes through `core.write_state` (row + op log).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from datetime import UTC, datetime
from typing import Any

from db0.store.context import Context, check_scope, visible_sql
from db0.store.core import (
    STATE_COLUMNS,
    Store,
    append_op,
    insert_states,
    state_of,
    write_state,
)
from db0.store.errors import InvalidError, NotFoundError
from db0.store.ids import new_id

MAX_CONTENT_BYTES = 64 * 1024
MAX_TAGS = 64
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


def now_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def validate(item: Any, where: str = "") -> dict[str, Any]:
    """Check and normalise one memory to write; raise InvalidError saying what is wrong."""
    at = f"{where}: " if where else ""
    if not isinstance(item, dict):
        raise InvalidError(f"{at}expected a JSON object with a 'content' field")
    content = item.get("content")
    if not isinstance(content, str) or not content.strip():
        raise InvalidError(f"{at}content is empty", "give the text to remember")
    if len(content.encode("utf-8", "surrogatepass")) > MAX_CONTENT_BYTES:
        raise InvalidError(f"{at}content is {len(content.encode('utf-8', 'surrogatepass'))} "
                           f"bytes, over the {MAX_CONTENT_BYTES}-byte limit",
                           "split it into smaller memories")
    try:
        content.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidError(f"{at}content is not valid UTF-8", "re-encode it as UTF-8") from None
    out: dict[str, Any] = {"content": content.strip()}
    out["scope"] = check_scope(str(item.get("scope") or "user"))
    key = item.get("key")
    if key is not None and (not isinstance(key, str) or not key.strip()):
        raise InvalidError(f"{at}key must be a non-empty string")
    out["key"] = key.strip() if isinstance(key, str) else None
    tags = item.get("tags") or []
    if isinstance(tags, str):
        tags = [t for t in tags.split(",")]
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise InvalidError(f"{at}tags must be a list of strings")
    tags = sorted({t.strip() for t in tags if t.strip()})
    if len(tags) > MAX_TAGS:
        raise InvalidError(f"{at}{len(tags)} tags, over the limit of {MAX_TAGS}")
    out["tags"] = tags
    metadata = item.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise InvalidError(f"{at}metadata must be a JSON object")
    out["metadata"] = metadata
    out["created_at"] = parse_time(item["created_at"]) if item.get("created_at") else None
    out["pinned"] = bool(item.get("pinned"))
    out["ttl"] = parse_duration(item["ttl"]) if item.get("ttl") else None
    if item.get("expires_at"):
        out["expires_ts"] = parse_time(item["expires_at"])[1]
    out["id"] = str(item["id"]) if item.get("id") else None
    return out


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


def _live_match(store: Store, where: str, args: list[Any]) -> dict[str, Any] | None:
    # At most one live memory matches (duplicates are refused, keys supersede), so no ORDER BY:
    # its sorter cost ~200 µs a write (measured), most of an import's time.
    cols = ", ".join(STATE_COLUMNS)
    row = store.conn.execute(
        f"SELECT {cols} FROM memories WHERE {where} AND superseded_by IS NULL "
        "AND forgotten_ts IS NULL AND (expires_ts IS NULL OR expires_ts > ?) "
        "LIMIT 1", [*args, time.time()]).fetchone()
    return None if row is None else dict(zip(STATE_COLUMNS, row, strict=True))


def _new_state(ctx: Context, item: dict[str, Any], scope: str, owner: str, digest: str,
               now: float) -> dict[str, Any]:
    created_at, created_ts = item["created_at"] or (now_iso(now), now)
    ttl = item.get("ttl")
    return {
        "id": item.get("id") or new_id(int(now * 1000)),
        "content": item["content"], "content_hash": digest, "scope": scope, "owner": owner,
        "user_id": ctx.user, "agent_id": ctx.agent, "session_id": ctx.session,
        "task_id": ctx.task, "key": item["key"],
        "metadata": (json.dumps(item["metadata"], ensure_ascii=False, sort_keys=True)
                     if item["metadata"] else "{}"),
        "tags": json.dumps(item["tags"], ensure_ascii=False) if item["tags"] else "[]",
        "pinned": int(item["pinned"]), "created_at": created_at, "created_ts": created_ts,
        "updated_ts": now, "expires_ts": (now + ttl) if ttl else item.get("expires_ts"),
        "superseded_by": None, "superseded_ts": None, "supersede_reason": None,
        "forgotten_ts": None,
    }


def remember_many(store: Store, ctx: Context, items: list[dict[str, Any]],
                  kind: str = "import") -> list[dict[str, Any]]:
    """`remember` for a batch, in the caller's transaction, with the same outcome item by item.

    Plain new memories are checked for duplicates with one query and written with
    executemany; items with a key or an id of their own take `remember`'s path. Measured on
    2 busy cores: per-item statements cost ~500 µs a memory, this ~50 µs.
    """
    now = time.time()
    prepared = []
    for item in items:
        scope = item["scope"]
        prepared.append((item, scope, ctx.owner(scope), content_hash(item["content"])))
    live: dict[tuple[str, str, str], tuple[str, str | None]] = {
        (h, sc, o): (i, k) for h, sc, o, i, k in store.conn.execute(
            "SELECT content_hash, scope, owner, id, key FROM memories "
            "WHERE content_hash IN (SELECT value FROM json_each(?)) AND superseded_by IS NULL "
            "AND forgotten_ts IS NULL AND (expires_ts IS NULL OR expires_ts > ?)",
            (json.dumps([p[3] for p in prepared]), now))}
    results: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []
    for item, scope, owner, digest in prepared:
        found = live.get((digest, scope, owner))
        if found is not None and (item["key"] is None or found[1] == item["key"]):
            results.append({"id": found[0], "status": "duplicate", "scope": scope})
            continue
        if item["key"] or item.get("id"):
            insert_states(store, pending, kind)  # so its checks see what came before it
            pending = []
            res = remember(store, ctx, item, kind=kind)
            live[(digest, scope, owner)] = (res["id"], item["key"])
            results.append(res)
            continue
        state = _new_state(ctx, item, scope, owner, digest, now)
        pending.append(state)
        live[(digest, scope, owner)] = (state["id"], None)
        results.append({"id": state["id"], "status": "stored", "scope": scope})
    insert_states(store, pending, kind)
    return results


def remember(store: Store, ctx: Context, item: dict[str, Any], *,
             supersedes: str | None = None, reason: str | None = None,
             kind: str = "remember") -> dict[str, Any]:
    """Store one validated memory (from `validate`), in the caller's transaction."""
    now = time.time()
    scope = item["scope"]
    owner = ctx.owner(scope)
    digest = content_hash(item["content"])
    dup = _live_match(store, "content_hash=? AND scope=? AND owner=?", [digest, scope, owner])
    if dup is not None and (item["key"] is None or dup["key"] == item["key"]):
        return {"id": dup["id"], "status": "duplicate", "scope": scope}
    old: dict[str, Any] | None = None
    if supersedes:
        old = state_of(store.conn, resolve_id(store, supersedes))
        if old is None:
            raise NotFoundError(f"no memory {supersedes} to supersede", "check the id: db0 list")
        for _ in range(10_000):  # superseding an old version supersedes its chain's current one
            nxt = state_of(store.conn, old["superseded_by"]) if old["superseded_by"] else None
            if nxt is None:
                break
            old = nxt
    elif item["key"]:
        old = _live_match(store, "key=? AND scope=? AND owner=?", [item["key"], scope, owner])
    state = _new_state(ctx, item, scope, owner, digest, now)
    if item.get("id") and state_of(store.conn, state["id"]) is not None:
        return {"id": state["id"], "status": "duplicate", "scope": scope}
    write_state(store, state, kind, new=True)
    result: dict[str, Any] = {"id": state["id"], "status": "stored", "scope": scope}
    if old is not None and old["superseded_by"] is None:
        why = reason or ("same key" if not supersedes else "superseded")
        old.update(superseded_by=state["id"], superseded_ts=now, supersede_reason=why,
                   updated_ts=now)
        write_state(store, old, "supersede", {"by": state["id"], "reason": why})
        result["superseded"] = old["id"]
    elif old is not None:
        result["superseded"] = old["id"]
    return result


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
    """Erase a memory for real (privacy): its row, tags, index entries and the op payloads
    that held its text. One `purge` op, with no content, records that it happened."""
    mid = resolve_id(store, ref)
    store.conn.execute("DELETE FROM memories WHERE id=?", (mid,))
    store.conn.execute("DELETE FROM ops WHERE memory_id=?", (mid,))
    # FTS5 keeps deleted tokens in old segments until they merge: merge them now.
    store.conn.execute("INSERT INTO memories_fts(memories_fts) VALUES ('optimize')")
    append_op(store, "purge", mid, {"id": mid})
    return {"id": mid, "status": "purged"}


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
    rows = store.conn.execute(
        f"SELECT {cols} FROM memories m WHERE {where} ORDER BY m.created_ts DESC, m.id DESC "
        "LIMIT ? OFFSET ?", [*args, limit, offset]).fetchall()
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
    cols = ", ".join(f"m.{c}" for c in STATE_COLUMNS)
    rows = store.conn.execute(
        f"SELECT m.rid, {cols} FROM memories m WHERE m.rid > ? AND {where} ORDER BY m.rid "
        "LIMIT ?", [after, *args, limit]).fetchall()
    items = [to_public(dict(zip(STATE_COLUMNS, r[1:], strict=True))) for r in rows]
    return items, (int(rows[-1][0]) if rows else after)  # type: ignore[arg-type]

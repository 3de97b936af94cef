"""The one write path for new memories: every front door (the CLI's remember and import, MCP,
agent hooks and transcript ingest, git capture, watched folders) calls `prepare`, then
`remember` or `remember_many`, and nothing else writes a new memory.

In order, for each memory:
1. redaction: secrets become `[REDACTED:kind]` and `<private>` blocks go, in the content, the
   key, the tags and every string of the metadata (`store/secrets.py`), unless the caller asked
   to keep secrets for this write;
2. validation: types, sizes and times checked and normalised, with a one-line error naming the
   field (and the line, for an import);
3. de-duplication: the same text in the same scope and owner is not stored twice;
4. keys and superseding: a new fact with the same key (or `supersedes`) replaces the current
   one, which stays in history;
5. the row and its op, in the caller's transaction (`core.write_state`).

A write into a session or task scope makes that session or task exist (an id the caller chose
is listed and ended like one db0 made). Other text db0 keeps beside memories (checkpoint labels
and states, agent-session summaries) goes through `text` and `document`, the same redaction.
"""

from __future__ import annotations

import itertools
import json
import marshal
import re
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from db0.store import db as dbmod
from db0.store import secrets
from db0.store.context import Context, check_scope
from db0.store.core import (
    REBUILD_SHARE,
    STATE_COLUMNS,
    Store,
    bulk_indexes,
    encode_str,
    insert_ops,
    insert_rows,
    new_op_json,
    op_middle,
    state_of,
    write_state,
)
from db0.store.errors import InvalidError, NotFoundError, StoreError
from db0.store.ids import new_id, new_ids
from db0.store.memories import (
    MAX_CONTENT_BYTES,
    MAX_KEY_CHARS,
    MAX_TAG_CHARS,
    MAX_TAGS,
    content_hash,
    now_iso,
    parse_duration,
    parse_time,
    resolve_id,
)

_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class Prepared:
    """A memory that went through redaction and validation (only `prepare` makes one)."""

    item: dict[str, Any]
    redacted: dict[str, int]



def prepare(raw: Any, *, allow_secrets: bool = False, where: str = "") -> Prepared:
    """Redact, then validate one memory as given by a front door (a dict; it is not changed)."""
    at = f"{where}: " if where else ""
    if not isinstance(raw, dict):
        raise InvalidError(f"{at}expected a JSON object with a 'content' field")
    item = dict(raw)
    found: dict[str, int] = {}
    redact = secrets.strip_private if allow_secrets else secrets.redact
    for name in ("content", "key"):
        v = item.get(name)
        if isinstance(v, str):
            item[name], f = redact(v)
            if f:
                _add(found, f)
    for name in ("tags", "metadata"):
        v = item.get(name)
        if isinstance(v, (list, dict)):
            item[name], f = secrets.scrub_json(v, allow_secrets)
            if f:
                _add(found, f)
    return Prepared(_validate(item, where), found)


def text(value: str | None, allow_secrets: bool = False) -> tuple[str | None, dict[str, int]]:
    """A label or a summary kept beside memories, redacted like a memory's content."""
    if value is None:
        return None, {}
    return _redact(value, allow_secrets)


def document(value: Any, allow_secrets: bool = False) -> tuple[Any, dict[str, int]]:
    """A JSON document kept beside memories (a checkpoint's state): every string redacted."""
    return secrets.scrub_json(value, allow_secrets)


def _redact(value: str, allow_secrets: bool) -> tuple[str, dict[str, int]]:
    return secrets.strip_private(value) if allow_secrets else secrets.redact(value)


def _add(total: dict[str, int], found: dict[str, int]) -> None:
    for k, n in found.items():
        total[k] = total.get(k, 0) + n


def remember(store: Store, ctx: Context, p: Prepared, *, supersedes: str | None = None,
             reason: str | None = None, kind: str = "remember", current_only: bool = False
             ) -> dict[str, Any]:
    """Store one prepared memory, in the caller's transaction; the result says whether it was
    stored or a duplicate, what it superseded and what was redacted. `current_only`: the
    memory to supersede must still be current (an edit made from what the caller read), else
    a `conflict` naming the version that is."""
    ensure_owners(store, ctx, [p.item["scope"]])
    result = _store_one(store, ctx, p.item, supersedes=supersedes, reason=reason, kind=kind,
                        current_only=current_only)
    if p.redacted:
        result["redacted"] = p.redacted
    return result


def remember_many(store: Store, ctx: Context, ps: list[Prepared], kind: str = "import"
                  ) -> list[dict[str, Any]]:
    """`remember` for a batch, in the caller's transaction, with the same outcome item by item
    (a batch's items are all prepared before anything is written)."""
    if not ps:
        return []
    ensure_owners(store, ctx, list({p.item["scope"] for p in ps}))
    return _store_many(store, ctx, [p.item for p in ps], kind)


def redacted_total(ps: list[Prepared]) -> dict[str, int]:
    total: dict[str, int] = {}
    for p in ps:
        if p.redacted:
            _add(total, p.redacted)
    return total


def ensure_owners(store: Store, ctx: Context, scopes: list[str]) -> None:
    """A session or task id the caller chose exists from its first write (listed, endable).
    An ended one takes no more memories: ending it took its memories out of search, and a
    write into it would put one back (capture starts a new session for a resumed agent)."""
    now = time.time()
    if "session" in scopes and ctx.session:
        store.conn.execute(
            "INSERT OR IGNORE INTO sessions(id, user_id, agent_id, label, started_ts, "
            "last_seen_ts) VALUES (?, ?, ?, NULL, ?, ?)",
            (ctx.session, ctx.user, ctx.agent, now, now))
        _refuse_ended(store, "session", ctx.session)
    if "task" in scopes and ctx.task:
        store.conn.execute(
            "INSERT OR IGNORE INTO tasks(id, session_id, user_id, agent_id, label, started_ts) "
            "VALUES (?, ?, ?, ?, NULL, ?)", (ctx.task, ctx.session, ctx.user, ctx.agent, now))
        _refuse_ended(store, "task", ctx.task)


def _refuse_ended(store: Store, kind: str, owner_id: str) -> None:
    ended = dbmod.scalar(store.conn, f"SELECT ended_ts FROM {kind}s WHERE id=?", (owner_id,))
    if ended is not None:
        raise InvalidError(
            f"{kind} {owner_id} has ended; its memories are out of search and it takes no more",
            f'start a new one (eval "$(db0 {kind} start)") or set another DB0_{kind.upper()}')


def _kind(v: Any) -> str:
    return {bool: "true/false", int: "a number", float: "a number", list: "a list",
            dict: "an object", type(None): "null"}.get(type(v), type(v).__name__)


def _clean(value: str, what: str, at: str) -> str:
    if "\x00" in value:
        raise InvalidError(f"{at}{what} holds a NUL byte", "strip them first (tr -d '\\0')")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidError(f"{at}{what} is not valid Unicode (a lone surrogate at character "
                           f"{e.start})", "re-encode it as UTF-8") from None
    return value


_PLAIN = frozenset(("content", "scope"))


def _validate(item: dict[str, Any], where: str = "") -> dict[str, Any]:
    """Check and normalise one memory to write; raise InvalidError naming what is wrong.
    Fields it does not know are ignored (an export's lines import as they are)."""
    at = f"{where}: " if where else ""
    content = item.get("content")
    if content is None:
        raise InvalidError(f"{at}content is missing", "give the text to remember")
    if not isinstance(content, str):
        raise InvalidError(f"{at}content must be text, got {_kind(content)}",
                           'write it as a JSON string: {"content": "..."}')
    if "\x00" in content:
        _clean(content, "content", at)  # raises
    try:
        size = len(content.encode("utf-8"))
    except UnicodeEncodeError:
        _clean(content, "content", at)  # raises
        raise
    stripped = content.strip()
    if not stripped:
        raise InvalidError(f"{at}content is empty", "give the text to remember")
    if size > MAX_CONTENT_BYTES:
        raise InvalidError(f"{at}content is {size} bytes, over the {MAX_CONTENT_BYTES}-byte "
                           "limit", "split it into smaller memories")
    scope = item.get("scope") or "user"
    if not isinstance(scope, str):
        raise InvalidError(f"{at}scope must be text, got {_kind(scope)}",
                           "one of: user, agent, session, task")
    if item.keys() <= _PLAIN:  # the rest below, for a memory that gives none of it
        return {"content": stripped, "scope": check_scope(scope), "key": None, "tags": [],
                "metadata": {}, "created_at": None, "pinned": False, "ttl": None, "id": None}
    out: dict[str, Any] = {"content": stripped}
    out["scope"] = check_scope(scope)
    key = item.get("key")
    if key is not None and (not isinstance(key, str) or not key.strip()):
        raise InvalidError(f"{at}key must be a non-empty string")
    out["key"] = _clean(key, "key", at).strip() if isinstance(key, str) else None
    if out["key"] is not None and len(out["key"]) > MAX_KEY_CHARS:
        raise InvalidError(f"{at}key is {len(out['key'])} characters, over the limit of "
                           f"{MAX_KEY_CHARS}", "use a shorter key")
    tags = item.get("tags") or []
    if isinstance(tags, str):
        tags = tags.split(",")
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise InvalidError(f"{at}tags must be a list of strings")
    tags = sorted({_clean(t, "a tag", at).strip() for t in tags if t.strip()})
    if len(tags) > MAX_TAGS:
        raise InvalidError(f"{at}{len(tags)} tags, over the limit of {MAX_TAGS}")
    long = next((t for t in tags if len(t) > MAX_TAG_CHARS), None)
    if long is not None:
        raise InvalidError(f"{at}a tag of {len(long)} characters, over the limit of "
                           f"{MAX_TAG_CHARS}", "use shorter tags")
    out["tags"] = tags
    metadata = item.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise InvalidError(f"{at}metadata must be a JSON object, got {_kind(metadata)}")
    out["metadata"] = metadata
    for name in ("created_at", "expires_at"):
        v = item.get(name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, str | int | float)):
            raise InvalidError(f"{at}{name} must be an ISO 8601 time, got {_kind(v)}",
                               "write it like 2024-05-08T13:56:00Z")
    out["created_at"] = parse_time(item["created_at"]) if item.get("created_at") else None
    pinned = item.get("pinned", False)
    if not isinstance(pinned, bool | int) or pinned not in (0, 1):
        raise InvalidError(f"{at}pinned must be true or false, got {_kind(pinned)}")
    out["pinned"] = bool(pinned)
    ttl = item.get("ttl")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, str | int | float)):
        raise InvalidError(f"{at}ttl must be a duration, got {_kind(ttl)}",
                           "write it like 90s, 15m, 2h, 7d")
    out["ttl"] = parse_duration(ttl) if ttl else None
    if item.get("expires_at"):
        out["expires_ts"] = parse_time(item["expires_at"])[1]
    mid = item.get("id")
    if mid is not None and (not isinstance(mid, str) or not _ID.match(mid)):
        raise InvalidError(f"{at}id must be 1-64 letters, digits, '-' or '_'",
                           "leave it out and db0 makes one")
    out["id"] = mid.lower() if isinstance(mid, str) else None
    return out


def _live_match(store: Store, where: str, args: list[Any]) -> dict[str, Any] | None:
    # At most one live memory matches (duplicates are refused, keys supersede), so no ORDER BY:
    # a sorter would run at every write.
    cols = ", ".join(STATE_COLUMNS)
    row = store.conn.execute(
        f"SELECT {cols} FROM memories WHERE {where} AND superseded_by IS NULL "
        "AND forgotten_ts IS NULL AND (expires_ts IS NULL OR expires_ts > ?) "
        "LIMIT 1", [*args, time.time()]).fetchone()
    return None if row is None else dict(zip(STATE_COLUMNS, row, strict=True))


def _new_state(ctx: Context, item: dict[str, Any], scope: str, owner: str, digest: str,
               now: float, now_at: tuple[str, float] | None = None) -> dict[str, Any]:
    created_at, created_ts = item["created_at"] or now_at or (now_iso(now), now)
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


def _chain_current(store: Store, state: dict[str, Any]) -> str:
    """The id of the newest version in a memory's supersede chain."""
    cur = state
    for _ in range(10_000):
        nxt = state_of(store.conn, cur["superseded_by"]) if cur["superseded_by"] else None
        if nxt is None:
            break
        cur = nxt
    return str(cur["id"])


def _restates(store: Store, dup: dict[str, Any], supersedes: str, item: dict[str, Any],
              scope: str, owner: str, ctx: Context) -> bool:
    """Whether a write with the same text as `dup` is a new version of it all the same: it
    supersedes `dup` itself and changes what else a version holds (pinned, tags, metadata,
    key), as pinning a memory does."""
    if resolve_id(store, supersedes) != dup["id"]:
        return False
    new = _new_state(ctx, item, scope, owner, dup["content_hash"], time.time())
    return any(new[c] != dup[c] for c in ("pinned", "tags", "metadata", "key"))


_LIVE_SQL = ("SELECT content_hash, scope, owner, id, key FROM memories WHERE superseded_by IS NULL "
             "AND forgotten_ts IS NULL AND (expires_ts IS NULL OR expires_ts > ?)")
Live = dict[tuple[str, str, str], tuple[str, str | None]]  # (hash, scope, owner): (id, key)


def _store_many(store: Store, ctx: Context, items: list[dict[str, Any]],
                kind: str = "import", *, live: Live | None = None,
                digests: list[str] | None = None, indexes: bool = True
                ) -> list[dict[str, Any]]:
    """`_store_one` for a batch, with the same outcome item by item: plain new memories are
    checked for duplicates with one query and written with executemany; items with a key or an
    id of their own take the one-by-one path, after what came before them.

    For a batch of a larger whole (`_store_bulk`): `live` holds every live memory the batch
    could duplicate and takes the batch's new ones, `digests` are its items' text hashes, and
    `indexes=False` leaves the tables' indexes to the caller; its items are all plain."""
    now = time.time()
    now_at = (now_iso(now), now)
    owners: dict[str, str] = {}
    if digests is None:
        digests = [content_hash(item["content"]) for item in items]
    prepared = []
    for item, digest in zip(items, digests, strict=True):
        scope = item["scope"]
        owner = owners.get(scope) or owners.setdefault(scope, ctx.owner(scope))
        prepared.append((item, scope, owner, digest))
    if live is None:
        live = _live_of(store, {(d, sc, o) for _, sc, o, d in prepared}, now)
    results: list[dict[str, Any]] = []
    pending: list[tuple[str, dict[str, Any], str, str, str]] = []
    ids = iter(new_ids(int(now * 1000), len(prepared)))
    for item, scope, owner, digest in prepared:
        found = live.get((digest, scope, owner))
        if found is not None and (item["key"] is None or found[1] == item["key"]):
            results.append({"id": found[0], "status": "duplicate", "scope": scope})
            continue
        if item["key"] or item.get("id"):
            assert indexes, "a bulk batch holds plain items only"
            _insert_plain(store, ctx, pending, kind, now, now_at)  # its checks see them
            pending = []
            res = _store_one(store, ctx, item, kind=kind)
            live[(digest, scope, owner)] = (res["id"], item["key"])
            results.append(res)
            continue
        mid = next(ids)
        pending.append((mid, item, scope, owner, digest))
        live[(digest, scope, owner)] = (mid, None)
        results.append({"id": mid, "status": "stored", "scope": scope})
    _insert_plain(store, ctx, pending, kind, now, now_at, indexes=indexes)
    return results


def _live_of(store: Store, wanted: set[tuple[str, str, str]], now: float) -> Live:
    """The live memories with these (text hash, scope, owner)."""
    if len(wanted) * REBUILD_SHARE >= _table_rows(store):
        # Many against the table: one pass over its live rows costs less than a look-up each.
        return _live_scan(store, {h for h, _, _ in wanted}, now)
    return {(h, sc, o): (i, k) for h, sc, o, i, k in store.conn.execute(
        _LIVE_SQL + " AND (scope, owner, content_hash) IN "
        "(SELECT value->>1, value->>2, value->>0 FROM json_each(?))",
        (now, json.dumps(list(wanted))))}


def _live_scan(store: Store, hashes: Iterable[str], now: float) -> Live:
    """The live memories with these text hashes, found in one pass over the table."""
    if not _table_rows(store):
        return {}
    wanted = hashes if isinstance(hashes, set | frozenset) else set(hashes)
    return {(h, sc, o): (i, k) for h, sc, o, i, k in store.conn.execute(_LIVE_SQL, (now,))
            if h in wanted}


def _plain(item: dict[str, Any]) -> bool:
    """A memory without a key or an id of its own (`_store_many` writes it set-wise)."""
    return not item["key"] and not item.get("id")


# Where a memory's id, text, text hash and clock stamp sit in a row of STATE_COLUMNS.
_ID_AT, _HLC_AT = STATE_COLUMNS.index("id"), STATE_COLUMNS.index("hlc")
assert STATE_COLUMNS[:3] == ("id", "content", "content_hash") and _HLC_AT == 21


def _insert_plain(store: Store, ctx: Context, pending: list[tuple[str, dict[str, Any], str, str,
                                                                 str]],
                  kind: str, now: float, now_at: tuple[str, float], *, indexes: bool = True
                  ) -> None:
    """`insert_states` of the states `_new_state` makes for new memories without a key or an
    id of their own (id, item, scope, owner, text hash), built without a state per line: the
    lines that share everything but id, text and clock (scope, tags, metadata, times) share
    one template row and one middle of their op's text (`core.op_middle`), so the rows and op
    texts are the ones `insert_states` writes."""
    if not pending:
        return
    dev = store.device_id
    hlcs = store.clock.stamps(len(pending))
    op_ids = new_ids(int(now * 1000), len(pending))
    enc = encode_str
    dev_j = enc(dev)
    templates: dict[tuple[Any, ...], tuple[list[Any], str | None]] = {}
    rows: list[list[Any]] = []
    ops: list[tuple[Any, ...]] = []
    tagged: dict[str, list[str]] = {}
    for (mid, item, scope, owner, digest), hlc, op_id in zip(pending, hlcs, op_ids,
                                                              strict=True):
        meta, tags = item["metadata"], item["tags"]
        tkey = (scope, owner, json.dumps(meta, ensure_ascii=False, sort_keys=True)
                if meta else None, tuple(tags), item["pinned"], item["created_at"],
                item.get("ttl"), item.get("expires_ts"))
        tpl = templates.get(tkey)
        if tpl is None:
            state = _new_state(ctx, item, scope, owner, digest, now, now_at)
            state["hlc"], state["device_id"] = hlc, dev
            try:
                middle: str | None = op_middle(state)
            except (TypeError, ValueError):
                middle = None
            tpl = templates[tkey] = ([state[c] for c in STATE_COLUMNS], middle)
        row = tpl[0].copy()
        row[0], row[1], row[2], row[_HLC_AT] = mid, item["content"], digest, hlc
        rows.append(row)
        if tpl[1] is not None:
            op = (f'{{"state":{{"id":{enc(mid)},"content_hash":{enc(digest)},{tpl[1]}'
                  f'"hlc":{enc(hlc)},"device_id":{dev_j}}}}}')
        else:
            op = new_op_json(dict(zip(STATE_COLUMNS, row, strict=True)))
        ops.append((op_id, hlc, dev, kind, mid, op, now))
        if tags:
            tagged[mid] = tags
    insert_rows(store.conn, rows, tagged, indexes=indexes)
    insert_ops(store.conn, ops, indexes=indexes)


def _table_rows(store: Store) -> int:
    """About how many rows `memories` has (its largest rowid: purged rows still count)."""
    return int(dbmod.scalar(store.conn, "SELECT coalesce(max(rid), 0) FROM memories"))


def _store_one(store: Store, ctx: Context, item: dict[str, Any], *,
               supersedes: str | None = None, reason: str | None = None,
               kind: str = "remember", current_only: bool = False) -> dict[str, Any]:
    """Store one prepared item, in the caller's transaction."""
    now = time.time()
    scope = item["scope"]
    owner = ctx.owner(scope)
    digest = content_hash(item["content"])
    dup = _live_match(store, "content_hash=? AND scope=? AND owner=?", [digest, scope, owner])
    if dup is not None and (item["key"] is None or dup["key"] == item["key"]) and not (
            supersedes and _restates(store, dup, supersedes, item, scope, owner, ctx)):
        return {"id": dup["id"], "status": "duplicate", "scope": scope}
    old: dict[str, Any] | None = None
    if supersedes:
        old = state_of(store.conn, resolve_id(store, supersedes))
        if old is None:
            raise NotFoundError(f"no memory {supersedes} to supersede", "check the id: db0 list")
        if current_only and (old["superseded_by"] or old["forgotten_ts"]):
            now_id = _chain_current(store, old)
            what = (f"was superseded by {now_id}" if now_id != old["id"] else "was forgotten")
            raise StoreError(f"memory {old['id']} {what} since it was read",
                             "read the current version and make the change there",
                             code="conflict")
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




# -- imports staged batch by batch, committed at once ---------------------------------------------

class Staging:
    """Imports staged batch by batch: checked, kept in the daemon's memory, invisible to every
    read, until the batch that commits them all in one transaction. They never reach the
    database, so a stop or a crash loses them whole, like a client that lost its daemon: the
    commit that follows (`expect`) then keeps none. An import whose client sent nothing for
    `idle` seconds is dropped (`clear`).

    A batch is kept as a `StagedBatch` under its first line number (a batch sent again replaces
    itself): a few hundred bytes a line, nothing for the cyclic collector to walk, one load per
    batch. Its text hashes are taken here, while the client sends the next batch, not in the
    commit, which holds the writer. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._imports: dict[str, _Staged] = {}

    def stage(self, import_id: str, first: int, ps: list[Prepared]) -> int:
        """Keep a batch of an import, whose first line is `first`; how many lines the import
        now has staged."""
        batch = StagedBatch.of(ps)
        with self._lock:
            imp = self._imports.setdefault(import_id, _Staged())
            old = imp.batches.get(first)
            imp.lines += batch.lines - (old.lines if old else 0)
            imp.batches[first] = batch
            imp.touched = time.monotonic()
            return imp.lines

    def take(self, import_id: str) -> list[StagedBatch]:
        """An import's staged batches in line order, no longer staged (`commit_import` loads
        them one at a time)."""
        with self._lock:
            imp = self._imports.pop(import_id, None)
        if imp is None:
            return []
        return [imp.batches[first] for first in sorted(imp.batches)]

    def drop(self, import_id: str) -> int:
        """Drop an import's staged lines; how many there were."""
        with self._lock:
            imp = self._imports.pop(import_id, None)
        return imp.lines if imp else 0

    def clear(self, idle: float) -> int:
        """Drop the imports whose last batch came more than `idle` seconds ago; how many lines."""
        cut = time.monotonic() - idle
        with self._lock:
            gone = [i for i, imp in self._imports.items() if imp.touched < cut]
            return sum(self._imports.pop(i).lines for i in gone)

    def lines(self) -> int:
        """How many lines all imports have staged."""
        with self._lock:
            return sum(imp.lines for imp in self._imports.values())


@dataclass(frozen=True, slots=True)
class StagedBatch:
    """A staged batch of an import: its lines as the marshal of [(item, redacted), ...] (many
    times faster than JSON; a staged batch never outlives the Python that wrote it), their
    text hashes end to end, their scopes, and whether they are all plain (`_plain`)."""

    lines: int
    items: bytes
    hashes: str
    scopes: frozenset[str]
    plain: bool

    @classmethod
    def of(cls, ps: list[Prepared]) -> StagedBatch:
        return cls(len(ps), marshal.dumps([(p.item, p.redacted) for p in ps]),
                   "".join(content_hash(p.item["content"]) for p in ps),
                   frozenset(p.item["scope"] for p in ps), all(_plain(p.item) for p in ps))

    def digests(self) -> list[str]:
        h, n = self.hashes, _HASH_CHARS
        return [h[i:i + n] for i in range(0, len(h), n)]


_HASH_CHARS = len(content_hash(""))


@dataclass
class _Staged:
    batches: dict[int, StagedBatch] = field(default_factory=dict)
    lines: int = 0
    touched: float = 0.0


COMMIT_CHUNK = 10_000  # lines of an import written together (fewer: more queries; more: more RAM)


def commit_import(store: Store, ctx: Context, import_id: str, staged: list[StagedBatch],
                  last: list[Prepared], expect: int | None = None
                  ) -> tuple[list[tuple[str, str]], dict[str, int]]:
    """The `staged` batches of an import (`Staging.take`) and its last batch, as memories, in
    this one transaction. Returns each line's (id, "stored" or "duplicate") and what was
    redacted. With `expect`, an import that lost staged lines (its daemon restarted) keeps none.

    The lines are written COMMIT_CHUNK at a time, so that only a chunk's rows and ops are in
    memory at once, with the outcome of one `_store_many` of them all: a chunk's duplicates are
    looked up where the chunks before it already are (in the table, or for plain lines that
    are a large share of it, in what `_store_bulk` keeps)."""
    total = sum(b.lines for b in staged) + len(last)
    if expect is not None and total < expect:
        raise InvalidError(f"the import was interrupted: {expect - total} of its "
                           f"{expect - len(last)} staged lines were lost (the daemon "
                           "restarted); none of its lines were kept", "run the import again")
    if expect is not None and total > expect:
        raise InvalidError(f"the import has {total} lines staged, more than the {expect} its "
                           "commit expects; none of its lines were kept", "run the import again")
    redacted = redacted_total(last)
    last_digests = [content_hash(p.item["content"]) for p in last]

    def chunks() -> Iterator[tuple[list[dict[str, Any]], list[str]]]:
        items: list[dict[str, Any]] = []
        digests: list[str] = []
        for b in staged:
            for item, found in marshal.loads(b.items):
                items.append(item)
                if found:
                    _add(redacted, found)
            digests += b.digests()
            if len(items) >= COMMIT_CHUNK:
                yield items, digests
                items, digests = [], []
        items += [p.item for p in last]
        if items:
            yield items, digests + last_digests

    out: list[tuple[str, str]] = []
    plain = all(b.plain for b in staged) and all(_plain(p.item) for p in last)
    if plain and (memories_ix := bulk_indexes(store.conn, "memories", "rid", total)).drops:
        scopes = {p.item["scope"] for p in last}.union(*(b.scopes for b in staged))
        every = itertools.chain((d for b in staged for d in b.digests()), last_digests)
        out = _store_bulk(store, ctx, chunks(), every, scopes, memories_ix, total)
    else:
        for items, digests in chunks():
            ensure_owners(store, ctx, list({it["scope"] for it in items}))
            out += [(r["id"], r["status"]) for r in _store_many(
                store, ctx, items, "import", digests=digests)]
    store.conn.execute("INSERT OR REPLACE INTO imports_done VALUES (?, ?, ?, ?)",
                       (import_id, total, sum(st == "stored" for _, st in out), time.time()))
    return out, redacted


def _store_bulk(store: Store, ctx: Context,
                chunks: Iterable[tuple[list[dict[str, Any]], list[str]]], every: Iterable[str],
                scopes: set[str], memories_ix: bulk_indexes, total: int
                ) -> list[tuple[str, str]]:
    """`_store_many` of plain items a large share of the table, given as chunks of (items,
    their text hashes), with the outcome of one batch of them all: the live memories they
    repeat are found first in one scan (`every` hash of them), then the chunks are written with
    the tables' indexes dropped and rebuilt once around them all (`bulk_indexes`)."""
    ensure_owners(store, ctx, list(scopes))
    live = _live_scan(store, every, time.time())
    out: list[tuple[str, str]] = []
    with memories_ix, bulk_indexes(store.conn, "ops", "seq", total):
        for items, digests in chunks:
            out += [(r["id"], r["status"]) for r in _store_many(
                store, ctx, items, "import", live=live, digests=digests, indexes=False)]
    return out


def import_done(store: Store, import_id: str) -> dict[str, Any] | None:
    row = store.conn.execute("SELECT lines, stored, done_ts FROM imports_done WHERE import_id=?",
                             (import_id,)).fetchone()
    return None if row is None else {"lines": row[0], "stored": row[1], "done_at":
                                     now_iso(float(row[2]))}


# -- the rules, kept after another device's writes are merged ------------------------------------

def converge(store: Store, memory_ids: list[str]) -> list[str]:
    """After ops from other devices were applied (last writer wins per memory), keep the rules
    a single device keeps: at most one live memory per scope, owner and key (the newest, by its
    id, which orders by creation time), and per scope, owner, key and text (the oldest). The
    others are superseded by it, with a reason history shows; every device picks the same one
    from the same memories, and their supersedes agree. Returns the ids superseded here."""
    if not memory_ids:
        return []
    conn = store.conn
    touched = json.dumps(memory_ids)
    live = "superseded_by IS NULL AND forgotten_ts IS NULL"
    done: list[str] = []
    groups = conn.execute(
        f"SELECT DISTINCT scope, owner, key FROM memories WHERE key IS NOT NULL AND {live} "
        "AND id IN (SELECT value FROM json_each(?))", (touched,)).fetchall()
    for scope, owner, key in groups:
        ids = [str(r[0]) for r in conn.execute(
            f"SELECT id FROM memories WHERE key=? AND scope=? AND owner=? AND {live} "
            "ORDER BY id", (key, scope, owner))]
        done += _supersede_all(store, ids[:-1], ids[-1], "same key written on another device")
    groups = conn.execute(
        f"SELECT DISTINCT scope, owner, content_hash, key FROM memories WHERE {live} "
        "AND id IN (SELECT value FROM json_each(?))", (touched,)).fetchall()
    for scope, owner, digest, key in groups:
        ids = [str(r[0]) for r in conn.execute(
            f"SELECT id FROM memories WHERE content_hash=? AND scope=? AND owner=? AND key IS ? "
            f"AND {live} ORDER BY id", (digest, scope, owner, key))]
        done += _supersede_all(store, ids[1:], ids[0] if ids else "",
                               "same text remembered on another device")
    return done


def _supersede_all(store: Store, losers: list[str], winner: str, why: str) -> list[str]:
    now = time.time()
    out = []
    for mid in losers:
        state = state_of(store.conn, mid)
        if state is None or state["superseded_by"] is not None:
            continue
        state.update(superseded_by=winner, superseded_ts=now, supersede_reason=why,
                     updated_ts=now)
        write_state(store, state, "supersede", {"by": winner, "reason": why})
        out.append(mid)
    return out

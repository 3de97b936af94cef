"""The store handle: one apsw connection plus the device's clock, and the op log.

Every mutation goes through `write_state`: the memory row, its tags and one op-log row, in the
caller's transaction. An op carries the memory's whole state after the change, so applying it
anywhere (another device, a second time) is an upsert that keeps the newer clock: last writer
wins per memory, and replaying an op is a no-op.

A memory's text never changes once written (a new version is a new memory), so an op keeps a
reference to the row's text instead of a second copy of it: `op_payload` leaves `content` out
and `full_state` puts it back for whoever reads an op (sync's push, a checkpoint's restore).
Purge deletes a memory's ops with its row, so a reference never dangles.
"""

from __future__ import annotations

import json
import json.encoder
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apsw

from db0.store import db as dbmod
from db0.store.errors import StoreError
from db0.store.ids import HybridClock, new_device_id, new_id

# Columns of `memories` an op carries (everything but the local rowid).
STATE_COLUMNS = (
    "id", "content", "content_hash", "scope", "owner", "user_id", "agent_id", "session_id",
    "task_id", "key", "metadata", "tags", "pinned", "created_at", "created_ts", "updated_ts",
    "expires_ts", "superseded_by", "superseded_ts", "supersede_reason", "forgotten_ts", "hlc",
    "device_id",
)
_INSERT = (
    f"INSERT INTO memories({', '.join(STATE_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in STATE_COLUMNS)}) "
    f"ON CONFLICT(id) DO UPDATE SET "
    + ", ".join(f"{c}=excluded.{c}" for c in STATE_COLUMNS if c != "id")
    + " RETURNING rid"
)
_PLAIN_INSERT = (f"INSERT INTO memories({', '.join(STATE_COLUMNS)}) "
                 f"VALUES ({', '.join('?' for _ in STATE_COLUMNS)})")


@dataclass
class Store:
    conn: apsw.Connection
    clock: HybridClock
    device_id: str
    # Callbacks run after a change commits (the daemon hooks the embedder queue here).
    listeners: list[Any] = field(default_factory=list)
    # How many new memories a commit may leave out of the full-text index (`before_commit`):
    # 0 indexes what each commit wrote; the daemon's writer lets a few commits' worth wait.
    fts_lag: int = 0

    @classmethod
    def open(cls, path: Path, clock: HybridClock | None = None, *, readonly: bool = False,
             durability: str = "normal") -> Store:
        """The store at `path`; `readonly` for a read connection (the writer opens first, so
        the schema and the device id exist)."""
        conn = dbmod.connect(path, readonly=readonly, durability=durability)
        device = dbmod.meta_get(conn, "device_id")
        if device is None:
            if readonly:
                conn.close()
                raise StoreError("the database has no device id yet",
                                 "open it for writing first")
            device = new_device_id()
            with conn:
                dbmod.meta_set(conn, "device_id", device)
        if clock is None:
            row = conn.execute("SELECT max(hlc) FROM ops").fetchone()
            clock = HybridClock(device, row[0] if row else None)
        store = cls(conn, clock, device)
        if not readonly:  # what a stopped or killed writer left waiting for its full text
            mark, top = full_text_tail(conn)
            if top > mark:
                with store.transaction():
                    flush_full_text(conn)
        return store

    def close(self) -> None:
        self.conn.close()

    def transaction(self) -> _Tx:
        return _Tx(self)

    def before_commit(self) -> int:
        """Run last in every write transaction: index the new memories' full text once more
        than `fts_lag` of them wait. How many rids are left waiting."""
        mark, top = full_text_tail(self.conn)
        if top - mark > self.fts_lag:
            flush_full_text(self.conn)
            return 0
        return max(0, top - mark)


class _Tx:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on error (one writer, no upgrade deadlocks)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.conn = store.conn

    def __enter__(self) -> apsw.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            try:
                self.store.before_commit()
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
        self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")


def op_payload(state: dict[str, Any]) -> dict[str, Any]:
    """An op's payload: the state without the text, which the memory's row holds."""
    return {"state": {k: v for k, v in state.items() if k != "content"}}


def full_state(conn: apsw.Connection, payload: str | dict[str, Any]) -> dict[str, Any]:
    """An op's state with its text (from the memory's row when the op keeps a reference)."""
    p = json.loads(payload) if isinstance(payload, str) else payload
    state = dict(p["state"])
    if "content" not in state:
        row = conn.execute("SELECT content FROM memories WHERE id=?", (state["id"],)).fetchone()
        state["content"] = None if row is None else row[0]
    return state


# An op row with its text put back, in SQL (sync reads thousands at a time).
FULL_PAYLOAD_SQL = ("CASE WHEN json_extract({o}.payload, '$.state.content') IS NULL AND "
                    "json_extract({o}.payload, '$.state') IS NOT NULL THEN json_set("
                    "{o}.payload, '$.state.content', (SELECT content FROM memories WHERE "
                    "id={o}.memory_id)) ELSE {o}.payload END")


def append_op(store: Store, kind: str, memory_id: str | None, payload: dict[str, Any] | str,
              hlc: str | None = None, device_id: str | None = None,
              op_id: str | None = None) -> str:
    """Log an op; `payload` is a dict, or its JSON text already made."""
    op_id = op_id or new_id()
    text = payload if isinstance(payload, str) else json.dumps(
        payload, ensure_ascii=False, separators=(",", ":"))
    store.conn.execute(
        "INSERT INTO ops(op_id, hlc, device_id, kind, memory_id, payload, created_ts) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (op_id, hlc or store.clock.now(), device_id or store.device_id, kind, memory_id,
         text, time.time()),
    )
    return op_id


def write_state(store: Store, state: dict[str, Any], kind: str,
                note: dict[str, Any] | None = None, *, new: bool = False) -> int:
    """Upsert one memory's state, refresh its tags, log the op. Returns the row id.

    `new` says the id was just made here, so there are no old tags to clear.
    """
    state["hlc"] = store.clock.now()
    state["device_id"] = store.device_id
    rid = _upsert(store.conn, state, new=new)
    if note:
        payload = op_payload(state)
        payload["note"] = note
        append_op(store, kind, state["id"], payload, hlc=state["hlc"])
    else:  # the same text as json.dumps(op_payload(state)), made without the encoder
        append_op(store, kind, state["id"], new_op_json(state), hlc=state["hlc"])
    return rid


# A batch of new rows at least 1/REBUILD_SHARE of its table's rows (and at least REBUILD_MIN
# rows) is inserted with the table's secondary indexes dropped and rebuilt after it, in the same
# transaction: CREATE INDEX sorts each index once, where row-by-row inserts descend every index
# per row (`memories_hash` in random key order). Below that share the rebuild, which reads the
# whole table, would cost more than it saves (docs/bench-issue-17-writes.md, "import").
REBUILD_SHARE = 4
REBUILD_MIN = 2_000


# The full-text index lags the table (m018_fts_lag): memories_fts holds every memory up to rid
# fts_lag.mark; the ones above it, the newest, wait to be indexed together by one statement
# (FTS5 writes a segment per statement and merges them later: most of a lone write's pages), and
# meanwhile recall scores them from their text (search.keyword_candidates). Each write
# transaction ends with `Store.before_commit`, which flushes once more than `Store.fts_lag` wait;
# the daemon's writer also flushes when it has been idle a moment. The triggers leave rows above
# the mark alone; a rid at or below it (a purged newest row's rid, used again) is indexed at once.


def full_text_tail(conn: apsw.Connection) -> tuple[int, int]:
    """(mark, largest rid): the memories with a rid above mark are not in memories_fts yet."""
    row = conn.execute("SELECT (SELECT mark FROM fts_lag), "
                       "(SELECT coalesce(max(rid), 0) FROM memories)").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


# FTS5 writes out the terms a statement adds each time they fill `hashsize` bytes (1 MiB by
# default), as a segment that it merges with the others later: an import's flush of hundreds of
# thousands of memories wrote hundreds of small segments and merged them. A flush of at least
# FTS_BULK rows first raises the store's hashsize to FTS_HASH_BYTES (it stays: only statements
# that add that much text reach it), so it writes a few large segments
# (docs/bench-issue-17-writes.md, twelfth round).
FTS_BULK = 10_000
FTS_HASH_BYTES = 16 << 20


def flush_full_text(conn: apsw.Connection) -> int:
    """Index the full text of every memory above the mark in one statement and move the mark
    past them (in the caller's write transaction); how many rids it covered."""
    mark, top = full_text_tail(conn)
    if top <= mark:
        return 0
    if top - mark >= FTS_BULK:
        conn.execute("INSERT INTO memories_fts(memories_fts, rank) VALUES ('hashsize', ?)",
                     (FTS_HASH_BYTES,))
    conn.execute("INSERT INTO memories_fts(rowid, content, part) "
                 "SELECT rid, content, part FROM memories WHERE rid > ?", (mark,))
    conn.execute("UPDATE fts_lag SET mark = ?", (top,))
    return top - mark


def insert_states(store: Store, states: list[dict[str, Any]], kind: str) -> None:
    """Insert new memories and their ops with executemany (the bulk form of write_state)."""
    if not states:
        return
    dev = store.device_id
    now = store.clock.now
    ops = []
    for state in states:
        state["hlc"] = hlc = now()
        state["device_id"] = dev
        ops.append((new_id(), hlc, dev, kind, state["id"], new_op_json(state),
                    state["updated_ts"]))
    _insert_new(store.conn, states)
    insert_ops(store.conn, ops)


def insert_ops(conn: apsw.Connection, ops: list[tuple[Any, ...]], *,
               indexes: bool = True) -> None:
    """INSERT op rows (op_id, hlc, device_id, kind, memory_id, payload, created_ts).
    `indexes=False`: leave the table's indexes alone (the caller holds a `bulk_indexes`)."""
    with bulk_indexes(conn, "ops", "seq", len(ops) if indexes else 0):
        conn.executemany("INSERT INTO ops(op_id, hlc, device_id, kind, memory_id, payload, "
                         "created_ts) VALUES (?, ?, ?, ?, ?, ?, ?)", ops)


_KEY_JSON = {c: json.dumps(c) + ":" for c in STATE_COLUMNS}
# The key order of a state `write._new_state` makes, once stamped (insert_states).
NEW_STATE_KEYS = ("id", "content", "content_hash", "scope", "owner", "user_id", "agent_id",
                  "session_id", "task_id", "key", "metadata", "tags", "pinned", "created_at",
                  "created_ts", "updated_ts", "expires_ts", "superseded_by", "superseded_ts",
                  "supersede_reason", "forgotten_ts", "hlc", "device_id")


def _jv(v: Any) -> str:
    """One plain value as JSON, as json.dumps writes it; ValueError for any other."""
    if v is None:
        return "null"
    t = type(v)
    if t is str:
        return str(encode_str(v))
    if t is int:
        return int.__repr__(v)
    if t is float and v - v == 0:
        return float.__repr__(v)
    raise ValueError(v)


def new_op_json(s: dict[str, Any]) -> str:
    """`op_json` of a state with the NEW_STATE_KEYS order, in one expression."""
    if tuple(s) != NEW_STATE_KEYS:
        return op_json(s)
    e = encode_str
    try:
        return (f'{{"state":{{"id":{e(s["id"])},"content_hash":{e(s["content_hash"])},'
                f'{op_middle(s)}"hlc":{e(s["hlc"])},"device_id":{e(s["device_id"])}}}}}')
    except (TypeError, ValueError):
        return op_json(s)


def op_middle(s: dict[str, Any]) -> str:
    """The part of `new_op_json`'s text from "scope" to "forgotten_ts" and its comma (a
    bulk insert reuses it for lines that differ only in id, text and clock); TypeError or
    ValueError for a value that is not plain."""
    e, j = encode_str, _jv
    return (f'"scope":{e(s["scope"])},"owner":{e(s["owner"])},'
            f'"user_id":{e(s["user_id"])},"agent_id":{e(s["agent_id"])},'
            f'"session_id":{j(s["session_id"])},"task_id":{j(s["task_id"])},'
            f'"key":{j(s["key"])},"metadata":{e(s["metadata"])},"tags":{e(s["tags"])},'
            f'"pinned":{j(s["pinned"])},"created_at":{e(s["created_at"])},'
            f'"created_ts":{j(s["created_ts"])},"updated_ts":{j(s["updated_ts"])},'
            f'"expires_ts":{j(s["expires_ts"])},"superseded_by":{j(s["superseded_by"])},'
            f'"superseded_ts":{j(s["superseded_ts"])},'
            f'"supersede_reason":{j(s["supersede_reason"])},'
            f'"forgotten_ts":{j(s["forgotten_ts"])},')


def op_json(state: dict[str, Any]) -> str:
    """`json.dumps(op_payload(state), ensure_ascii=False, separators=(",", ":"))`, the same
    text, built from the state's plain values without the encoder's per-call set-up (an import
    makes one per line); any other value goes through json.dumps."""
    try:
        body = ",".join((_KEY_JSON.get(k) or encode_str(k) + ":") + _jv(v)
                        for k, v in state.items() if k != "content")
    except ValueError:
        return json.dumps(op_payload(state), ensure_ascii=False, separators=(",", ":"))
    return '{"state":{' + body + "}}"


encode_str: Any = getattr(json.encoder, "c_encode_basestring", None) or \
    json.encoder.py_encode_basestring


class bulk_indexes:
    """Around a bulk insert of `n` new rows into `table`: when they are a large share of it
    (REBUILD_SHARE), its secondary indexes are dropped first and created again after, in the
    caller's transaction (a rollback restores them; readers never see the table without them).
    Their planner statistics (sqlite_stat1) are kept as they were. Inside, nothing may look the
    table up by them (`drops` says whether it will drop them)."""

    def __init__(self, conn: apsw.Connection, table: str, key: str, n: int) -> None:
        self.conn = conn
        self.indexes: list[tuple[str, str]] = []
        self.stats: list[tuple[Any, ...]] = []
        if n < REBUILD_MIN:
            return
        rows = int(dbmod.scalar(conn, f"SELECT coalesce(max({key}), 0) FROM {table}"))
        if n * REBUILD_SHARE < rows:
            return
        self.indexes = [(str(a), str(b)) for a, b in conn.execute(
            "SELECT name, sql FROM sqlite_schema WHERE type='index' AND tbl_name=? "
            "AND sql IS NOT NULL", (table,))]

    @property
    def drops(self) -> bool:
        return bool(self.indexes)

    def __enter__(self) -> None:
        if not self.indexes:
            return
        names = [n for n, _ in self.indexes]
        if self.conn.execute("SELECT 1 FROM sqlite_schema WHERE name='sqlite_stat1'").fetchone():
            self.stats = list(self.conn.execute(
                "SELECT tbl, idx, stat FROM sqlite_stat1 WHERE idx IN (SELECT value FROM "
                "json_each(?))", (json.dumps(names),)))
        for name in names:
            self.conn.execute(f'DROP INDEX "{name}"')

    def __exit__(self, *exc: object) -> None:
        for _, sql in self.indexes:
            self.conn.execute(sql)
        if self.stats:
            self.conn.executemany("INSERT INTO sqlite_stat1(tbl, idx, stat) VALUES (?, ?, ?)",
                                  self.stats)


def _insert_new(conn: apsw.Connection, states: list[dict[str, Any]]) -> None:
    """INSERT memories known to be new, with their tags."""
    insert_rows(conn, [[s.get(c) for c in STATE_COLUMNS] for s in states],
                {s["id"]: t for s in states if (t := _tags(s["tags"]))})


def insert_rows(conn: apsw.Connection, rows: list[Any], tagged: dict[str, list[str]], *,
                indexes: bool = True) -> None:
    """INSERT new memories given as rows of STATE_COLUMNS, and the tags of those in `tagged`
    (id: tags); their full text is indexed with the transaction's others (flush_full_text).
    `indexes=False`: leave the table's indexes alone (the caller holds a `bulk_indexes`)."""
    with bulk_indexes(conn, "memories", "rid", len(rows) if indexes else 0):
        conn.executemany(_PLAIN_INSERT, rows)
    if tagged:
        rids = conn.execute("SELECT id, rid FROM memories WHERE id IN "
                            "(SELECT value FROM json_each(?))", (json.dumps(list(tagged)),))
        conn.executemany("INSERT OR IGNORE INTO memory_tags(rid, tag) VALUES (?, ?)",
                         [(rid, t) for mid, rid in rids for t in tagged[mid]])


def _tags(raw: Any) -> list[str]:
    return list(json.loads(raw) if isinstance(raw, str) else raw or [])


def _upsert(conn: apsw.Connection, state: dict[str, Any], new: bool = False) -> int:
    rid = int(dbmod.scalar(conn, _INSERT, [state.get(c) for c in STATE_COLUMNS]))
    if not new:
        conn.execute("DELETE FROM memory_tags WHERE rid=?", (rid,))
    tags = state["tags"]
    if isinstance(tags, str):
        tags = json.loads(tags) if tags != "[]" else None
    if tags:
        conn.executemany("INSERT OR IGNORE INTO memory_tags(rid, tag) VALUES (?, ?)",
                         [(rid, t) for t in tags])
    return rid


def apply_remote_state(store: Store, state: dict[str, Any], kind: str, op_id: str,
                       hlc: str, device_id: str) -> bool:
    """Apply an op from another device: last writer (by clock) wins; replay is a no-op."""
    if store.conn.execute("SELECT 1 FROM ops WHERE op_id=? OR (kind='purge' AND "
                          "memory_id=?)", (op_id, state["id"])).fetchone():
        return False  # seen, or about a memory purged here
    store.clock.observe(hlc)
    row = store.conn.execute("SELECT hlc FROM memories WHERE id=?", (state["id"],)).fetchone()
    changed = row is None or str(row[0]) < hlc
    if changed:
        _upsert(store.conn, {**state, "hlc": hlc, "device_id": device_id})
    append_op(store, kind, state["id"], op_payload(state), hlc=hlc, device_id=device_id,
              op_id=op_id)
    return changed


def apply_remote_states(store: Store, ops: list[tuple[dict[str, Any], str, str, str, str]]
                        ) -> list[str]:
    """`apply_remote_state` for a batch of (state, kind, op_id, hlc, device_id), with the same
    outcome as applying them one by one, in a few set-wise statements (sync pulls thousands).
    Returns the ids of the memories whose state changed."""
    conn = store.conn
    seen: set[str] = set()
    ids: set[str] = set()
    for i in range(0, len(ops), 500):
        chunk = ops[i:i + 500]
        marks = ",".join("?" * len(chunk))
        seen.update(r[0] for r in conn.execute(
            f"SELECT op_id FROM ops WHERE op_id IN ({marks})", [o[2] for o in chunk]))
        ids.update(o[0]["id"] for o in chunk)
    current: dict[str, str] = {}
    id_list = list(ids)
    for i in range(0, len(id_list), 500):
        chunk_ids = id_list[i:i + 500]
        current.update((str(a), str(b)) for a, b in conn.execute(
            f"SELECT id, hlc FROM memories WHERE id IN ({','.join('?' * len(chunk_ids))})",
            chunk_ids))
    known = set(current)
    # A memory purged here (by `db0 purge` or a pulled purge) is not brought back by an op
    # about it from a device that had not seen the purge.
    purged: set[str] = set()
    for i in range(0, len(id_list), 500):
        chunk_ids = id_list[i:i + 500]
        purged.update(str(r[0]) for r in conn.execute(
            "SELECT memory_id FROM ops WHERE kind='purge' AND memory_id IN "
            f"({','.join('?' * len(chunk_ids))})", chunk_ids))
    newest: dict[str, dict[str, Any]] = {}
    log: list[tuple[Any, ...]] = []
    now = time.time()
    for state, kind, op_id, hlc, device_id in ops:
        if op_id in seen or state["id"] in purged:
            continue
        seen.add(op_id)
        store.clock.observe(hlc)
        if state["id"] not in current or current[state["id"]] < hlc:
            current[state["id"]] = hlc
            newest[state["id"]] = {**state, "hlc": hlc, "device_id": device_id}
        log.append((op_id, hlc, device_id, kind, state["id"],
                    json.dumps(op_payload(state), ensure_ascii=False, separators=(",", ":")),
                    now))
    fresh = [st for mid, st in newest.items() if mid not in known]
    _insert_new(conn, fresh)  # one statement per batch, not per row
    for mid, state in newest.items():
        if mid in known:
            _upsert(conn, state)
    conn.executemany("INSERT INTO ops(op_id, hlc, device_id, kind, memory_id, payload, "
                     "created_ts) VALUES (?, ?, ?, ?, ?, ?, ?)", log)
    return list(newest)


def state_of(conn: apsw.Connection, memory_id: str) -> dict[str, Any] | None:
    cur = conn.execute(f"SELECT {', '.join(STATE_COLUMNS)} FROM memories WHERE id=?",
                       (memory_id,))
    row = cur.fetchone()
    return None if row is None else dict(zip(STATE_COLUMNS, row, strict=True))

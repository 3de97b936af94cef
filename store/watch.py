"""Watched folders in the database: the watch list, and each file's sections as memories.

A section is one memory keyed `watch:<folder>/<path>#<heading anchor>` in the watch's scope and
owner. `sync_file` brings a file's memories in line with its current sections: an unchanged
section is left alone (not rewritten, not re-embedded), a changed one is superseded by its new
text, a section that went away is forgotten. A renamed file keeps its history: each section of
the new path supersedes the old path's section under the new key (reason "renamed from …").
A file's memories, its `watch_sections` rows and its `watch_files` row change in the caller's
transaction, so a crash leaves a file as it was or as it is, never half-indexed.

Reading the filesystem is the daemon's job (daemon/watcher.py); this module touches only the
database and imports nothing of the daemon.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

import apsw

from db0.store import memories, write
from db0.store.context import Context, check_scope
from db0.store.core import Store, state_of
from db0.store.errors import InvalidError, NotFoundError

TAG = "watch"


@dataclass(frozen=True)
class Watch:
    id: int
    path: str
    globs: tuple[str, ...]
    scope: str
    ctx: Context
    created_ts: float

    def key(self, rel: str, anchor: str) -> str:
        """The section's key: its folder, file and heading; their hash when that is longer
        than a key may be (deep paths, long headings), so that every section is taken."""
        full = f"watch:{self.path}/{rel}#{anchor}"
        if len(full) <= memories.MAX_KEY_CHARS:
            return full
        digest = hashlib.sha256(full.encode("utf-8", "surrogateescape")).hexdigest()
        return f"watch:{digest}"

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "path": self.path, "globs": list(self.globs),
                "scope": self.scope, "owner": self.ctx.owner(self.scope),
                "added_at": memories.now_iso(self.created_ts)}


@dataclass(frozen=True)
class FileRow:
    size: int
    mtime_ns: int
    sha256: str


@dataclass(frozen=True)
class Section:
    """One section to store: its anchor, the hash of its text as read, and the memory item."""
    anchor: str
    text_hash: str
    item: write.Prepared


_COLS = "id, path, globs, scope, user_id, agent_id, session_id, task_id, created_ts"


def _watch(row: Any) -> Watch:
    wid, path, globs, scope, user, agent, session, task, ts = row
    return Watch(int(wid), str(path), tuple(json.loads(globs)), str(scope),
                 Context(str(user), str(agent), session, task), float(ts))


def all_watches(conn: apsw.Connection) -> list[Watch]:
    return [_watch(r) for r in conn.execute(f"SELECT {_COLS} FROM watches ORDER BY path")]


def by_path(conn: apsw.Connection, path: str) -> Watch | None:
    row = conn.execute(f"SELECT {_COLS} FROM watches WHERE path=?", (path,)).fetchone()
    return None if row is None else _watch(row)


def add(store: Store, path: str, globs: list[str], scope: str, ctx: Context) -> Watch:
    """Record a new watch; a folder inside (or around) one already watched is refused, since
    both would write the same files under the same keys."""
    check_scope(scope)
    ctx.owner(scope)  # a scope this context cannot own fails now, not at the first file
    if by_path(store.conn, path) is not None:
        raise InvalidError(f"{path} is already watched", "see it with: db0 watch list")
    for other in all_watches(store.conn):
        if path.startswith(other.path.rstrip("/") + "/"):
            raise InvalidError(f"{path} is inside {other.path}, which is already watched",
                               f"watch one of them: db0 watch remove {other.path}")
        if other.path.startswith(path.rstrip("/") + "/"):
            raise InvalidError(f"{path} holds {other.path}, which is already watched",
                               f"watch one of them: db0 watch remove {other.path}")
    now = time.time()
    store.conn.execute(
        "INSERT INTO watches(path, globs, scope, user_id, agent_id, session_id, task_id, "
        "created_ts) VALUES (?,?,?,?,?,?,?,?)",
        (path, json.dumps(globs), scope, ctx.user, ctx.agent,
         ctx.session if scope == "session" else None, ctx.task if scope == "task" else None,
         now))
    watch = by_path(store.conn, path)
    assert watch is not None
    return watch


def remove(store: Store, path: str, forget: bool) -> dict[str, Any]:
    """Stop watching; with `forget` the folder's live memories are forgotten too."""
    watch = by_path(store.conn, path)
    if watch is None:
        raise NotFoundError(f"{path} is not watched", "see the watched folders: db0 watch list")
    forgotten = 0
    if forget:
        for (mid,) in store.conn.execute("SELECT memory_id FROM watch_sections WHERE watch_id=?",
                                         (watch.id,)).fetchall():
            forgotten += _forget(store, str(mid), "watch removed")
    store.conn.execute("DELETE FROM watch_sections WHERE watch_id=?", (watch.id,))
    store.conn.execute("DELETE FROM watch_files WHERE watch_id=?", (watch.id,))
    store.conn.execute("DELETE FROM watches WHERE id=?", (watch.id,))
    return {"removed": watch.path, "forgotten": forgotten, "ids": []}


def files(conn: apsw.Connection, watch_id: int) -> dict[str, FileRow]:
    return {str(p): FileRow(int(s), int(m), str(h)) for p, s, m, h in conn.execute(
        "SELECT path, size, mtime_ns, sha256 FROM watch_files WHERE watch_id=?", (watch_id,))}


def counts(conn: apsw.Connection) -> dict[int, dict[str, int]]:
    out: dict[int, dict[str, int]] = {}
    for wid, n in conn.execute("SELECT watch_id, count(*) FROM watch_files GROUP BY watch_id"):
        out.setdefault(int(wid), {"files": 0, "sections": 0})["files"] = int(n)
    for wid, n in conn.execute("SELECT watch_id, count(*) FROM watch_sections "
                               "GROUP BY watch_id"):
        out.setdefault(int(wid), {"files": 0, "sections": 0})["sections"] = int(n)
    return out


MAX_FRONT_MATTER = 4096  # characters of a note's front matter kept in each section's metadata


def item(watch: Watch, rel: str, anchor: str, content: str,
         front_matter: dict[str, Any] | str | None = None) -> write.Prepared:
    """One section as a memory, through the write path (secrets redacted as everywhere); the
    note's front matter goes in its metadata when it is small."""
    meta: dict[str, Any] = {"source": "watch", "folder": watch.path, "path": rel,
                            "heading": anchor}
    if front_matter and len(json.dumps(front_matter)) <= MAX_FRONT_MATTER:
        meta["front_matter"] = front_matter
    return write.prepare({
        "content": content.replace("\x00", ""), "scope": watch.scope,
        "key": watch.key(rel, anchor), "tags": [TAG], "metadata": meta})


def _forget(store: Store, memory_id: str, reason: str) -> int:
    state = state_of(store.conn, memory_id)
    if state is None or state["forgotten_ts"] is not None or state["superseded_by"] is not None:
        return 0
    memories.forget(store, memory_id, reason)
    return 1


def _sections(conn: apsw.Connection, watch_id: int, rel: str) -> dict[str, tuple[int, str, str]]:
    return {str(a): (int(o), str(h), str(m)) for a, o, h, m in conn.execute(
        "SELECT anchor, ord, text_hash, memory_id FROM watch_sections WHERE watch_id=? AND "
        "path=?", (watch_id, rel))}


def sync_file(store: Store, watch: Watch, rel: str, row: FileRow, sections: list[Section],
              old_rel: str | None = None) -> list[str]:
    """Make `rel`'s memories match `sections` (`old_rel`: the path it was renamed from).
    Returns the ids of the memories written (for the embedder)."""
    src = old_rel or rel
    old = _sections(store.conn, watch.id, src)
    if old_rel is not None:
        # Whatever the target path held before (an atomic save's rename over it) goes too.
        for _a, (_o, _h, mid) in _sections(store.conn, watch.id, rel).items():
            _forget(store, mid, f"replaced by {old_rel}")
    new_anchors = {s.anchor for s in sections}
    # A renamed heading keeps its place: pair a vanished anchor with a new one at the same
    # position, so the section's history carries on instead of forget + new.
    by_ord = {o: a for a, (o, _h, _m) in old.items() if a not in new_anchors}
    ids: list[str] = []
    rows: list[tuple[str, int, str, str]] = []
    used: set[str] = set()
    ctx = watch.ctx
    for ord_, sec in enumerate(sections):
        prev = sec.anchor if sec.anchor in old else by_ord.get(ord_)
        if prev is not None and prev not in used:
            used.add(prev)
            _o, o_hash, o_mid = old[prev]
            if o_hash == sec.text_hash and prev == sec.anchor and src == rel:
                rows.append((sec.anchor, ord_, sec.text_hash, o_mid))
                continue
            why = (f"renamed from {src}" if src != rel
                   else "heading renamed" if prev != sec.anchor else "edited")
            res = write.remember(store, ctx, sec.item, supersedes=o_mid, reason=why,
                                 kind="watch")
        else:
            res = write.remember(store, ctx, sec.item, kind="watch")
        rows.append((sec.anchor, ord_, sec.text_hash, str(res["id"])))
        if res["status"] == "stored":
            ids.append(str(res["id"]))
    for anchor, (_o, _h, mid) in old.items():
        if anchor not in used:
            _forget(store, mid, f"section removed from {src}")
    conn = store.conn
    conn.execute("DELETE FROM watch_sections WHERE watch_id=? AND path IN (?, ?)",
                 (watch.id, src, rel))
    conn.executemany("INSERT INTO watch_sections(watch_id, path, anchor, ord, text_hash, "
                     "memory_id) VALUES (?,?,?,?,?,?)",
                     [(watch.id, rel, a, o, h, m) for a, o, h, m in rows])
    if src != rel:
        conn.execute("DELETE FROM watch_files WHERE watch_id=? AND path=?", (watch.id, src))
    touch_file(store, watch.id, rel, row)
    return ids


def touch_file(store: Store, watch_id: int, rel: str, row: FileRow) -> None:
    """Record a file's (size, mtime, hash) as indexed."""
    store.conn.execute(
        "INSERT INTO watch_files(watch_id, path, size, mtime_ns, sha256, indexed_ts) "
        "VALUES (?,?,?,?,?,?) ON CONFLICT(watch_id, path) DO UPDATE SET size=excluded.size, "
        "mtime_ns=excluded.mtime_ns, sha256=excluded.sha256, indexed_ts=excluded.indexed_ts",
        (watch_id, rel, row.size, row.mtime_ns, row.sha256, time.time()))


def drop_file(store: Store, watch: Watch, rel: str, reason: str) -> int:
    """A file that is gone (or no longer a note): forget its memories, drop its rows."""
    n = 0
    for _a, (_o, _h, mid) in _sections(store.conn, watch.id, rel).items():
        n += _forget(store, mid, reason)
    store.conn.execute("DELETE FROM watch_sections WHERE watch_id=? AND path=?", (watch.id, rel))
    store.conn.execute("DELETE FROM watch_files WHERE watch_id=? AND path=?", (watch.id, rel))
    return n

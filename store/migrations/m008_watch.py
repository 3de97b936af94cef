"""Watched folders: the folders the daemon keeps in step, and what it indexed there.

- `watches`: a folder (its real path), the glob patterns it takes, and the scope and context
  its memories are written in.
- `watch_files`: each file indexed, with the (size, mtime_ns, sha256) it had, so a rescan reads
  only files whose size or mtime moved and re-indexes only those whose hash changed.
- `watch_sections`: each section of a file (by its heading anchor), the hash of its text and
  the memory that holds it, so an edit rewrites only the sections that changed.

Paths in the last two are relative to the watched folder.
"""

from __future__ import annotations

import apsw

SQL = """
CREATE TABLE watches (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    globs TEXT NOT NULL,           -- JSON list of fnmatch patterns
    scope TEXT NOT NULL,
    user_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    session_id TEXT,
    task_id TEXT,
    created_ts REAL NOT NULL
);
CREATE TABLE watch_files (
    watch_id INTEGER NOT NULL REFERENCES watches(id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    indexed_ts REAL NOT NULL,
    PRIMARY KEY (watch_id, path)
) WITHOUT ROWID;
CREATE TABLE watch_sections (
    watch_id INTEGER NOT NULL REFERENCES watches(id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    anchor TEXT NOT NULL,
    ord INTEGER NOT NULL,
    text_hash TEXT NOT NULL,
    memory_id TEXT NOT NULL,
    PRIMARY KEY (watch_id, path, anchor)
) WITHOUT ROWID;
"""


def migrate(conn: apsw.Connection) -> None:
    conn.execute(SQL)

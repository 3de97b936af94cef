"""Sync bookkeeping: per remote, how far the local op log was pushed and the remote's log
pulled (a server-assigned sequence), and which pulled ops came from which remote (so they are
not pushed back to where they came from)."""

from __future__ import annotations

import apsw

SQL = """
CREATE TABLE sync_state (
    remote TEXT PRIMARY KEY,
    database_id TEXT,                 -- the remote database's identity: a new one resets marks
    pushed_seq INTEGER NOT NULL DEFAULT 0,   -- local ops.seq pushed up to (inclusive)
    pulled_seq INTEGER NOT NULL DEFAULT 0,   -- remote db0.ops.seq pulled up to (inclusive)
    vectors_pushed INTEGER NOT NULL DEFAULT 0,  -- local memory_vectors.id sent (searchable copy)
    pushed_total INTEGER NOT NULL DEFAULT 0,
    pulled_total INTEGER NOT NULL DEFAULT 0,
    last_sync_ts REAL,
    last_error TEXT,
    last_error_ts REAL
);

CREATE TABLE sync_origin (
    op_id TEXT PRIMARY KEY,
    remote TEXT NOT NULL
) WITHOUT ROWID;
"""


def migrate(conn: apsw.Connection) -> None:
    conn.execute(SQL)

"""The first schema: memories with their scope and context, tags, FTS5, the op log, meta."""

from __future__ import annotations

import apsw

SQL = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

CREATE TABLE memories (
    rid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    content TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    scope TEXT NOT NULL CHECK (scope IN ('user', 'agent', 'session', 'task')),
    owner TEXT NOT NULL,              -- the id of the scope's owner: user, agent, session or task
    user_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    session_id TEXT,
    task_id TEXT,
    key TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    tags TEXT NOT NULL DEFAULT '[]',
    pinned INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,         -- ISO 8601, as given when the fact happened
    created_ts REAL NOT NULL,         -- created_at in Unix seconds, for ordering and recency
    updated_ts REAL NOT NULL,
    expires_ts REAL,
    superseded_by TEXT,
    superseded_ts REAL,
    supersede_reason TEXT,
    forgotten_ts REAL,
    hlc TEXT NOT NULL,                -- clock of the last change: last writer wins in sync
    device_id TEXT NOT NULL
);
CREATE INDEX memories_owner ON memories(scope, owner) WHERE superseded_by IS NULL
    AND forgotten_ts IS NULL;
CREATE INDEX memories_hash ON memories(content_hash, scope, owner);
CREATE INDEX memories_key ON memories(key, scope, owner) WHERE key IS NOT NULL;
CREATE INDEX memories_created ON memories(created_ts);
CREATE INDEX memories_expires ON memories(expires_ts) WHERE expires_ts IS NOT NULL;
CREATE INDEX memories_superseded_by ON memories(superseded_by) WHERE superseded_by IS NOT NULL;

CREATE TABLE memory_tags (
    rid INTEGER NOT NULL REFERENCES memories(rid) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (tag, rid)
) WITHOUT ROWID;

CREATE VIRTUAL TABLE memories_fts USING fts5(
    content, content='memories', content_rowid='rid', tokenize='porter unicode61'
);
CREATE TRIGGER memories_ai AFTER INSERT ON memories BEGIN
    INSERT INTO memories_fts(rowid, content) VALUES (new.rid, new.content);
END;
CREATE TRIGGER memories_ad AFTER DELETE ON memories BEGIN
    INSERT INTO memories_fts(memories_fts, rowid, content) VALUES ('delete', old.rid, old.content);
END;
CREATE TRIGGER memories_au AFTER UPDATE OF content ON memories BEGIN
    INSERT INTO memories_fts(memories_fts, rowid, content) VALUES ('delete', old.rid, old.content);
    INSERT INTO memories_fts(rowid, content) VALUES (new.rid, new.content);
END;

-- Append-only: every mutation is one row, written in the same transaction as the change.
CREATE TABLE ops (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    op_id TEXT NOT NULL UNIQUE,
    hlc TEXT NOT NULL,
    device_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    memory_id TEXT,
    payload TEXT NOT NULL,
    created_ts REAL NOT NULL
);
CREATE INDEX ops_memory ON ops(memory_id);
CREATE TRIGGER ops_no_update BEFORE UPDATE ON ops BEGIN
    SELECT RAISE(ABORT, 'the op log is append-only');
END;
"""


def migrate(conn: apsw.Connection) -> None:
    conn.execute(SQL)

"""Sessions and tasks with their lifetimes, checkpoints, and links between memories.

A session branched from a checkpoint records its parent and the cutoff (time and op sequence):
it sees the parent's session memories as they were then. Links are ops too (kind "link").
"""

from __future__ import annotations

import apsw

SQL = """
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    label TEXT,
    started_ts REAL NOT NULL,
    last_seen_ts REAL NOT NULL,
    ended_ts REAL,
    end_reason TEXT,
    idle_ttl REAL,                 -- seconds; NULL: the daemon's [session] idle_ttl
    parent_session TEXT,           -- a branch: the session it was branched from
    parent_cutoff_ts REAL,         -- ... as it was at this time
    parent_cutoff_seq INTEGER,     -- ... and this op sequence number
    checkpoint_id TEXT,
    summary TEXT
);
CREATE INDEX sessions_open ON sessions(ended_ts, last_seen_ts);
CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    session_id TEXT,
    user_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    label TEXT,
    started_ts REAL NOT NULL,
    ended_ts REAL,
    end_reason TEXT
);
CREATE TABLE checkpoints (
    id TEXT PRIMARY KEY,
    session_id TEXT,
    task_id TEXT,
    user_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    label TEXT,
    state TEXT,                    -- the caller's state document (JSON text), if any
    op_seq INTEGER NOT NULL,       -- the op log position it marks
    created_ts REAL NOT NULL
);
CREATE INDEX checkpoints_session ON checkpoints(session_id, created_ts);
CREATE TABLE links (
    src TEXT NOT NULL,
    dst TEXT NOT NULL,
    type TEXT NOT NULL CHECK (type IN ('related', 'supports', 'contradicts', 'derived')),
    created_ts REAL NOT NULL,
    PRIMARY KEY (src, dst, type)
) WITHOUT ROWID;
CREATE INDEX links_dst ON links(dst);
CREATE INDEX memories_pinned ON memories(rid) WHERE pinned = 1;
"""


def migrate(conn: apsw.Connection) -> None:
    conn.execute(SQL)

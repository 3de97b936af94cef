"""What the hooks injected: each time db0 gave an agent context (at session start, at a
prompt), the text, its token count and the memories in it, so a later prompt of the same agent
session is not given them again and a person can see what the agent was told.
"""

from __future__ import annotations

import apsw

SQL = """
CREATE TABLE injections (
    id INTEGER PRIMARY KEY,
    agent TEXT NOT NULL,
    agent_session TEXT NOT NULL,
    session_id TEXT,
    event TEXT NOT NULL,
    ts REAL NOT NULL,
    query TEXT,
    tokens INTEGER NOT NULL,
    memory_ids TEXT NOT NULL,      -- JSON list
    text TEXT NOT NULL
);
CREATE INDEX injections_session ON injections(agent, agent_session, ts);
"""


def migrate(conn: apsw.Connection) -> None:
    conn.execute(SQL)

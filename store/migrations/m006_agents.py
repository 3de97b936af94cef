"""Agents: which db0 session an agent's session maps to, what was captured already.

- `agent_sessions`: an agent's own session id (Claude Code, Codex, Gemini) -> one db0 session,
  with the working directory and the latest summary (a compaction summary, else one made from
  the turns) that the next session in that directory is shown.
- `hook_events`: every hook event handled, by the id the hook gave it, so an event that reached
  the daemon directly and from the spool is handled once.
- `capture_cursors`: per transcript file, the byte offset read up to (a file that shrank is read
  again from the start; what was seen is skipped by `captured_lines`).
- `captured_lines`: transcript line uuids (or a digest of a line without one) already taken.
"""

from __future__ import annotations

import apsw

SQL = """
CREATE TABLE agent_sessions (
    agent TEXT NOT NULL,
    agent_session TEXT NOT NULL,
    session_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    cwd TEXT,
    transcript_path TEXT,
    started_ts REAL NOT NULL,
    last_event_ts REAL NOT NULL,
    summary TEXT,
    summary_kind TEXT,             -- 'compaction': written by the agent's model
    summary_ts REAL,
    first_prompt TEXT,             -- with the next two, a summary when the agent gave none
    last_prompt TEXT,
    last_answer TEXT,
    turns INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (agent, agent_session)
);
CREATE INDEX agent_sessions_cwd ON agent_sessions(user_id, cwd, last_event_ts);
CREATE TABLE hook_events (
    event_id TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    event TEXT NOT NULL,
    handled_ts REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE capture_cursors (
    path TEXT PRIMARY KEY,
    byte_offset INTEGER NOT NULL,
    size INTEGER NOT NULL,
    updated_ts REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE captured_lines (
    uuid TEXT PRIMARY KEY,
    captured_ts REAL NOT NULL
) WITHOUT ROWID;
"""


def migrate(conn: apsw.Connection) -> None:
    conn.execute(SQL)

"""A session's agent sessions and tasks, found by index.

Ending a session reads its open tasks, and the inspector's session page reads its tasks and
the agent sessions mapped to it; each was a pass over every task or agent session the store
ever held (one per agent session a hook saw: thousands for a long-lived user).
tests/test_scaling.py found them once it compared full-scan steps as well as VM steps.
"""

from __future__ import annotations

import apsw

SQL = """
CREATE INDEX agent_sessions_session ON agent_sessions(session_id);
CREATE INDEX tasks_session ON tasks(session_id, started_ts);
"""


def migrate(conn: apsw.Connection) -> None:
    conn.execute(SQL)

"""Sessions and tasks listed newest first, and a session's branches, read through indexes.

Every agent session a hook sees becomes a db0 session, so a user gathers thousands of them;
`db0 session list`, `db0 task list` and the inspector's sessions page and facets took the
newest few by sorting every one of the user's rows, the inspector's session tree found a
session's branches by a pass over all of them, and the expiry job read every open session for
the idle ones (tests/test_scaling.py found all three). A session with its own TTL is found by
the time its TTL runs out (`sessions_ttl`); one on the default TTL through `sessions_open`.
"""

from __future__ import annotations

import apsw

SQL = """
CREATE INDEX sessions_user ON sessions(user_id, started_ts, id);
CREATE INDEX tasks_user ON tasks(user_id, started_ts, id);
CREATE INDEX sessions_parent ON sessions(parent_session, started_ts)
    WHERE parent_session IS NOT NULL;
CREATE INDEX sessions_ttl ON sessions(last_seen_ts + idle_ttl)
    WHERE ended_ts IS NULL AND idle_ttl IS NOT NULL;
"""


def migrate(conn: apsw.Connection) -> None:
    conn.execute(SQL)

"""The full-text row of a memory is rewritten only when its text or partition changes.

Every state change (forget, supersede, pin, tags, a session's end) upserts the whole row, and
`UPDATE OF content, scope, owner` fires whenever those columns are named in the SET list, so
each one deleted the memory's tokens from FTS5 and indexed them again, unchanged: a segment
and its merges per forget. The trigger now checks that something it indexes changed.
"""

from __future__ import annotations

import apsw

SQL = """
DROP TRIGGER memories_au;
CREATE TRIGGER memories_au AFTER UPDATE OF content, scope, owner ON memories
WHEN old.content IS NOT new.content OR old.scope IS NOT new.scope OR old.owner IS NOT new.owner
BEGIN
    INSERT INTO memories_fts(memories_fts, rowid, content, part)
        VALUES ('delete', old.rid, old.content, old.part);
    INSERT INTO memories_fts(rowid, content, part) VALUES (new.rid, new.content, new.part);
END;
"""


def migrate(conn: apsw.Connection) -> None:
    conn.execute(SQL)

"""The full-text index may lag the table by the newest memories (store/core.py,
`flush_full_text`).

FTS5 writes a new segment for every statement that adds text, and merges segments later: for a
lone remember that is most of the pages its commit writes. Now `memories_fts` holds the memories
up to rid `fts_lag.mark`; those above it are indexed together, in one statement, by the commit
that finds too many waiting or by the daemon's writer when it is idle, and recall scores them
from their text meanwhile. So the triggers index and unindex only rows at or below the mark: a
row above it is not in the index to be deleted, and its current text is what the flush indexes.
A new row gets a rid at or below the mark only when the newest row was purged and its rid is
used again: that row is indexed at once.
"""

from __future__ import annotations

import apsw

SQL = """
CREATE TABLE fts_lag (mark INTEGER NOT NULL);
INSERT INTO fts_lag(mark) SELECT coalesce(max(rid), 0) FROM memories;
DROP TRIGGER memories_ai;
CREATE TRIGGER memories_ai AFTER INSERT ON memories
WHEN new.rid <= (SELECT mark FROM fts_lag) BEGIN
    INSERT INTO memories_fts(rowid, content, part) VALUES (new.rid, new.content, new.part);
END;
DROP TRIGGER memories_ad;
CREATE TRIGGER memories_ad AFTER DELETE ON memories
WHEN old.rid <= (SELECT mark FROM fts_lag) BEGIN
    INSERT INTO memories_fts(memories_fts, rowid, content, part)
        VALUES ('delete', old.rid, old.content, old.part);
END;
DROP TRIGGER memories_au;
CREATE TRIGGER memories_au AFTER UPDATE OF content, scope, owner ON memories
WHEN (old.content IS NOT new.content OR old.scope IS NOT new.scope OR old.owner IS NOT new.owner)
    AND old.rid <= (SELECT mark FROM fts_lag)
BEGIN
    INSERT INTO memories_fts(memories_fts, rowid, content, part)
        VALUES ('delete', old.rid, old.content, old.part);
    INSERT INTO memories_fts(rowid, content, part) VALUES (new.rid, new.content, new.part);
END;
"""


def migrate(conn: apsw.Connection) -> None:
    conn.execute(SQL)

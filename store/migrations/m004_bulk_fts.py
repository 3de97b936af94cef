"""Bulk inserts index full text once per batch instead of once per row.

FTS5 flushes its pending terms at every statement boundary, so the insert trigger (one
statement per row under executemany) wrote a tiny index segment per memory and merged them
again. While a row sits in `fts_defer` the trigger stays quiet; core.insert_states then indexes
the batch with one INSERT … SELECT in the same transaction (readers never see the flag: it is
gone at commit).
"""

from __future__ import annotations

import apsw

SQL = """
CREATE TABLE fts_defer (flag INTEGER NOT NULL);
DROP TRIGGER memories_ai;
CREATE TRIGGER memories_ai AFTER INSERT ON memories
WHEN NOT EXISTS (SELECT 1 FROM fts_defer) BEGIN
    INSERT INTO memories_fts(rowid, content) VALUES (new.rid, new.content);
END;
"""


def migrate(conn: apsw.Connection) -> None:
    conn.execute(SQL)

"""A change log of vectors, so a persisted vector index knows how far behind the rows it is.

store/vecindex.py keeps each model's vectors in a file that is a rebuildable cache of
`memory_vectors`. The file records the last `vector_changes.seq` it includes; on open it applies
the changes after that (every memory whose vector, or whose scope or owner, changed since) and
never trusts a file the log cannot bring up to date. Written by triggers, so every path that
touches the rows (the embedder, a model drop, a purge's cascade, a sync that moves a memory to
another scope) is covered without anyone remembering to. AUTOINCREMENT: a sequence number is
never reused, even after the log is pruned up to what every index file includes.
"""

from __future__ import annotations

import apsw

SQL = """
CREATE TABLE vector_changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    rid INTEGER NOT NULL               -- memories.rid whose vector or partition changed
);
CREATE TRIGGER memory_vectors_logged_ai AFTER INSERT ON memory_vectors BEGIN
    INSERT INTO vector_changes(rid) VALUES (new.rid);
END;
CREATE TRIGGER memory_vectors_logged_au AFTER UPDATE OF vector, rid, model_id ON memory_vectors
BEGIN
    INSERT INTO vector_changes(rid) VALUES (new.rid);
END;
CREATE TRIGGER memory_vectors_logged_ad AFTER DELETE ON memory_vectors BEGIN
    INSERT INTO vector_changes(rid) VALUES (old.rid);
END;
CREATE TRIGGER memories_partition_logged AFTER UPDATE OF scope, owner ON memories
WHEN old.scope IS NOT new.scope OR old.owner IS NOT new.owner BEGIN
    INSERT INTO vector_changes(rid) VALUES (new.rid);
END;
"""


def migrate(conn: apsw.Connection) -> None:
    conn.execute(SQL)

"""Imports staged before they are committed: an import's lines are checked and kept here batch by
batch, invisible to every read, and move into `memories` in the one transaction that commits the
import; a crash before it leaves only staged rows, which the next start deletes.
`imports_done` remembers which imports committed, so a client that lost its connection during
the commit can ask.
"""

from __future__ import annotations

import apsw

SQL = """
CREATE TABLE import_staging (
    import_id TEXT NOT NULL,
    n INTEGER NOT NULL,
    item BLOB NOT NULL,            -- write.Prepared.staged()
    staged_ts REAL NOT NULL,
    PRIMARY KEY (import_id, n)
) WITHOUT ROWID;
CREATE TABLE imports_done (
    import_id TEXT PRIMARY KEY,
    lines INTEGER NOT NULL,
    stored INTEGER NOT NULL,
    done_ts REAL NOT NULL
);
"""


def migrate(conn: apsw.Connection) -> None:
    conn.execute(SQL)

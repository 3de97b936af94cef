"""An index on the op log's clock, so opening a store reads the newest clock value from the
index instead of scanning every op (Store.open resumes its hybrid clock from `max(hlc)`; a
scan of the log is a read of every op's payload, seconds at a million ops with a cold page
cache, paid before the daemon answers). Sync's ordering by clock can use it too."""

from __future__ import annotations

import apsw

SQL = "CREATE INDEX ops_hlc ON ops(hlc);"


def migrate(conn: apsw.Connection) -> None:
    conn.execute(SQL)

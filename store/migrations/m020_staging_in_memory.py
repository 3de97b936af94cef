"""Imports are staged in the daemon's memory (`write.Staging`), no longer in `import_staging`.

Each staged batch was written into the database, read back by the commit and deleted (its
pages zeroed by secure_delete): a round trip through the WAL for every line of every import,
for rows that never outlived the daemon that wrote them (every start deleted them). Whatever
a stopped daemon left staged could never commit, so the table goes with its rows.
"""

from __future__ import annotations

import apsw


def migrate(conn: apsw.Connection) -> None:
    conn.execute("DROP TABLE IF EXISTS import_staging")

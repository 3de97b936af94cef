"""A memory's tags found by the memory.

`memory_tags`' key is (tag, rid), for listing by tag. Deleting a memory deletes its tags by
`rid` (the foreign key's cascade, and retagging), which without an index led by `rid` is a
pass over every tag row of the store; SQLite hid it while its statistics showed few distinct
tags (a skip-scan) and no longer does now that plans are made without statistics.
"""

from __future__ import annotations

import apsw

SQL = "CREATE INDEX memory_tags_rid ON memory_tags(rid);"


def migrate(conn: apsw.Connection) -> None:
    conn.execute(SQL)

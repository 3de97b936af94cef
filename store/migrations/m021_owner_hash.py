"""The duplicate check finds a live memory by scope, owner and text hash, in that order.

`memories_hash` led with the hash: every remember put its key at a random place in an index
of every memory ever written, so each write dirtied one more page somewhere in it (read in,
written to the WAL, checkpointed back), however few agents were writing. Led by the scope and
owner, a writer's keys fall among its own scope's few pages. Only live memories are looked up
this way (a duplicate of a forgotten or superseded memory is a new memory), so only they are
indexed.

The embedder's reuse of a vector made for the same text in any scope (`vectors.cached`)
looked memories up by hash alone through `memories_hash`; it now finds the vectors by
(model, hash), an index written once per vector rather than once per remember.
"""

from __future__ import annotations

import apsw

SQL = """
DROP INDEX memories_hash;
CREATE INDEX memories_owner_hash ON memories(scope, owner, content_hash)
    WHERE superseded_by IS NULL AND forgotten_ts IS NULL;
CREATE INDEX memory_vectors_hash ON memory_vectors(model_id, content_hash);
"""


def migrate(conn: apsw.Connection) -> None:
    conn.execute(SQL)

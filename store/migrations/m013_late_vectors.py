"""Token vectors for the late-interaction second stage (store/lateint.py).

One row per memory: the installed late-interaction model's token vectors (int8 with a float16
scale per token, lateint.pack), with the sha256 of the model file and the content hash they were
made from. A row whose model or hash is not the current one counts as missing, so the queue is
the data itself, as for memory_vectors. Written in the background by the daemon's
late-interaction component, never on a request's path; recall reads them for its top results.
"""

from __future__ import annotations

import apsw

SQL = """
CREATE TABLE late_vectors (
    rid INTEGER PRIMARY KEY REFERENCES memories(rid) ON DELETE CASCADE,
    model TEXT NOT NULL,              -- sha256 of the late-interaction GGUF
    content_hash TEXT NOT NULL,       -- the text they were made from
    dim INTEGER NOT NULL,
    vectors BLOB NOT NULL
);
"""


def migrate(conn: apsw.Connection) -> None:
    conn.execute(SQL)

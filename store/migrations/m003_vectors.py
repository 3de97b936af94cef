"""Embeddings: which models made vectors, and the vectors themselves.

A vector is float32, little-endian, L2-normalised (sqlite-vec's own format, so its
`vec_distance_cosine` reads it). One row per (model, memory), with the content hash it was made
from: "pending" is a memory that is not forgotten and has no row for the current model, or a row
whose hash is not the memory's — so the queue is the data itself and survives kill -9, and a
memory whose text changed (sync, import) is embedded again. The same hash under another id is
never embedded twice: its vector is copied (the content-hash cache is this table joined on
`memories.content_hash`).

Measured at 100,000 rows of 384 dimensions on 2 cores (bench notes in bench/embed_recall_speed.py):
a vec0 k-NN is a brute-force scan, 110-150 ms (float, int8 or bit, partitioned or not), while a
NumPy matrix product over the same vectors held in memory is 8-9 ms. So the rows live here, the
daemon keeps a matrix per model (store/vectors.py), and sqlite-vec's distance functions serve
the exact filtered path in SQL.
"""

from __future__ import annotations

import apsw

SQL = """
CREATE TABLE embed_models (
    model_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL DEFAULT '',  -- of the GGUF file: a rebuilt model is a new model
    dim INTEGER NOT NULL,
    created_ts REAL NOT NULL,
    UNIQUE (name, sha256)
);

CREATE TABLE memory_vectors (
    id INTEGER PRIMARY KEY,
    model_id INTEGER NOT NULL REFERENCES embed_models(model_id) ON DELETE CASCADE,
    rid INTEGER NOT NULL REFERENCES memories(rid) ON DELETE CASCADE,
    content_hash TEXT NOT NULL,       -- the text the vector was made from
    vector BLOB NOT NULL,
    created_ts REAL NOT NULL,
    UNIQUE (model_id, rid)
);
CREATE INDEX memory_vectors_rid ON memory_vectors(rid);
-- Covering indexes for the queue ("which memories lack an up-to-date vector"): with them the
-- count at 100,000 memories is an index-only walk of ~80 ms instead of ~320 ms.
CREATE INDEX memory_vectors_state ON memory_vectors(model_id, rid, content_hash);
CREATE INDEX memories_live_hash ON memories(rid, content_hash) WHERE forgotten_ts IS NULL;
"""


def migrate(conn: apsw.Connection) -> None:
    conn.execute(SQL)

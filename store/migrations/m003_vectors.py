"""Embeddings: which models made vectors, and the vectors themselves.

A vector is float32, little-endian, L2-normalised (sqlite-vec's own format, so its
`vec_distance_cosine` reads it). One row per (model, memory), with the content hash it was made
from: "pending" is a memory that is not forgotten and has no row for the current model, or a row
whose hash is not the memory's — so the queue is the data itself and survives kill -9, and a
memory whose text changed (sync, import) is embedded again. The same hash under another id is
never embedded twice: its vector is copied (the content-hash cache is this table joined on
`memories.content_hash`).

The rows live in a plain table, not a sqlite-vec `vec0` virtual table: a vec0 k-NN is a
brute-force scan, far slower than searching the vectors held in memory (docs/performance.md).
The daemon searches them through store/vecindex.py, a rebuildable cache of these rows, and
sqlite-vec's distance functions serve the exact filtered path in SQL (store/vectors.py).
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
-- Covering indexes for the queue ("which memories lack an up-to-date vector"): with them
-- counting it is an index-only walk.
CREATE INDEX memory_vectors_state ON memory_vectors(model_id, rid, content_hash);
CREATE INDEX memories_live_hash ON memories(rid, content_hash) WHERE forgotten_ts IS NULL;
"""


def migrate(conn: apsw.Connection) -> None:
    conn.execute(SQL)

"""Full text searched within the scopes a request sees: every memory's (scope, owner) becomes a
token of its own in a second FTS5 column, `part`, so a keyword search for one agent among a
thousand intersects its words with that agent's partition instead of scoring every match in
every scope and filtering afterwards. `part` is a generated column of `memories` (nothing to
keep in step); BM25 gives it no weight.
"""

from __future__ import annotations

import apsw

SQL = """
ALTER TABLE memories ADD COLUMN part TEXT
    GENERATED ALWAYS AS ('zp' || lower(hex(scope || char(31) || owner))) VIRTUAL;
DROP TRIGGER memories_ai;
DROP TRIGGER memories_ad;
DROP TRIGGER memories_au;
DROP TABLE memories_fts;
CREATE VIRTUAL TABLE memories_fts USING fts5(
    content, part, content='memories', content_rowid='rid', tokenize='porter unicode61'
);
CREATE TRIGGER memories_ai AFTER INSERT ON memories
WHEN NOT EXISTS (SELECT 1 FROM fts_defer) BEGIN
    INSERT INTO memories_fts(rowid, content, part) VALUES (new.rid, new.content, new.part);
END;
CREATE TRIGGER memories_ad AFTER DELETE ON memories BEGIN
    INSERT INTO memories_fts(memories_fts, rowid, content, part)
        VALUES ('delete', old.rid, old.content, old.part);
END;
CREATE TRIGGER memories_au AFTER UPDATE OF content, scope, owner ON memories BEGIN
    INSERT INTO memories_fts(memories_fts, rowid, content, part)
        VALUES ('delete', old.rid, old.content, old.part);
    INSERT INTO memories_fts(rowid, content, part) VALUES (new.rid, new.content, new.part);
END;
INSERT INTO memories_fts(memories_fts) VALUES ('rebuild');
"""


def migrate(conn: apsw.Connection) -> None:
    conn.execute(SQL)


def token(scope: str, owner: str) -> str:
    """The `part` token of a (scope, owner) pair, as the generated column makes it."""
    return "zp" + (scope + "\x1f" + owner).encode("utf-8").hex()

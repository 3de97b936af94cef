"""The store on a real SQLite file: migrations, the op log's atomicity, FTS query safety."""

from __future__ import annotations

from pathlib import Path

import apsw
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from db0.store import db as dbmod
from db0.store import memories, search
from db0.store.context import Context
from db0.store.core import Store
from db0.store.errors import StoreError


def test_migrations_from_every_version(tmp_path: Path) -> None:
    steps = dbmod.migrations()
    assert [n for n, _, _ in steps] == sorted({n for n, _, _ in steps})
    for stop_at in range(len(steps)):
        path = tmp_path / f"v{stop_at}.db"
        conn = apsw.Connection(str(path))
        for number, _name, step in steps[:stop_at]:
            conn.execute("BEGIN")
            step(conn)
            conn.execute(f"PRAGMA user_version={number}; PRAGMA application_id="
                         f"{dbmod.APPLICATION_ID}; COMMIT")
        conn.close()
        conn = dbmod.connect(path)
        assert dbmod.schema_version(conn) == steps[-1][0]
        conn.close()


def test_foreign_sqlite_file_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    c = apsw.Connection(str(path))
    c.execute("CREATE TABLE t(x); PRAGMA user_version=3")
    c.close()
    with pytest.raises(StoreError, match="not a db0 database"):
        dbmod.connect(path)


def test_newer_schema_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    dbmod.connect(path).close()
    c = apsw.Connection(str(path))
    c.execute("PRAGMA user_version=999")
    c.close()
    with pytest.raises(StoreError, match="newer than this db0"):
        dbmod.connect(path)


def test_op_log_in_the_same_transaction(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "x.db")
    ctx = Context("u")
    with pytest.raises(RuntimeError), store.transaction():
        memories.remember(store, ctx, memories.validate({"content": "never committed"}))
        raise RuntimeError("crash between the row and the commit")
    c = store.conn
    assert c.execute("SELECT count(*) FROM memories").fetchone()[0] == 0
    assert c.execute("SELECT count(*) FROM ops").fetchone()[0] == 0
    with store.transaction():
        memories.remember(store, ctx, memories.validate({"content": "committed"}))
    assert c.execute("SELECT count(*) FROM ops").fetchone()[0] == 1
    with pytest.raises(apsw.ConstraintError, match="append-only"):
        c.execute("UPDATE ops SET kind='x'")


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_any_text_is_a_safe_query(text: str) -> None:
    q = search.fts_query(text)
    conn = apsw.Connection(":memory:")
    conn.execute("CREATE VIRTUAL TABLE f USING fts5(x, tokenize='porter unicode61')")
    conn.execute("INSERT INTO f VALUES ('some words here')")
    if q is not None:
        conn.execute("SELECT * FROM f WHERE f MATCH ?", (q,)).fetchall()


@pytest.mark.parametrize("n", [5, 200])
def test_bulk_and_single_inserts_index_full_text_alike(tmp_path: Path, n: int) -> None:
    """Batches from core.BULK_FTS rows index their text in one statement: nothing is missed,
    the deferral flag never outlives the transaction, and later single writes index again."""
    store = Store.open(tmp_path / "db.sqlite")
    ctx = Context(user="u")
    items = [memories.validate({"content": f"bulkword{i} shared"}, f"line {i}") for i in range(n)]
    with store.transaction():
        memories.remember_many(store, ctx, items)
    with store.transaction():
        memories.remember(store, ctx, memories.validate({"content": "lonely zebra"}, "x"))
    conn = store.conn
    assert dbmod.scalar(conn, "SELECT count(*) FROM fts_defer") == 0
    assert dbmod.scalar(conn, "SELECT count(*) FROM memories_fts WHERE memories_fts MATCH "
                        "'shared'") == n
    for i in (0, n - 1):
        assert dbmod.scalar(conn, "SELECT count(*) FROM memories_fts WHERE memories_fts MATCH ?",
                            (f"bulkword{i}",)) == 1
    assert dbmod.scalar(conn, "SELECT count(*) FROM memories_fts WHERE memories_fts MATCH "
                        "'zebra'") == 1

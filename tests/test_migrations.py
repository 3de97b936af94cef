"""Schema steps: recorded by name, applied in order, none skipped, whatever state a database is in.

A database from every earlier state (each prefix of the current steps, and each state the
steps' former numbering could leave, where a step numbered below the database's version was
never run) upgrades to exactly the schema of a new database.
"""

from __future__ import annotations

from pathlib import Path

import apsw
import pytest

from db0.store import db as dbmod
from db0.store.errors import StoreError

# The former numbering, and the order the steps landed in: a database created at any point of
# that history had the steps landed so far, applied in number order, and a user_version of the
# largest; later versions ran only steps numbered above it.
OLD_NUMBER = {"m001_initial": 1, "m003_vectors": 2, "m005_semantics": 3, "m002_sync": 4,
              "m006_agents": 5, "m008_watch": 6, "m007_git": 7, "m004_bulk_fts": 10}
LANDED = ["m001_initial", "m002_sync", "m003_vectors", "m004_bulk_fts", "m005_semantics",
          "m006_agents", "m007_git", "m008_watch"]


def _raw(path: Path) -> apsw.Connection:
    conn = apsw.Connection(str(path))
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def test_steps_are_numbered_contiguously() -> None:
    names = [n for n, _ in dbmod.migrations()]
    assert names == sorted(names)
    assert [int(n[1:4]) for n in names] == list(range(1, len(names) + 1))
    assert set(OLD_NUMBER) <= set(names)


def test_a_new_database_records_every_step(tmp_path: Path) -> None:
    conn = dbmod.connect(tmp_path / "new.db")
    assert dbmod.applied_steps(conn) == [n for n, _ in dbmod.migrations()]
    assert dbmod.schema_version(conn) == len(dbmod.migrations())
    assert dbmod.schema_drift(conn) == []
    conn.close()


@pytest.mark.parametrize("k", range(len(dbmod.migrations())))
def test_upgrade_from_each_recorded_prefix(tmp_path: Path, k: int) -> None:
    path = tmp_path / "p.db"
    conn = _raw(path)
    conn.execute("CREATE TABLE schema_migrations (name TEXT PRIMARY KEY, applied_ts REAL "
                 "NOT NULL)")
    for name, step in dbmod.migrations()[:k]:
        conn.execute("BEGIN")
        step(conn)
        conn.execute("INSERT INTO schema_migrations VALUES (?, 1)", (name,))
        conn.execute(f"PRAGMA user_version={k}; PRAGMA application_id={dbmod.APPLICATION_ID};"
                     " COMMIT")
    conn.close()
    conn = dbmod.connect(path)
    assert dbmod.schema_drift(conn) == []
    assert dbmod.applied_steps(conn) == [n for n, _ in dbmod.migrations()]
    conn.close()


@pytest.mark.parametrize("k", range(1, len(LANDED) + 1))
def test_upgrade_from_each_numbered_state(tmp_path: Path, k: int) -> None:
    """The old rule (run steps numbered above user_version) skipped steps that landed with a
    lower number; recorded names find and run them."""
    steps = dict(dbmod.migrations())
    landed = sorted(LANDED[:k], key=OLD_NUMBER.__getitem__)
    path = tmp_path / "old.db"
    conn = _raw(path)
    for name in landed:
        conn.execute("BEGIN")
        steps[name](conn)
        conn.execute(f"PRAGMA user_version={OLD_NUMBER[name]}; PRAGMA application_id="
                     f"{dbmod.APPLICATION_ID}; COMMIT")
    conn.close()
    conn = dbmod.connect(path)
    assert dbmod.schema_drift(conn) == []
    assert set(dbmod.applied_steps(conn)) == set(steps)
    conn.close()


def test_drift_is_reported(tmp_path: Path) -> None:
    conn = dbmod.connect(tmp_path / "d.db")
    conn.execute("DROP INDEX memories_key; CREATE TABLE stray(x)")
    assert dbmod.schema_drift(conn) == ["missing index memories_key", "unexpected table stray"]
    conn.close()


def test_foreign_sqlite_file_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    c = apsw.Connection(str(path))
    c.execute("CREATE TABLE t(x); PRAGMA user_version=3")
    c.close()
    with pytest.raises(StoreError, match="not a db0 database"):
        dbmod.connect(path)


def test_unknown_step_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    dbmod.connect(path).close()
    c = apsw.Connection(str(path))
    c.execute("INSERT INTO schema_migrations VALUES ('m999_future', 1)")
    c.close()
    with pytest.raises(StoreError, match="does not know"):
        dbmod.connect(path)


def test_every_foreign_key_leads_an_index() -> None:
    """Deleting a parent row looks up its children by the foreign key's columns (the cascade):
    without an index those columns lead, each delete is a pass over the child table. Read from
    the schema a new database gets, so a new table is checked without editing this test."""
    conn = apsw.Connection(":memory:")
    dbmod.migrate_db(conn)
    missing = []
    for (table,) in conn.execute("SELECT name FROM sqlite_schema WHERE type='table' AND "
                                 "name NOT LIKE 'sqlite_%' AND sql NOT LIKE 'CREATE VIRTUAL%'"):
        keys: dict[int, list[str]] = {}
        for fk in conn.execute(f"PRAGMA foreign_key_list('{table}')").fetchall():
            keys.setdefault(fk[0], []).append(fk[3])
        if not keys:
            continue
        leads = [[r[2] for r in conn.execute(f"PRAGMA index_info('{ix[1]}')")]
                 for ix in conn.execute(f"PRAGMA index_list('{table}')").fetchall()
                 if not ix[4]]  # a partial index does not hold every child
        leads += [[c[1] for c in conn.execute(f"PRAGMA table_info('{table}')")
                   if c[5] == 1 and c[2].upper() == "INTEGER"]]  # the rowid's alias
        for cols in keys.values():
            if not any(sorted(ix[:len(cols)]) == sorted(cols) for ix in leads):
                missing.append(f"{table}({', '.join(cols)})")
    assert not missing, f"foreign keys no index leads with: {missing}"

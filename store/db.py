"""Opening the SQLite file and migrating its schema.

apsw configured as `apsw.bestpractice` recommends, WAL, a busy timeout, `application_id` to
recognise our file. The schema is the migration folder alone: each `store/migrations/mNNN_*.py`
has a `migrate(conn)`; steps run in order, each in one transaction that also records its name in
`schema_migrations`, so none is ever skipped and none runs twice. Nothing patches the schema at
run time. sqlite-vec is loaded when present.
"""

from __future__ import annotations

import importlib
import pkgutil
import time
from pathlib import Path
from typing import Any

import apsw

from db0.store import sqlstats
from db0.store.errors import StoreError

APPLICATION_ID = 0x64623030  # "db00"
DURABILITY = {"normal": "NORMAL", "full": "FULL"}


def _configure(conn: apsw.Connection) -> None:
    """What apsw.bestpractice recommends, in an order that cannot fail: the busy timeout
    first, so nothing below ever meets a lock with apsw's 100 ms default; no `optimize` on
    open (the writer runs it at close)."""
    conn.set_busy_timeout(10_000)
    conn.config(apsw.SQLITE_DBCONFIG_DQS_DML, 0)
    conn.config(apsw.SQLITE_DBCONFIG_DQS_DDL, 0)
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA recursive_triggers=ON")


def migrations() -> list[tuple[str, Any]]:
    """Every schema step as (name, migrate), in order: `mNNN_name.py`, numbered contiguously."""
    import db0.store.migrations as pkg

    found = []
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("m") and info.name[1:4].isdigit():
            mod = importlib.import_module(f"{pkg.__name__}.{info.name}")
            found.append((info.name, mod.migrate))
    found.sort()
    return found


def _load_vec(conn: apsw.Connection) -> bool:
    try:
        import sqlite_vec
    except ImportError:
        return False
    conn.enable_load_extension(True)
    try:
        conn.load_extension(sqlite_vec.loadable_path())
    finally:
        conn.enable_load_extension(False)
    return True


WRITER_CACHE_KIB = 32 << 10


def connect(path: Path, *, readonly: bool = False, migrate: bool = True,
            durability: str = "normal") -> apsw.Connection:
    """Open the database. A read-only connection cannot write (SQLite enforces the single
    writer); the writable one is in WAL mode with `durability` ("normal": a commit survives a
    killed process; "full": also a power cut) and migrated to the current schema."""
    if not readonly:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    flags = apsw.SQLITE_OPEN_READONLY if readonly else (
        apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE)
    conn = apsw.Connection(str(path), flags=flags)
    sqlstats.install(conn)
    _configure(conn)
    _load_vec(conn)
    if not readonly:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={DURABILITY[durability]}")
        # Forget/purge/redaction promise the text is gone: zero freed space, not just unlink it.
        conn.execute("PRAGMA secure_delete=ON")
        # The one writer updates a memory's row, its indexes, its full text and its op at
        # every write: a page cache that holds their upper levels saves re-reading them from
        # the OS at each insert (SQLite's default is 2 MiB; pages are taken only as used).
        conn.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
        if migrate:
            migrate_db(conn)
            forget_planner_stats(conn)
    return conn


def forget_planner_stats(conn: apsw.Connection) -> None:
    """Plans come from SQLite's built-in estimates, never from statistics. Statistics are a
    snapshot (ANALYZE, `PRAGMA optimize`) that a connection keeps for its whole life, and a
    daemon lives for weeks: taken from a young store (one user, one agent, one session, a
    hundred rows) they make every index look useless, and plans turn into scans as the store
    grows. The statements are written for the built-in estimates (an equality on an indexed
    column finds a few rows) and tests/test_scaling.py checks them with misleading statistics
    planted, which this removes; the daemon runs no ANALYZE."""
    tables = [str(n) for (n,) in conn.execute(
        "SELECT name FROM sqlite_schema WHERE type='table' AND name LIKE 'sqlite_stat%'")]
    if not any(scalar(conn, f"SELECT 1 FROM {t} LIMIT 1") for t in tables):
        return
    with _Tx(conn):
        for t in tables:
            conn.execute(f"DELETE FROM {t}")
    conn.execute("ANALYZE sqlite_schema")  # the statistics in memory are read again: none


def _as_dict(cur: apsw.Cursor, row: apsw.SQLiteValues) -> dict[str, Any]:
    return dict(zip([d[0] for d in cur.getdescription()], row, strict=True))


def rows(conn: apsw.Connection, sql: str, args: Any = ()) -> list[dict[str, Any]]:
    """Every row as a dict by column name (none: an empty list). The names are read while the
    statement runs: asking a finished statement for them fails, which is what an empty
    result is."""
    cur = conn.cursor()
    cur.row_trace = _as_dict
    return list(cur.execute(sql, args))


def row(conn: apsw.Connection, sql: str, args: Any = ()) -> dict[str, Any] | None:
    """The first row as a dict by column name, or None."""
    found = rows(conn, sql, args)
    return found[0] if found else None


def scalar(conn: apsw.Connection, sql: str, args: Any = ()) -> Any:
    """The first column of the first row (None when there is no row)."""
    row = conn.execute(sql, args).fetchone()
    return None if row is None else row[0]


def schema_version(conn: apsw.Connection) -> int:
    """How many schema steps the database has (PRAGMA user_version mirrors the count)."""
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0]) if row else 0


# Databases from before steps were recorded by name kept only a number, and their steps were
# numbered in landing order, not schema order, so a number does not say which steps ran. What
# each step creates does: a step counts as applied when its table exists.
_LEGACY_MARK = {
    "m001_initial": "memories", "m002_sync": "sync_state", "m003_vectors": "memory_vectors",
    "m004_bulk_fts": "fts_defer", "m005_semantics": "sessions", "m006_agents": "agent_sessions",
    "m007_git": "git_rewrites", "m008_watch": "watches",
}


def applied_steps(conn: apsw.Connection) -> list[str]:
    """The names of the schema steps recorded in this database."""
    if scalar(conn, "SELECT 1 FROM sqlite_master WHERE name='schema_migrations'") is None:
        return []
    return [str(r[0]) for r in conn.execute("SELECT name FROM schema_migrations ORDER BY name")]


def migrate_db(conn: apsw.Connection) -> int:
    """Apply every schema step not yet recorded, in order, each in its own transaction with
    its record; returns how many steps the database has."""
    app_id = scalar(conn, "PRAGMA application_id")
    version = schema_version(conn)
    if app_id not in (0, APPLICATION_ID) or (app_id == 0 and version != 0):
        raise StoreError("this file is not a db0 database",
                         "point DB0_HOME at a db0 data directory")
    steps = migrations()
    names = {n for n, _ in steps}
    with _Tx(conn):
        conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations ("
                     "name TEXT PRIMARY KEY, applied_ts REAL NOT NULL)")
        done = set(applied_steps(conn))
        if not done and version:  # a database from before steps were recorded by name
            for name, table in _LEGACY_MARK.items():
                if scalar(conn, "SELECT 1 FROM sqlite_master WHERE name=?", (table,)):
                    conn.execute("INSERT INTO schema_migrations VALUES (?, 0)", (name,))
                    done.add(name)
    newer = sorted(done - names)
    if newer:
        raise StoreError(f"the database has schema steps this db0 does not know ({newer[0]})",
                         "upgrade db0", code="incompatible")
    for name, step in steps:
        if name in done:
            continue
        with _Tx(conn):
            step(conn)
            conn.execute("INSERT INTO schema_migrations VALUES (?, ?)", (name, time.time()))
            done.add(name)
            conn.execute(f"PRAGMA user_version={len(done)}")
            conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
    return len(done)


class _Tx:
    def __init__(self, conn: apsw.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")


def schema_of(conn: apsw.Connection) -> dict[tuple[str, str], str]:
    """The database's schema as {(type, name): normalised SQL}, without SQLite's own tables."""
    return {(str(t), str(n)): " ".join(str(sql or "").split())
            for t, n, sql in conn.execute(
                "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")}


def expected_schema() -> dict[tuple[str, str], str]:
    """The schema a new database gets (built in memory)."""
    conn = apsw.Connection(":memory:")
    _configure(conn)
    try:
        migrate_db(conn)
        return schema_of(conn)
    finally:
        conn.close()


def schema_drift(conn: apsw.Connection) -> list[str]:
    """How this database's schema differs from a new one's (empty when it does not)."""
    have, want = schema_of(conn), expected_schema()
    out = [f"missing {t} {n}" for (t, n) in sorted(want.keys() - have.keys())]
    out += [f"unexpected {t} {n}" for (t, n) in sorted(have.keys() - want.keys())]
    out += [f"{t} {n} differs" for (t, n) in sorted(want.keys() & have.keys())
            if want[(t, n)] != have[(t, n)]]
    return out


def meta_get(conn: apsw.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
    return None if row is None else str(row[0])


def meta_set(conn: apsw.Connection, key: str, value: str) -> None:
    conn.execute("INSERT INTO meta(key, value) VALUES (?, ?) "
                 "ON CONFLICT(key) DO UPDATE SET value=excluded.value", (key, value))

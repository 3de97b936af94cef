"""Opening the SQLite file and migrating its schema.

apsw with `apsw.bestpractice`, WAL, a busy timeout, `application_id` to recognise our file, and
schema steps on `PRAGMA user_version`: each module `store/migrations/mNNN_*.py` has a
`migrate(conn)` run inside one transaction, in order. sqlite-vec is loaded when present.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Any

import apsw
import apsw.bestpractice

from db0.store.errors import StoreError

APPLICATION_ID = 0x64623030  # "db00"
_bestpractice_applied = False


def _apply_bestpractice() -> None:
    global _bestpractice_applied
    if not _bestpractice_applied:
        # Not the logger recipe: it routes every SQLite notice into Python logging at import.
        apsw.bestpractice.apply((
            apsw.bestpractice.connection_wal,
            apsw.bestpractice.connection_busy_timeout,
            apsw.bestpractice.connection_enable_foreign_keys,
            apsw.bestpractice.connection_dqs,
            apsw.bestpractice.connection_recursive_triggers,
            apsw.bestpractice.connection_optimize,
        ))
        _bestpractice_applied = True


def migrations() -> list[tuple[int, str, Any]]:
    import db0.store.migrations as pkg

    found = []
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("m") and info.name[1:4].isdigit():
            mod = importlib.import_module(f"{pkg.__name__}.{info.name}")
            found.append((int(info.name[1:4]), info.name, mod.migrate))
    return sorted(found, key=lambda t: t[0])


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


def connect(path: Path, *, readonly: bool = False, migrate: bool = True) -> apsw.Connection:
    _apply_bestpractice()
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = apsw.SQLITE_OPEN_READONLY if readonly else (
        apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE)
    conn = apsw.Connection(str(path), flags=flags)
    conn.setbusytimeout(10_000)
    _load_vec(conn)
    if not readonly:
        # FULL: a write the CLI was told about survives power loss, not only a crash.
        conn.execute("PRAGMA synchronous=FULL")
        # Forget/purge/redaction promise the text is gone: zero freed space, not just unlink it.
        conn.execute("PRAGMA secure_delete=ON")
        if migrate:
            migrate_db(conn)
    return conn


def scalar(conn: apsw.Connection, sql: str, args: Any = ()) -> Any:
    """The first column of the first row (None when there is no row)."""
    row = conn.execute(sql, args).fetchone()
    return None if row is None else row[0]


def schema_version(conn: apsw.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0]) if row else 0


def migrate_db(conn: apsw.Connection) -> int:
    app_id = scalar(conn, "PRAGMA application_id")
    version = schema_version(conn)
    if app_id not in (0, APPLICATION_ID) or (app_id == 0 and version != 0):
        raise StoreError("this file is not a db0 database",
                         "point DB0_HOME at a db0 data directory")
    steps = migrations()
    newest = steps[-1][0] if steps else 0
    if version > newest:
        raise StoreError(f"the database is at schema {version}, newer than this db0 knows "
                         f"({newest})", "upgrade db0", code="incompatible")
    for number, _name, step in steps:
        if number <= version:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            step(conn)
            conn.execute(f"PRAGMA user_version={number}")
            conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        version = number
    return version


def meta_get(conn: apsw.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
    return None if row is None else str(row[0])


def meta_set(conn: apsw.Connection, key: str, value: str) -> None:
    conn.execute("INSERT INTO meta(key, value) VALUES (?, ?) "
                 "ON CONFLICT(key) DO UPDATE SET value=excluded.value", (key, value))

"""`daemon.*`: hello, status, stop, and the store-wide `store.stats`."""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from db0.daemon import __version__
from db0.daemon.handlers import METHODS, rpc
from db0.daemon.protocol import MAX_FRAME, PROTOCOL
from db0.store import db as dbmod

if TYPE_CHECKING:
    from db0.daemon.server import Request, Server


@rpc("daemon.hello")
def hello(srv: Server, req: Request) -> dict[str, Any]:
    return {"name": "db0", "version": __version__, "protocol": PROTOCOL, "pid": os.getpid(),
            "capabilities": sorted(METHODS), "max_frame": MAX_FRAME}


def _components_status(srv: Server) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, comp in srv.components.items():
        if hasattr(comp, "status"):
            try:
                out[name] = comp.status()
            except Exception as e:
                out[name] = {"error": str(e)}
    return out


@rpc("daemon.status")
def status(srv: Server, req: Request) -> dict[str, Any]:
    assert srv.writer is not None
    with srv.reader() as store:
        memories = dbmod.scalar(store.conn, "SELECT count(*) FROM memories WHERE "
                                "superseded_by IS NULL AND forgotten_ts IS NULL")
    return {
        "running": True, "pid": os.getpid(), "version": __version__, "protocol": PROTOCOL,
        "socket": str(srv.paths.socket), "database": str(srv.paths.db_file),
        "log": str(srv.paths.log_file), "config": str(srv.paths.config_file),
        "uptime_s": round(time.time() - srv.started, 3), "memories": memories,
        "threads": threading.active_count(), "writer_queue": srv.writer.pending,
        "python": sys.version.split()[0], **_components_status(srv),
    }


@rpc("daemon.stop")
def stop(srv: Server, req: Request) -> dict[str, Any]:
    # Answer first, then stop: the socket goes at once, so no client mistakes us for alive.
    threading.Timer(0.05, srv.request_stop, args=(str(req.params.get("reason") or "asked"),)
                    ).start()
    return {"stopping": True, "pid": os.getpid()}


@rpc("store.stats")
def stats(srv: Server, req: Request) -> dict[str, Any]:
    with srv.reader() as store:
        c = store.conn
        by_scope = {s: n for s, n in c.execute(
            "SELECT scope, count(*) FROM memories WHERE superseded_by IS NULL AND "
            "forgotten_ts IS NULL GROUP BY scope")}
        row: Any = c.execute(
            "SELECT count(*), sum(superseded_by IS NOT NULL), sum(forgotten_ts IS NOT NULL), "
            "sum(expires_ts IS NOT NULL AND expires_ts <= ?) FROM memories",
            (time.time(),)).fetchone()
        ops: Any = c.execute("SELECT count(*), max(seq) FROM ops").fetchone()
        return {
            "memories": sum(by_scope.values()), "by_scope": by_scope,
            "rows": row[0] or 0, "superseded": row[1] or 0, "forgotten": row[2] or 0,
            "expired": row[3] or 0, "ops": ops[0] or 0, "last_seq": ops[1] or 0,
            "tags": dbmod.scalar(c, "SELECT count(DISTINCT tag) FROM memory_tags"),
            "schema_version": dbmod.schema_version(c), "device_id": store.device_id,
            "database": str(srv.paths.db_file),
            "database_bytes": _size(srv.paths.db_file),
            "wal_bytes": _size(srv.paths.db_file.with_name(srv.paths.db_file.name + "-wal")),
        }


def _size(p: os.PathLike[str]) -> int:
    try:
        return os.path.getsize(p)
    except OSError:
        return 0


@rpc("daemon.doctor")
def doctor(srv: Server, req: Request) -> dict[str, Any]:
    import apsw

    problems: list[str] = []
    with srv.reader() as store:
        c = store.conn
        quick = dbmod.scalar(c, "PRAGMA quick_check")
        if quick != "ok":
            problems.append(f"database: quick_check says {quick}")
        journal = dbmod.scalar(c, "PRAGMA journal_mode")
        try:
            vec = dbmod.scalar(c, "SELECT vec_version()")
        except apsw.SQLError:
            vec = None
        fts5 = bool(dbmod.scalar(c, "SELECT sqlite_compileoption_used('ENABLE_FTS5')"))
        schema = dbmod.schema_version(c)
    return {
        "running": True, "pid": os.getpid(), "version": __version__,
        "sqlite": apsw.sqlite_lib_version(), "apsw": apsw.apswversion(),
        "sqlite_vec": vec, "fts5": fts5, "journal_mode": journal, "schema_version": schema,
        "quick_check": quick, **_components_status(srv), "problems": problems,
    }

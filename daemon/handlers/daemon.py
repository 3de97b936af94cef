"""`daemon.*`: hello, status, stop, doctor, and the store-wide `store.stats`."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from db0.daemon import __version__
from db0.daemon.core.shapes import Bool, Int, Num, P, Str
from db0.daemon.handlers import METHODS, rpc
from db0.daemon.paths import fix_modes, loose_modes
from db0.daemon.protocol import MAX_FRAME, PROTOCOL, Db0Error, describe
from db0.daemon.services.embedding import EmbeddingService
from db0.store import db as dbmod
from db0.store import search

if TYPE_CHECKING:
    from db0.daemon.core.dispatch import Request
    from db0.daemon.core.runtime import Runtime


@rpc("daemon.hello", {"client_version": P(Str(max_len=64), "the client's db0 version"),
                      "protocol": P(Int(0), "the client's protocol")})
def hello(rt: Runtime, req: Request) -> dict[str, Any]:
    """Who answers: version, protocol, pid and the methods it serves."""
    return {"name": "db0", "version": __version__, "protocol": PROTOCOL, "pid": os.getpid(),
            "capabilities": sorted(METHODS), "max_frame": MAX_FRAME}


def _components_status(rt: Runtime) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for comp in rt.components:
        try:
            out[comp.name] = comp.status()
        except Exception as e:
            out[comp.name] = {"error": describe(e)}
    return out


@rpc("daemon.status")
def status(rt: Runtime, req: Request) -> dict[str, Any]:
    """The daemon's state: pid, uptime, paths, queues and each component's status."""
    assert rt.writer is not None
    with rt.reader() as store:
        # The partial index of live memories holds exactly these rows and is a fraction of
        # the table: SQLite's planner would scan the table (every text) instead.
        memories = dbmod.scalar(store.conn, "SELECT count(*) FROM memories INDEXED BY "
                                "memories_owner WHERE superseded_by IS NULL AND "
                                "forgotten_ts IS NULL")
        asked = rt.config.recall.feedback
        feedback = {"setting": "auto" if asked is None else asked,
                    "on": search.feedback_on(store, asked)}
    return {
        "running": True, "pid": os.getpid(), "version": __version__, "protocol": PROTOCOL,
        "socket": str(rt.paths.socket), "database": str(rt.paths.db_file),
        "log": str(rt.paths.log_file), "config": str(rt.paths.config_file),
        "uptime_s": round(time.time() - rt.started, 3), "memories": memories,
        "threads": threading.active_count(), "writer_queue": rt.writer.pending,
        "commits": rt.writer.commits, "writes": rt.writer.jobs, "feedback": feedback,
        "staged_lines": rt.staging.lines(),
        "python": sys.version.split()[0], **_components_status(rt),
    }


@rpc("daemon.stop", {"reason": P(Str(max_len=200), "why (logged)", default="asked")})
def stop(rt: Runtime, req: Request) -> dict[str, Any]:
    """Stop the daemon (it answers first; requests in flight finish)."""
    stopper = rt.stopper
    assert stopper is not None
    threading.Timer(0.05, stopper, args=(req.params["reason"],)).start()
    return {"stopping": True, "pid": os.getpid()}


@rpc("store.stats")
def stats(rt: Runtime, req: Request) -> dict[str, Any]:
    """Counts by scope and state, the op log, the file sizes."""
    with rt.reader() as store:
        c = store.conn
        by_scope = {s: n for s, n in c.execute(
            "SELECT scope, count(*) FROM memories WHERE superseded_by IS NULL AND "
            "forgotten_ts IS NULL GROUP BY scope")}
        # Each count from an index that holds just its rows (partial indexes), not a pass
        # over every text of the table.
        row: Any = c.execute(
            "SELECT (SELECT count(*) FROM memories INDEXED BY memories_created), "
            "(SELECT count(*) FROM memories INDEXED BY memories_superseded_by "
            "WHERE superseded_by IS NOT NULL), "
            "(SELECT count(*) FROM memories INDEXED BY memories_live_hash "
            "WHERE forgotten_ts IS NULL), "
            "(SELECT count(*) FROM memories INDEXED BY memories_expires "
            "WHERE expires_ts IS NOT NULL AND expires_ts <= ?)", (time.time(),)).fetchone()
        ops: Any = c.execute("SELECT count(*), max(seq) FROM ops").fetchone()
        return {
            "memories": sum(by_scope.values()), "by_scope": by_scope,
            "rows": row[0] or 0, "superseded": row[1] or 0, "forgotten": row[0] - row[2],
            "expired": row[3] or 0, "ops": ops[0] or 0, "last_seq": ops[1] or 0,
            "tags": dbmod.scalar(c, "SELECT count(DISTINCT tag) FROM memory_tags"),
            "schema_version": dbmod.schema_version(c), "device_id": store.device_id,
            "database": str(rt.paths.db_file),
            "database_bytes": _size(rt.paths.db_file),
            "wal_bytes": _size(rt.paths.db_file.with_name(rt.paths.db_file.name + "-wal")),
        }


def _quick_check(conn: Any, seconds: float, gone: Callable[[], bool]) -> str | None:
    """`PRAGMA quick_check`'s answer, or None when it did not finish in `seconds` (0: no
    limit) or the client hung up (`gone()`): it reads every page, minutes at a million
    memories, and a request that outlived its client would keep a core and a read
    connection busy for nobody."""
    import apsw

    until = time.monotonic() + seconds if seconds > 0 else float("inf")
    conn.set_progress_handler(lambda: time.monotonic() > until or gone(), 1_000)
    try:
        return str(dbmod.scalar(conn, "PRAGMA quick_check"))
    except apsw.InterruptError:
        return None
    finally:
        conn.set_progress_handler(None)


def _size(p: os.PathLike[str]) -> int:
    try:
        return os.path.getsize(p)
    except OSError:
        return 0


CHECK_S = 10.0  # how long doctor's database check may run unless asked for all of it


@rpc("daemon.doctor", {
    "fix": P(Bool(), "repair what can be repaired (file modes)", default=False),
    "check_s": P(Num(lo=0), "seconds the database's page check may take (0: however long it "
                 "takes; a large store needs minutes)", default=CHECK_S),
})
def doctor(rt: Runtime, req: Request) -> dict[str, Any]:
    """Health checks: the database, its schema, file modes, the config and the model."""
    import apsw

    problems: list[str] = []
    warnings: list[str] = []
    fixed: list[str] = []
    with rt.reader() as store:
        c = store.conn
        quick = _quick_check(c, float(req.params["check_s"]), req.gone)
        if quick is None and req.gone():
            raise Db0Error("busy", "the client hung up during the page check", "run it again")
        if quick is None:
            quick = f"not finished in {req.params['check_s']:g} s"
            warnings.append(f"database: the page check did not finish in "
                            f"{req.params['check_s']:g} s (to fix: db0 doctor --full checks "
                            "every page, minutes for a large store)")
        elif quick != "ok":
            problems.append(f"database: quick_check says {quick} (to fix: restore a backup, "
                            "or db0 export what is readable and import it into a new home)")
        journal = dbmod.scalar(c, "PRAGMA journal_mode")
        try:
            vec = dbmod.scalar(c, "SELECT vec_version()")
        except apsw.SQLError:
            vec = None
        fts5 = bool(dbmod.scalar(c, "SELECT sqlite_compileoption_used('ENABLE_FTS5')"))
        schema = dbmod.schema_version(c)
        drift = dbmod.schema_drift(c)
    problems += [f"schema: {d} (to fix: report it; db0 export, then import into a new home)"
                 for d in drift]
    if req.params["fix"]:
        fixed = [f"{p}: {m:04o} -> private" for p, m in fix_modes(rt.paths)]
    problems += [f"{p} is readable by others ({m:04o}) (to fix: db0 doctor --fix)"
                 for p, m in loose_modes(rt.paths)]
    if rt.config_error:
        problems.append(f"config not applied: {rt.config_error}")
    problems += [f"config: unknown setting {u} (ignored)" for u in rt.config_unknown]
    embedder = rt.service(EmbeddingService)
    if embedder is not None and embedder.error:  # it says what is wrong, and the fix
        problems.append(f"embedder: {embedder.error}")
    elif embedder is None or embedder.target is None:
        warnings.append("no embedding model: recall finds keywords only, not meaning (to fix: "
                        "db0 model install)")
    return {
        "running": True, "pid": os.getpid(), "version": __version__,
        "sqlite": apsw.sqlite_lib_version(), "apsw": apsw.apswversion(),
        "sqlite_vec": vec, "fts5": fts5, "journal_mode": journal, "schema_version": schema,
        "durability": rt.config.store.durability,
        "quick_check": quick, **_components_status(rt), "problems": problems,
        "warnings": warnings, "fixed": fixed,
    }

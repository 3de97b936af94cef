"""What each SQL statement cost, when asked for: `DB0_SQL_STATS=FILE` in the daemon's
environment traces every connection it opens (SQLite's profile trace with the statement's own
counters) and keeps, per statement text (lists of `?` folded to one), the runs, the virtual
machine steps, the steps of full scans and the time. FILE is rewritten at most every
half second while statements run and once at close.

For finding work that grows with the store (tests/test_scaling.py runs the same workload on a
small and a ten times larger store and compares the steps per run) and for `bench/` probes.
Off, it costs nothing: no connection is traced.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import apsw

ENV = "DB0_SQL_STATS"
DUMP_EVERY_S = 0.5
_FOLD = re.compile(r"\?(?:\s*,\s*\?)+")

# statement -> [runs, vm steps, full scan steps, nanoseconds, most vm steps in one run]
_stats: dict[str, list[int]] = {}
_lock = threading.Lock()
_next_dump = 0.0


def path() -> Path | None:
    value = os.environ.get(ENV, "")
    return Path(value) if value else None


def install(conn: apsw.Connection) -> None:
    """Trace `conn` when DB0_SQL_STATS names a file."""
    if path() is not None:
        conn.trace_v2(apsw.SQLITE_TRACE_PROFILE, _profile, id="db0.sqlstats")


def key(sql: str) -> str:
    """A statement's text as it is counted: whitespace runs to one space, `?, ?, ?` to `?,...`."""
    return _FOLD.sub("?,...", " ".join(sql.split()))


def _profile(event: dict[str, Any]) -> None:
    global _next_dump
    status = event.get("stmt_status") or {}
    steps = int(status.get("SQLITE_STMTSTATUS_VM_STEP", 0))
    k = key(str(event.get("sql") or ""))
    with _lock:
        s = _stats.get(k)
        if s is None:
            s = _stats[k] = [0, 0, 0, 0, 0]
        s[0] += 1
        s[1] += steps
        s[2] += int(status.get("SQLITE_STMTSTATUS_FULLSCAN_STEP", 0))
        s[3] += int(event.get("nanoseconds", 0))
        s[4] = max(s[4], steps)
        due = time.monotonic() >= _next_dump
        if due:
            _next_dump = time.monotonic() + DUMP_EVERY_S
    if due:
        dump()


def dump() -> None:
    """Write the counts so far to DB0_SQL_STATS (atomically: a reader never sees half)."""
    target = path()
    if target is None:
        return
    with _lock:
        data = {k: {"runs": s[0], "vm_steps": s[1], "fullscan_steps": s[2],
                    "ns": s[3], "max_vm_steps": s[4]} for k, s in _stats.items()}
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}")
    try:
        tmp.write_text(json.dumps(data))
        os.replace(tmp, target)
    except OSError:
        tmp.unlink(missing_ok=True)

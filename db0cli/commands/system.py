"""doctor and stats: where things are, which versions run, and whether they are healthy."""

from __future__ import annotations

import os
import stat
import sys
from typing import Any

from db0.cli import output
from db0.cli.options import JsonOpt
from db0.cli.params import Annotated, Command, Opt, cmd
from db0.cli.rpc import call
from db0.daemon import __version__
from db0.daemon.paths import get_paths
from db0.daemon.protocol import Db0Error


def _check_dir(path: os.PathLike[str], private: bool) -> str:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "missing (created on first use)"
    if stat.S_ISLNK(st.st_mode):
        return "problem: a symlink"
    if st.st_uid != os.getuid():
        return "problem: owned by another user"
    if private and st.st_mode & 0o077:
        return f"problem: mode {oct(st.st_mode & 0o777)}, should be 0o700"
    return "ok"


def doctor(
    fix: Annotated[bool, Opt("--fix", help="Make db0's files private again "
                                      "(0700 directories, 0600 files).")] = False,
    full: Annotated[bool, Opt("--full", help="Check every page of the database however long "
                                        "it takes (else at most 10 s: minutes for a large "
                                        "store).")] = False,
    json_: JsonOpt = False,
) -> int:
    """Check paths, versions, file modes and health; exit 1 if anything is wrong.

    Examples:
      db0 doctor
      db0 doctor --fix     # repair loose file modes an older version left
      db0 doctor --full    # every page of a large database (minutes)
    """
    from db0.daemon.paths import fix_modes, loose_modes

    paths = get_paths()
    fixed = [f"{p}: {m:04o} -> private" for p, m in fix_modes(paths)] if fix else []
    report: dict[str, Any] = {
        "version": __version__, "python": sys.version.split()[0],
        "executable": sys.executable,
        "paths": {"home": str(paths.home) if paths.home else None,
                  "config": str(paths.config_file), "data": str(paths.data_dir),
                  "database": str(paths.db_file), "logs": str(paths.log_file),
                  "runtime": str(paths.runtime_dir), "socket": str(paths.socket)},
        "checks": {"runtime_dir": _check_dir(paths.runtime_dir, private=True)},
    }
    from db0.cli import service

    report["service"] = service.status()
    problems = [k for k, v in report["checks"].items() if v.startswith("problem")]
    warnings: list[str] = []
    try:
        report["daemon"] = call("daemon.doctor", {"check_s": 0} if full else {},
                                timeout=None if full else 30.0)
        problems += report["daemon"].get("problems", [])
        warnings += report["daemon"].get("warnings", [])
    except Db0Error as e:
        report["daemon"] = {"running": False, "error": e.message, "hint": e.hint}
        problems.append(f"daemon: {e.message}")
        problems += [f"{p} is readable by others ({m:04o}) (to fix: db0 doctor --fix)"
                     for p, m in loose_modes(paths)]
    report["problems"] = problems
    report["warnings"] = warnings
    report["fixed"] = fixed
    report["ok"] = not problems
    if json_:
        output.emit_json(report)
    else:
        rows: list[tuple[str, Any]] = [("db0", report["version"]), ("python", report["python"])]
        rows += [(f"path.{k}", v) for k, v in report["paths"].items() if v]
        rows += [(f"check.{k}", v) for k, v in report["checks"].items()]
        rows += [(f"service.{k}", v) for k, v in report["service"].items()]
        for k, v in report["daemon"].items():
            if isinstance(v, dict):
                rows += [(f"{k}.{kk}", vv) for kk, vv in v.items()]
            elif k not in ("problems", "warnings", "fixed"):
                rows.append((f"daemon.{k}" if k not in ("sqlite", "apsw") else k, v))
        output.keyvalues(rows)
        for f in fixed:
            output.notice(f"fixed: {f}")
        for p in problems:
            output.notice(f"problem: {p}")
        for w in warnings:
            output.notice(f"warning: {w}")
        if not problems:
            output.notice("db0: all checks passed" + (
                f" ({len(warnings)} warning{'s' if len(warnings) > 1 else ''})"
                if warnings else ""))
    return 0 if not problems else 1


def stats(json_: JsonOpt = False) -> int:
    """Counts: memories by scope, superseded, forgotten, ops, database size.

    \b
    Example:
      db0 stats --json
    """
    st = call("store.stats", {})
    if json_:
        output.emit_json(st)
        return 0
    rows: list[tuple[str, Any]] = [("memories", st["memories"])]
    rows += [(f"  {k}", v) for k, v in sorted(st["by_scope"].items())]
    rows += [(k, v) for k, v in st.items() if k not in ("memories", "by_scope")
             and not isinstance(v, dict)]
    output.keyvalues(rows)
    return 0


COMMANDS: list[Command] = [
    cmd("doctor", doctor),
    cmd("stats", stats),
]

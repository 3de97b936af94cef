"""watch add, list, remove, status: folders of notes the daemon keeps in step with memory."""

from __future__ import annotations

import os
import sys
from typing import Any

from db0.cli import output
from db0.cli.options import AgentOpt, JsonOpt, ScopeOpt, SessionOpt, TaskOpt, UserOpt, context
from db0.cli.params import Annotated, Arg, Command, Opt, cmd
from db0.cli.rpc import call

DirArg = Annotated[str, Arg(help="The folder.", show_default=False)]


def _abs(path: str) -> str:
    # The daemon's working directory is not the caller's: send an absolute path, unresolved
    # (the daemon resolves links and says what is wrong with them).
    return os.path.abspath(os.path.expanduser(path))


def _summary(w: dict[str, Any]) -> str:
    line = (f"{w['path']}\t{w['state']}\t{output.count(w['files'], 'file')}\t"
            f"{output.count(w['sections'], 'section')}")
    if w.get("skipped_count"):
        line += f"\t{w['skipped_count']} skipped"
    if w.get("error_count"):
        line += f"\t{w['error_count']} errors"
    return line


def add(
    folder: DirArg,
    glob: Annotated[list[str] | None, Opt(
        "--glob", "-g", param="globs",
        help="Files to take, by name (or by path relative to the folder when the pattern "
        "has a '/'); repeat. Default: *.md, *.markdown, *.txt.")] = None,
    scope: ScopeOpt = "user",
    no_wait: Annotated[bool, Opt("--no-wait", help="Return at once instead of after "
                                          "the first scan.")] = False,
    json_: JsonOpt = False,
    user: UserOpt = None, agent: AgentOpt = None, session: SessionOpt = None,
    task: TaskOpt = None,
) -> int:
    """Watch FOLDER: index its notes now, then keep them in step (edits supersede, deletes
    forget, renames keep history).

    \b
    Examples:
      db0 watch add ~/notes
      db0 watch add ~/work/adr --glob '*.md' --scope agent
    """
    res = call("watch.add", {"path": _abs(folder), "globs": glob or [], "scope": scope,
                             "wait": 0 if no_wait else 600,
                             "context": context(user, agent, session, task)}, timeout=660)
    if json_:
        output.emit_json(res)
        return 0
    sys.stdout.write(_summary(res) + "\n")
    if res.get("skipped_count") or res.get("error_count"):
        output.notice("db0: some files were not indexed; see why: db0 watch status")
    return 0


def list_(json_: JsonOpt = False) -> int:
    """List the watched folders.

    \b
    Example:
      db0 watch list --json
    """
    res = call("watch.list", {})
    if json_:
        output.emit_json(res)
        return 0
    output.table(("folder", "scope", "globs", "state", "files", "sections"),
                 [(w["path"], w["scope"], ",".join(w["globs"]), w["state"], w["files"],
                   w["sections"]) for w in res["watches"]])
    return 0


def remove(
    folder: DirArg,
    forget: Annotated[bool, Opt("--forget", help="Forget the folder's memories too "
                                         "(default: they stay, no longer kept in step).")]
    = False,
    json_: JsonOpt = False,
) -> int:
    """Stop watching FOLDER.

    \b
    Example:
      db0 watch remove ~/notes --forget
    """
    res = call("watch.remove", {"path": _abs(folder), "forget": forget}, timeout=660)
    if json_:
        output.emit_json(res)
    else:
        extra = (f"; {output.count(res['forgotten'], 'memory', 'memories')} forgotten"
                 if forget else "")
        output.notice(f"db0: stopped watching {res['removed']}{extra}")
    return 0


def status(json_: JsonOpt = False) -> int:
    """Each folder's state, counts, and every file skipped or failed, with the reason.

    \b
    Example:
      db0 watch status
    """
    res = call("watch.status", {})
    if json_:
        output.emit_json(res)
        return 0
    w = sys.stdout.write
    w(f"pending\t{res['pending']}\n")
    for f in res["folders"]:
        w(_summary(f) + "\n")
        w(f"  last scan\t{f['last_scan_at'] or 'not yet'}"
          + (f" ({f['scan_seconds']} s)" if f.get("scan_seconds") is not None else "") + "\n")
        for s in f["skipped"]:
            w(f"  skipped\t{s['path']}\t{s['reason']}\n")
        if f["skipped_count"] > len(f["skipped"]):
            w(f"  skipped\t… and {f['skipped_count'] - len(f['skipped'])} more\n")
        for e in f["errors"]:
            w(f"  error\t{e['path'] or '.'}\t{e['error']}\n")
    return 0


COMMANDS: list[Command] = [
    cmd("watch add", add),
    cmd("watch list", list_),
    cmd("watch remove", remove),
    cmd("watch status", status),
]
GROUPS = {
    "watch": "Watched folders: each Markdown or text file's sections become memories, kept in "
         "step as the files change.",
}

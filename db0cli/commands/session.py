"""db0 session start|end|list and db0 task start|end|list: contexts with a lifetime.

`eval "$(db0 session start)"` exports DB0_SESSION into the shell; `db0 task start` likewise
prints `export DB0_TASK=…`. Ending one takes its memories out of search (history keeps them).
"""

from __future__ import annotations

import shlex
import sys
from typing import Any

from db0.cli import output
from db0.cli.options import AgentOpt, JsonOpt, SessionOpt, TaskOpt, UserOpt, context
from db0.cli.params import Annotated, Arg, Command, Opt, cmd
from db0.cli.rpc import call

LabelOpt = Annotated[str | None, Opt("--label", "-l", help="A name to recognise it.")]
AllOpt = Annotated[bool, Opt("--all", "-a", help="Include ended ones.")]


def _export(var: str, value: str, res: dict[str, Any], json_: bool) -> int:
    if json_:
        output.emit_json(res)
    else:
        sys.stdout.write(f"export {var}={shlex.quote(value)}\n")
        if output.is_tty(sys.stdout):
            output.notice(f'db0: to use it in this shell: eval "$(db0 {var[4:].lower()} '
                          'start)"')
    return 0


def session_start(
    label: LabelOpt = None,
    idle_ttl: Annotated[str | None, Opt("--idle-ttl", help="End it after this long "
                                                 "unused (default: config [session] idle_ttl, "
                                                 "24h).")] = None,
    json_: JsonOpt = False, user: UserOpt = None, agent: AgentOpt = None,
) -> int:
    """Start a session; prints `export DB0_SESSION=…` for eval.

    \b
    Example:
      eval "$(db0 session start --idle-ttl 2h)"
    """
    params: dict[str, Any] = {"context": context(user, agent, None, None), "label": label}
    if idle_ttl:
        params["idle_ttl"] = idle_ttl
    res = call("session.start", params)
    return _export("DB0_SESSION", res["session"], res, json_)


def session_end(
    session_id: Annotated[str | None, Arg(help="Default: $DB0_SESSION.")] = None,
    json_: JsonOpt = False, session: SessionOpt = None,
) -> int:
    """End a session: its session memories leave search.

    \b
    Examples:
      db0 session end
      db0 session end s01m8v3kq5s
    """
    res = call("session.end", {"id": session_id, "context": context(None, None, session, None)})
    if json_:
        output.emit_json(res)
    else:
        output.notice(f"db0: session {res['session']} ended; "
                      f"{output.count(res.get('expired', 0), 'memory', 'memories')} expired")
    return 0


def session_list(all_: AllOpt = False, json_: JsonOpt = False, user: UserOpt = None) -> int:
    """Your sessions (open ones unless --all).

    \b
    Example:
      db0 session list --all
    """
    res = call("session.list", {"all": all_, "context": context(user, None, None, None)})
    if json_:
        output.emit_json(res)
        return 0
    output.table(("session", "agent", "label", "started", "ended", "parent"),
                 [(s["session"], s["agent"], s["label"] or "", output.age(s["started_at"]),
                   s["ended_at"] or "", s["parent"] or "") for s in res["sessions"]])
    return 0


def task_start(label: LabelOpt = None, json_: JsonOpt = False, user: UserOpt = None,
               agent: AgentOpt = None, session: SessionOpt = None) -> int:
    """Start a task (in the current session, if any); prints `export DB0_TASK=…`.

    \b
    Example:
      eval "$(db0 task start --label fix-ci)"
    """
    res = call("task.start", {"label": label, "context": context(user, agent, session, None)})
    return _export("DB0_TASK", res["task"], res, json_)


def task_end(
    task_id: Annotated[str | None, Arg(help="Default: $DB0_TASK.")] = None,
    json_: JsonOpt = False, task: TaskOpt = None,
) -> int:
    """End a task: its task memories leave search.

    \b
    Examples:
      db0 task end
      db0 task end fix-ci
    """
    res = call("task.end", {"id": task_id, "context": context(None, None, None, task)})
    if json_:
        output.emit_json(res)
    else:
        output.notice(f"db0: task {res['task']} ended; "
                      f"{output.count(res.get('expired', 0), 'memory', 'memories')} expired")
    return 0


def task_list(all_: AllOpt = False, json_: JsonOpt = False, user: UserOpt = None) -> int:
    """Your tasks (open ones unless --all).

    \b
    Example:
      db0 task list --json
    """
    res = call("task.list", {"all": all_, "context": context(user, None, None, None)})
    if json_:
        output.emit_json(res)
        return 0
    output.table(("task", "session", "label", "started", "ended"),
                 [(t["task"], t["session"] or "", t["label"] or "", output.age(t["started_at"]),
                   t["ended_at"] or "") for t in res["tasks"]])
    return 0


COMMANDS: list[Command] = [
    cmd("session start", session_start),
    cmd("session end", session_end),
    cmd("session list", session_list),
    cmd("task start", task_start),
    cmd("task end", task_end),
    cmd("task list", task_list),
]
GROUPS = {
    "session": "Sessions: start one per conversation; ending it expires its "
                          "session memories.",
    "task": "Tasks: a unit of work inside a session; ending it expires its "
                       "task memories.",
}

"""db0 session start|end|list and db0 task start|end|list: contexts with a lifetime.

`eval "$(db0 session start)"` exports DB0_SESSION into the shell; `db0 task start` likewise
prints `export DB0_TASK=…`. Ending one takes its memories out of search (history keeps them).
"""

from __future__ import annotations

import shlex
import sys
from typing import Annotated, Any

import typer

from db0.cli import output
from db0.cli.options import AgentOpt, JsonOpt, SessionOpt, TaskOpt, UserOpt, context
from db0.cli.rpc import call

session_app = typer.Typer(help="Sessions: start one per conversation; ending it expires its "
                          "session memories.", no_args_is_help=True)
task_app = typer.Typer(help="Tasks: a unit of work inside a session; ending it expires its "
                       "task memories.", no_args_is_help=True)

LabelOpt = Annotated[str | None, typer.Option("--label", "-l", help="A name to recognise it.")]
AllOpt = Annotated[bool, typer.Option("--all", "-a", help="Include ended ones.")]


def _export(var: str, value: str, res: dict[str, Any], json_: bool) -> int:
    if json_:
        output.emit_json(res)
    else:
        sys.stdout.write(f"export {var}={shlex.quote(value)}\n")
        if output.is_tty(sys.stdout):
            output.notice(f'db0: to use it in this shell: eval "$(db0 {var[4:].lower()} '
                          'start)"')
    return 0


@session_app.command("start")
def session_start(
    label: LabelOpt = None,
    idle_ttl: Annotated[str | None, typer.Option("--idle-ttl", help="End it after this long "
                                                 "unused (default: config [session] idle_ttl, "
                                                 "24h).")] = None,
    json_: JsonOpt = False, user: UserOpt = None, agent: AgentOpt = None,
) -> int:
    """Start a session; prints `export DB0_SESSION=…` for eval."""
    params: dict[str, Any] = {"context": context(user, agent, None, None), "label": label}
    if idle_ttl:
        params["idle_ttl"] = idle_ttl
    res = call("session.start", params)
    return _export("DB0_SESSION", res["session"], res, json_)


@session_app.command("end")
def session_end(
    session_id: Annotated[str | None, typer.Argument(help="Default: $DB0_SESSION.")] = None,
    json_: JsonOpt = False, session: SessionOpt = None,
) -> int:
    """End a session: its session memories leave search."""
    res = call("session.end", {"id": session_id, "context": context(None, None, session, None)})
    if json_:
        output.emit_json(res)
    else:
        output.notice(f"db0: session {res['session']} ended; {res.get('expired', 0)} "
                      "memories expired")
    return 0


@session_app.command("list")
def session_list(all_: AllOpt = False, json_: JsonOpt = False, user: UserOpt = None) -> int:
    """Your sessions (open ones unless --all)."""
    res = call("session.list", {"all": all_, "context": context(user, None, None, None)})
    if json_:
        output.emit_json(res)
        return 0
    output.table(("session", "agent", "label", "started", "ended", "parent"),
                 [(s["session"], s["agent"], s["label"] or "", output.age(s["started_at"]),
                   s["ended_at"] or "", s["parent"] or "") for s in res["sessions"]])
    return 0


@task_app.command("start")
def task_start(label: LabelOpt = None, json_: JsonOpt = False, user: UserOpt = None,
               agent: AgentOpt = None, session: SessionOpt = None) -> int:
    """Start a task (in the current session, if any); prints `export DB0_TASK=…`."""
    res = call("task.start", {"label": label, "context": context(user, agent, session, None)})
    return _export("DB0_TASK", res["task"], res, json_)


@task_app.command("end")
def task_end(
    task_id: Annotated[str | None, typer.Argument(help="Default: $DB0_TASK.")] = None,
    json_: JsonOpt = False, task: TaskOpt = None,
) -> int:
    """End a task: its task memories leave search."""
    res = call("task.end", {"id": task_id, "context": context(None, None, None, task)})
    if json_:
        output.emit_json(res)
    else:
        output.notice(f"db0: task {res['task']} ended; {res.get('expired', 0)} memories expired")
    return 0


@task_app.command("list")
def task_list(all_: AllOpt = False, json_: JsonOpt = False, user: UserOpt = None) -> int:
    """Your tasks (open ones unless --all)."""
    res = call("task.list", {"all": all_, "context": context(user, None, None, None)})
    if json_:
        output.emit_json(res)
        return 0
    output.table(("task", "session", "label", "started", "ended"),
                 [(t["task"], t["session"] or "", t["label"] or "", output.age(t["started_at"]),
                   t["ended_at"] or "") for t in res["tasks"]])
    return 0


def register(app: typer.Typer) -> None:
    app.add_typer(session_app, name="session")
    app.add_typer(task_app, name="task")

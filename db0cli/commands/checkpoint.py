"""db0 checkpoint create|list|show|restore|branch|diff: save and roll back a session's state."""

from __future__ import annotations

import json
import shlex
import sys
from typing import Any

from db0.cli import output
from db0.cli.options import (
    AgentOpt,
    JsonOpt,
    SessionOpt,
    TaskOpt,
    UserOpt,
    context,
    read_source,
)
from db0.cli.params import Annotated, Arg, Command, Opt, cmd
from db0.cli.rpc import call
from db0.daemon.protocol import Db0Error

CpArg = Annotated[str, Arg(help="A checkpoint id (see: db0 checkpoint list).")]


def _ctx(user: str | None, agent: str | None, session: str | None,
         task: str | None) -> dict[str, Any]:
    return context(user, agent, session, task)


def create(
    label: Annotated[str | None, Opt("--label", "-l", help="A name for it.")] = None,
    state: Annotated[str | None, Opt("--state", help="A JSON state document to keep "
                                              "with it: a file, or '-' for stdin.")] = None,
    allow_secrets: Annotated[bool, Opt("--allow-secrets", help="Keep what looks like "
                                                "a secret in the label and state.")] = False,
    json_: JsonOpt = False, user: UserOpt = None, agent: AgentOpt = None,
    session: SessionOpt = None, task: TaskOpt = None,
) -> int:
    """Checkpoint the current session (and task): prints its id.

    \b
    Examples:
      db0 checkpoint create --label before-refactor
      db0 checkpoint create --label plan --state plan.json
    """
    doc = None
    if state is not None:
        raw = read_source(state)
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise Db0Error("invalid", f"the state document is not JSON ({e})",
                           "give a JSON file, or pipe JSON into --state -") from None
    res = call("checkpoint.create", {"label": label, "state": doc,
                                     "allow_secrets": allow_secrets or None,
                                     "context": _ctx(user, agent, session, task)})
    if json_:
        output.emit_json(res)
    else:
        sys.stdout.write(res["id"] + "\n")
        if res.get("redacted"):
            from db0.cli.commands.memory import redaction_notice

            output.notice(redaction_notice(res["redacted"]))
    return 0


def list_(
    all_: Annotated[bool, Opt("--all", "-a", help="Every session's.")] = False,
    json_: JsonOpt = False, user: UserOpt = None, session: SessionOpt = None,
) -> int:
    """Checkpoints of the current session (all of yours with --all or without a session).

    \b
    Examples:
      db0 checkpoint list
      db0 checkpoint list --all --json
    """
    res = call("checkpoint.list", {"all": all_, "context": _ctx(user, None, session, None)})
    if json_:
        output.emit_json(res)
        return 0
    output.table(("id", "label", "session", "created"),
                 [(c["id"], c["label"] or "", c["session"] or "", output.age(c["created_at"]))
                  for c in res["checkpoints"]])
    return 0


def show(ref: CpArg, json_: JsonOpt = False) -> int:
    """Print a checkpoint's state document (--json: the checkpoint and its state).

    \b
    Example:
      db0 checkpoint show 01m8v3kq5s --json
    """
    res = call("checkpoint.show", {"id": ref})
    if json_:
        output.emit_json(res)
    elif res["state"] is not None:
        sys.stdout.write(json.dumps(res["state"], indent=2, ensure_ascii=False) + "\n")
    else:
        output.notice(f"db0: checkpoint {res['id']} has no state document")
    return 0


def restore(ref: CpArg, json_: JsonOpt = False) -> int:
    """Roll the session's and task's memories back to the checkpoint (history keeps all).

    \b
    Example:
      db0 checkpoint restore 01m8v3kq5s
    """
    res = call("checkpoint.restore", {"id": ref})
    if json_:
        output.emit_json(res)
    else:
        output.notice(f"db0: restored {res['id']}: {res['rolled_back']} later memories rolled "
                      f"back, {res['restored']} brought back to their earlier state")
    return 0


def branch(
    ref: CpArg,
    label: Annotated[str | None, Opt("--label", "-l")] = None,
    json_: JsonOpt = False, agent: AgentOpt = None,
) -> int:
    """Start a new session that sees the checkpoint's session as it was then.

    Prints `export DB0_SESSION=…` for eval; --json gives {"session", "parent", "checkpoint"}.

    \b
    Example:
      eval "$(db0 checkpoint branch 01m8v3kq5s)"   # a new session, as it was then
    """
    res = call("checkpoint.branch", {"id": ref, "label": label,
                                     "context": _ctx(None, agent, None, None)})
    if json_:
        output.emit_json(res)
    else:
        sys.stdout.write(f"export DB0_SESSION={shlex.quote(res['session'])}\n")
    return 0


def diff(a: CpArg, b: CpArg, json_: JsonOpt = False) -> int:
    """What changed in the session between two checkpoints.

    \b
    Example:
      db0 checkpoint diff 01m8v3kq5s 01m8v4aa2b --json
    """
    res = call("checkpoint.diff", {"a": a, "b": b})
    if json_:
        output.emit_json(res)
        return 0
    marks = {"added": "+", "superseded": "~", "forgotten": "-", "expired": "-",
             "rolled_back": "<", "restored": ">"}
    for kind, mark in marks.items():
        for item in res.get(kind) or []:
            sys.stdout.write(f"{mark} {item['id']}\t{output.one_line(item['content'])}\n")
    return 0


COMMANDS: list[Command] = [
    cmd("checkpoint create", create),
    cmd("checkpoint list", list_),
    cmd("checkpoint show", show),
    cmd("checkpoint restore", restore),
    cmd("checkpoint branch", branch),
    cmd("checkpoint diff", diff),
]
GROUPS = {
    "checkpoint": "Checkpoints of the current session: restore, branch, diff.",
}

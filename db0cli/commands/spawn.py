"""db0 spawn --agent NAME [--task] -- COMMAND [ARGS…]: run a sub-agent in its own context.

The child gets a new session (and task, with --task) under agent NAME through DB0_AGENT,
DB0_SESSION and DB0_TASK; DB0_USER stays, so user memories flow both ways while session and
task memories stay with their owner. Signals are passed on, the child's exit code comes back,
and the child's session and task end when it exits (unless --keep).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

from db0.cli import output
from db0.cli.options import UserOpt, context
from db0.cli.params import Annotated, Arg, Command, Opt, cmd
from db0.cli.rpc import call
from db0.daemon.protocol import Db0Error


def spawn(
    command: Annotated[list[str], Arg(help="The command to run, after --.")],
    agent: Annotated[str, Opt("--agent", help="The sub-agent's name.")],
    task: Annotated[bool, Opt("--task", help="Also start a task for it.")] = False,
    label: Annotated[str | None, Opt("--label", "-l", help="Label its session.")]
    = None,
    keep: Annotated[bool, Opt("--keep", help="Leave its session (and task) open "
                                       "when it exits.")] = False,
    json_: Annotated[bool, Opt("--json", help="After it exits, print {exit_code, agent, "
                                              "session, task} as one JSON document.")] = False,
    user: UserOpt = None,
) -> int:
    """Run COMMAND as sub-agent NAME with a new session (and task); returns its exit code.

    \b
    Examples:
      db0 spawn --agent reviewer -- some-agent --review
      db0 spawn --agent tester --task --keep -- pytest -q
    """
    if not agent:
        raise Db0Error("bad_request", "spawn needs --agent NAME (the sub-agent's name)",
                       "db0 spawn --agent reviewer -- COMMAND")
    if not command:
        raise Db0Error("bad_request", "no command to run", "db0 spawn --agent NAME -- COMMAND")
    import shutil

    if shutil.which(command[0]) is None:  # before anything is started for it
        raise Db0Error("not_found", f"cannot run {command[0]}: no such command",
                       "check the command and your PATH")
    ctx = context(user, agent, None, None)
    s = call("session.start", {"context": ctx, "label": label or f"spawn {agent}"})
    env = {**os.environ, "DB0_AGENT": agent, "DB0_SESSION": s["session"]}
    env.pop("DB0_TASK", None)  # the parent's task is not the child's
    if ctx.get("user"):
        env["DB0_USER"] = ctx["user"]
    t: dict[str, Any] | None = None
    if task:
        t = call("task.start", {"context": {**ctx, "session": s["session"]},
                                "label": label or f"spawn {agent}"})
        env["DB0_TASK"] = t["task"]
    try:
        child = subprocess.Popen(command, env=env)
    except OSError as e:
        _end(s, t, keep)
        raise Db0Error("not_found" if isinstance(e, FileNotFoundError) else "invalid",
                       f"cannot run {command[0]}: {e.strerror}", "check the command") from None

    def forward(signum: int, _frame: Any) -> None:
        child.send_signal(signum)

    old = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM,
                                                        signal.SIGHUP)}
    try:
        code = child.wait()
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    _end(s, t, keep)
    status = 128 - code if code < 0 else code
    if json_:
        output.emit_json({"exit_code": status, "agent": agent, "session": s["session"],
                          "task": t["task"] if t else None, "kept": keep})
    elif output.is_tty(sys.stderr) and code:
        output.notice(f"db0: {command[0]} exited with {code}")
    return status


def _end(s: dict[str, Any], t: dict[str, Any] | None, keep: bool) -> None:
    if keep:
        return
    try:
        if t is not None:
            call("task.end", {"id": t["task"]})
        call("session.end", {"id": s["session"]})
    except Db0Error as e:  # the child's result matters more than the clean-up
        output.notice(f"db0: could not end the sub-agent's session: {e.message}")


COMMANDS: list[Command] = [
    cmd("spawn", spawn, context_settings={"allow_interspersed_args": False}),
]

"""remote add, list, remove: the Postgres databases db0 syncs through (see `db0 sync`)."""

from __future__ import annotations

import sys

from db0.cli import output
from db0.cli.options import JsonOpt
from db0.cli.params import Annotated, Arg, Command, Opt, cmd
from db0.cli.rpc import call


def add(
    name: Annotated[str, Arg(help="A short name for the remote, e.g. team.")],
    dsn: Annotated[str, Arg(help="postgresql://user@host/db; keep the password out "
                                       "with ?password_env=VAR, or give env:VAR for a DSN "
                                       "held in $VAR.")],
    scope: Annotated[list[str] | None, Opt(
        "--scope", "-s", param="scopes",
        help="Scopes to sync (repeat); default user and agent, or the config's [sync] "
        "scopes.")] = None,
    replace: Annotated[bool, Opt("--replace", help="Replace a remote of that "
                                          "name.")] = False,
    json_: JsonOpt = False,
) -> int:
    """Add a remote. The DSN is kept in a 0600 file and never printed in full.

    \b
    Example:
      db0 remote add team 'postgresql://me@db.example/mem?password_env=PGPASS'
    """
    res = call("remote.add", {"name": name, "dsn": dsn, "scopes": scope or [],
                              "replace": replace})
    if json_:
        output.emit_json(res)
    else:
        sys.stdout.write(f"{res['name']}\t{res['dsn']}\n")
    for note in res.get("notices") or []:
        output.notice(f"db0: {note}")
    return 0


def list_(json_: JsonOpt = False) -> int:
    """List remotes (passwords masked).

    \b
    Example:
      db0 remote list --json
    """
    res = call("remote.list", {})
    if json_:
        output.emit_json(res)
        return 0
    output.table(("name", "dsn", "scopes"),
                 [(r["name"], r["dsn"], ",".join(r["scopes"])) for r in res["remotes"]])
    return 0


def remove(
    name: Annotated[str, Arg(help="The remote's name.")],
    json_: JsonOpt = False,
) -> int:
    """Remove a remote and this machine's sync marks for it (the remote keeps its data).

    \b
    Example:
      db0 remote remove team
    """
    res = call("remote.remove", {"name": name})
    if json_:
        output.emit_json(res)
    else:
        output.notice(f"db0: removed remote {res['removed']}")
    return 0


COMMANDS: list[Command] = [
    cmd("remote add", add),
    cmd("remote list", list_),
    cmd("remote remove", remove),
]
GROUPS = {
    "remote": "Postgres remotes to sync with (db0 sync).",
}

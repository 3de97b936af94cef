"""sync and sync status: push local ops to the remotes and pull the other devices' ops."""

from __future__ import annotations

import os
import sys
from typing import Any

from db0.cli import output
from db0.cli.options import JsonOpt
from db0.cli.params import Annotated, Arg, Command, cmd
from db0.cli.rpc import call, client
from db0.daemon.protocol import Db0Error

STEP_S = 1.0  # the daemon reports back this often, so progress moves



def _env_for(remote: dict[str, Any]) -> dict[str, str]:
    """The variables the remote's DSN names, from this shell (the daemon may not have them)."""
    return {n: os.environ[n] for n in remote.get("env") or [] if n in os.environ}


def remote_env(name: str) -> dict[str, str]:
    """For `recall --remote`: the variables that remote's DSN names, from this shell."""
    for r in call("remote.list", {})["remotes"]:
        if r["name"] == name:
            return _env_for(r)
    return {}


def _sync_one(c: Any, remote: dict[str, Any]) -> dict[str, Any]:
    total: dict[str, Any] = {"name": remote["name"], "pushed": 0, "sent": 0, "pulled": 0,
                             "applied": 0, "vectors": 0, "vectors_reused": 0, "seconds": 0.0,
                             "done": False}
    env = _env_for(remote)
    with output.progress(f"sync {remote['name']}", None) as bar:
        first = True
        while not total["done"]:
            res = c.call("sync.run", {"name": remote["name"], "budget_s": STEP_S, "env": env},
                         timeout=None)["results"][0]
            if first:
                total.update(to_push=res["to_push"], to_pull=res["to_pull"])
                if bar.bar is not None:
                    bar.bar.update(bar.task, total=max(res["to_push"] + res["to_pull"], 1))
                first = False
            for k in ("pushed", "sent", "pulled", "applied", "vectors", "vectors_reused",
                      "seconds"):
                total[k] += res.get(k, 0)
            total["done"] = res["done"]
            total["searchable"] = res.get("searchable", False)
            bar.advance(res["sent"] + res["pulled"])
    total["seconds"] = round(total["seconds"], 3)
    return total


def sync(
    args: Annotated[list[str] | None, Arg(
        metavar="[NAME] | status [NAME]", help="A remote (default: all of them), or 'status'.",
        show_default=False)] = None,
    json_: JsonOpt = False,
) -> int:
    """Push local ops not yet pushed, then pull the other devices' ops (progress on a
    terminal). Exit 5 when a remote is unreachable: nothing is lost, run it again later.

    `db0 sync status [NAME]`: per remote, ops waiting to be pushed, totals, the last sync and
    the last error.

    \b
    Examples:
      db0 sync
      db0 sync status
      db0 sync team --json
    """
    words = list(args or [])
    if words and words[0] == "status":
        if len(words) > 2:
            raise Db0Error("bad_request", "too many arguments", "db0 sync status [NAME]")
        return status(words[1] if len(words) > 1 else None, json_)
    if len(words) > 1:
        raise Db0Error("bad_request", "too many arguments", "db0 sync [NAME]")
    name = words[0] if words else None
    c = client()
    remotes = c.call("remote.list", {})["remotes"]
    if name:
        remotes = [r for r in remotes if r["name"] == name]
        if not remotes:
            raise Db0Error("not_found", f"no remote '{name}'", "see them with: db0 remote list")
    if not remotes:
        raise Db0Error("invalid", "no remotes to sync with",
                       "add one: db0 remote add NAME postgresql://me@host/db")
    results: list[dict[str, Any]] = []
    failed: list[Db0Error] = []
    for r in remotes:
        try:
            results.append(_sync_one(c, r))
        except Db0Error as e:
            if len(remotes) == 1:
                raise
            failed.append(e)
            results.append({"name": r["name"], "error": e.to_dict()})
            output.notice(f"db0: error: {e.line()}")
    if json_:
        output.emit_json({"results": results})
    else:
        for r in results:
            if "error" not in r:
                output.notice(f"db0: {r['name']}: pushed {r['pushed']}, pulled {r['pulled']} "
                              f"({r['applied']} changed) in {r['seconds']:.1f}s")
    if failed:
        return failed[0].exit_code
    return 0


def _when(ts: float | None) -> str:
    if not ts:
        return "never"
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def status(name: str | None, json_: bool) -> int:
    """Per remote: ops waiting to be pushed, totals, the last sync and the last error."""
    res = call("sync.status", {"name": name} if name else {})
    if json_:
        output.emit_json(res)
        return 0
    rows = [(r["name"], r["dsn"], r["pending_push"], r["pushed_total"], r["pulled_total"],
             _when(r["last_sync_ts"]), r["last_error"] or "") for r in res["remotes"]]
    output.table(("remote", "dsn", "to push", "pushed", "pulled", "last sync", "last error"),
                 rows)
    if res.get("interval_s"):
        output.notice(f"db0: auto-sync every {res['interval_s']:g}s")
    if not sys.stdout.isatty() and not rows:
        output.notice("db0: no remotes (db0 remote add NAME DSN)")
    return 0


COMMANDS: list[Command] = [
    cmd("sync", sync),
]

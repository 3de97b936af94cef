"""db0 daemon start|stop|status|restart|logs|run."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Any

from db0.cli import output
from db0.cli.options import JsonOpt
from db0.cli.params import Annotated, Command, Opt, cmd
from db0.daemon import client as dclient
from db0.daemon.paths import get_paths
from db0.daemon.protocol import EXIT_NOT_RUNNING, Db0Error


def _status() -> dict[str, Any]:
    paths = get_paths()
    c = dclient.Client.attach(paths)
    if c is None:
        return {"running": False, "pid": None, "version": None, "socket": str(paths.socket),
                "log": str(paths.log_file)}
    try:
        return c.call("daemon.status", {}, timeout=10.0)  # type: ignore[no-any-return]
    finally:
        c.close()


def status(json_: JsonOpt = False) -> int:
    """Is the daemon running? (exit 3 when it is not)

    \b
    Example:
      db0 daemon status || echo not running   # exit 3 when it is not
    """
    st = _status()
    if json_:
        output.emit_json(st)
    elif st["running"]:
        output.keyvalues([(k, v) for k, v in st.items() if not isinstance(v, dict)])
        for name, sub in st.items():
            if isinstance(sub, dict):
                output.keyvalues([(f"{name}.{k}", v) for k, v in sub.items()])
    else:
        sys.stdout.write(f"not running (socket {st['socket']})\n")
    return 0 if st["running"] else EXIT_NOT_RUNNING


def start(json_: JsonOpt = False) -> int:
    """Start the daemon if it is not running.

    \b
    Example:
      db0 daemon start --json
    """
    c = dclient.connect()
    hello = c.hello
    c.close()
    if json_:
        output.emit_json({"running": True, "pid": hello.get("pid"),
                          "version": hello.get("version")})
    else:
        sys.stdout.write(f"running (pid {hello.get('pid')}, version {hello.get('version')})\n")
    return 0


def _stop() -> dict[str, Any]:
    paths = get_paths()
    c = dclient.Client.attach(paths)
    if c is None:
        return {"stopped": False, "running": False}
    try:
        res = c.call("daemon.stop", {"reason": "db0 daemon stop"}, timeout=10.0)
    finally:
        c.close()
    if not dclient.wait_gone(paths, res.get("pid"), timeout=30.0):
        raise Db0Error("unavailable", f"the daemon (pid {res.get('pid')}) did not stop in 30s",
                       f"see {paths.log_file}; kill it with: kill {res.get('pid')}")
    return {"stopped": True, "pid": res.get("pid"), "running": False}


def stop(json_: JsonOpt = False) -> int:
    """Stop the daemon (it finishes what it is doing first).

    \b
    Example:
      db0 daemon stop
    """
    res = _stop()
    if json_:
        output.emit_json(res)
    else:
        sys.stdout.write(f"stopped (pid {res['pid']})\n" if res["stopped"] else
                         "not running\n")
    return 0


def restart(json_: JsonOpt = False) -> int:
    """Stop the daemon and start it again (picks up a new version).

    \b
    Example:
      db0 daemon restart
    """
    _stop()
    return start(json_)


def logs(
    lines: Annotated[int, Opt("-n", "--lines", help="How many lines.")] = 50,
    follow: Annotated[bool, Opt("-f", "--follow", help="Keep printing.")] = False,
    json_: JsonOpt = False,
) -> int:
    """Print the end of the daemon's log.

    \b
    Examples:
      db0 daemon logs -n 50
      db0 daemon logs --follow
    """
    path = get_paths().log_file
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 256 * 1024))
            tail = f.read().decode("utf-8", "replace").splitlines()[-lines:]
    except FileNotFoundError:
        tail, size = [], 0
    if json_:
        output.emit_json({"log": str(path), "lines": tail})
        return 0
    sys.stdout.write("".join(t + "\n" for t in tail))
    if follow:
        with contextlib.suppress(KeyboardInterrupt), open(path, "rb") as f:
            f.seek(size)
            while True:
                chunk = f.read()
                if chunk:
                    sys.stdout.write(chunk.decode("utf-8", "replace"))
                    sys.stdout.flush()
                else:
                    time.sleep(0.2)
    return 0


def run() -> int:
    """Run the daemon in the foreground (for service managers)."""
    # exec, not import: the CLI process never loads the store or the heavy libraries.
    os.execv(sys.executable, [sys.executable, "-m", "db0.daemon", "run"])
    return 0  # not reached


def install_service(
    remove: Annotated[bool, Opt("--remove", help="Disable the service and delete its "
                                         "unit.")] = False,
    no_enable: Annotated[bool, Opt("--no-enable", help="Write the unit only; enable "
                                            "it yourself.")] = False,
    json_: JsonOpt = False,
) -> int:
    """Run the daemon as a user service: a systemd user unit (launchd agent on macOS) running
    `db0 daemon run`, restarted on failure, stopped with SIGTERM.

    \b
    Examples:
      db0 daemon install-service
      db0 daemon install-service --remove
    """
    from db0.cli import service

    res = service.remove() if remove else service.install(enable=not no_enable)
    if json_:
        output.emit_json(res)
    elif remove:
        output.notice(f"db0: {'removed' if res['removed'] else 'no service at'} {res['unit']}")
    else:
        what = "enabled and started" if res["enabled"] else "written (not enabled)"
        output.notice(f"db0: {res['manager']} service {what}: {res['unit']}")
    return 0


COMMANDS: list[Command] = [
    cmd("daemon status", status),
    cmd("daemon start", start),
    cmd("daemon stop", stop),
    cmd("daemon restart", restart),
    cmd("daemon logs", logs),
    cmd("daemon run", run),
    cmd("daemon install-service", install_service),
]
GROUPS = {
    "daemon": "Manage the background daemon (started automatically on use).",
}

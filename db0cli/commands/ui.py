"""db0 ui: ask the daemon to serve the web inspector on 127.0.0.1, then open it."""

from __future__ import annotations

import sys
from typing import Any

from db0.cli import output
from db0.cli.options import JsonOpt
from db0.cli.params import Annotated, Command, Opt, cmd
from db0.cli.rpc import call


def ui(
    port: Annotated[int | None, Opt("--port", help="Listen on this port of 127.0.0.1 "
                                             "(default: the last one, else a free one).")] = None,
    no_open: Annotated[bool, Opt("--no-open", help="Print the address; do not open "
                                          "a browser.")] = False,
    idle_timeout: Annotated[float | None, Opt(
        "--idle-timeout", help="Close after this many seconds without requests (default: "
        "[ui] idle_timeout, 30 minutes).")] = None,
    stop: Annotated[bool, Opt("--stop", help="Stop serving the inspector.")] = False,
    json_: JsonOpt = False,
) -> int:
    """Open the web inspector: browse and search memories, a fact's history, sessions and
    health, and forget, pin, edit or link from a browser. Served by the daemon on 127.0.0.1
    only; the address holds a secret key, new at each launch (keep it to yourself).

    Examples:
      db0 ui                 # opens the browser (prints the address when it cannot)
      db0 ui --no-open       # prints the address only
      db0 ui --port 8765 --json
      db0 ui --stop
    """
    if stop:
        res: dict[str, Any] = call("ui.stop", {})
        if json_:
            output.emit_json(res)
        else:
            output.notice("db0: the inspector is closed" if res["closed"]
                          else "db0: the inspector was not running")
        return 0
    res = call("ui.start", {"port": port, "idle_timeout": idle_timeout})
    if json_:
        output.emit_json(res)
        return 0
    opened = False
    if not no_open and output.is_tty() and output.is_tty(sys.stderr) and _graphical():
        import webbrowser

        try:
            opened = webbrowser.open(res["url"], new=2)
        except webbrowser.Error:
            opened = False
    sys.stdout.write(res["url"] + "\n")
    minutes = res["idle_timeout_s"] / 60
    output.notice(("db0: opened the inspector in your browser; " if opened else
                   "db0: open this address in your browser; ")
                  + f"it closes after {minutes:g} min without requests (db0 ui --stop closes "
                  "it now)")
    return 0


def _graphical() -> bool:
    """Whether a browser opens in a window: else (an SSH session, say) Python's webbrowser
    would start a text browser in this terminal, and printing the address is better."""
    import os

    if os.environ.get("BROWSER") or sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


COMMANDS: list[Command] = [
    cmd("ui", ui),
]

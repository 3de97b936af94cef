"""The daemon as a user service: a systemd user unit on Linux, a launchd agent on macOS.

`db0 daemon install-service` writes the unit (running `db0 daemon run` by absolute path,
restarted on failure, stopped with SIGTERM) and enables it; `--remove` disables and deletes it.
`db0 doctor` reports whether it is installed and running (`status`).
"""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from db0.daemon.protocol import Db0Error

UNIT = "db0.service"
LABEL = "dev.db0.daemon"


def manager() -> str:
    return "launchd" if sys.platform == "darwin" else "systemd"


def db0_exe() -> str:
    me = Path(sys.argv[0]).absolute() if sys.argv and sys.argv[0] else None
    if me is None or me.name != "db0" or not me.exists():
        me = Path(sys.executable).with_name("db0")
    return str(me)


def unit_path() -> Path:
    if manager() == "launchd":
        return Path.home() / "Library" / "LaunchAgents" / f"{LABEL}.plist"
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config / "systemd" / "user" / UNIT


def _env() -> dict[str, str]:
    """What the service needs from this environment: where db0 keeps its data."""
    return {k: os.environ[k] for k in ("DB0_HOME",) if os.environ.get(k)}


def systemd_unit(exe: str, env: dict[str, str]) -> str:
    def q(s: str) -> str:  # systemd's quoting: double quotes, backslash escapes
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = ["# Written by `db0 daemon install-service`; `--remove` takes it out.",
             "[Unit]", "Description=db0 memory daemon", "", "[Service]", "Type=simple",
             f"ExecStart={q(exe)} daemon run", "Restart=on-failure", "RestartSec=2",
             "KillSignal=SIGTERM", "TimeoutStopSec=30"]
    lines += [f"Environment={q(f'{k}={v}')}" for k, v in sorted(env.items())]
    lines += ["", "[Install]", "WantedBy=default.target", ""]
    return "\n".join(lines)


def launchd_plist(exe: str, env: dict[str, str], log_dir: Path) -> bytes:
    doc: dict[str, Any] = {
        "Label": LABEL, "ProgramArguments": [exe, "daemon", "run"], "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},  # restart on failure only
        "StandardErrorPath": str(log_dir / "service.err"),
        "ProcessType": "Background"}
    if env:
        doc["EnvironmentVariables"] = env
    return plistlib.dumps(doc)


def _run(*cmd: str) -> tuple[bool, str]:
    if shutil.which(cmd[0]) is None:
        return False, f"{cmd[0]} not found"
    try:
        p = subprocess.run(list(cmd), capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, str(e)
    msg = (p.stderr or p.stdout).strip().splitlines()
    return p.returncode == 0, (msg[0] if msg else f"exit {p.returncode}")


def _write(path: Path, data: bytes) -> bool:
    if path.exists() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.db0-tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return True


def install(enable: bool) -> dict[str, Any]:
    from db0.daemon.paths import get_paths

    path, exe = unit_path(), db0_exe()
    if manager() == "launchd":
        data = launchd_plist(exe, _env(), get_paths().log_dir)
    else:
        data = systemd_unit(exe, _env()).encode()
    changed = _write(path, data)
    out: dict[str, Any] = {"manager": manager(), "unit": str(path), "changed": changed,
                           "exec": [exe, "daemon", "run"], "enabled": False}
    if not enable:
        return out
    if manager() == "launchd":
        domain = f"gui/{os.getuid()}"
        _run("launchctl", "bootout", f"{domain}/{LABEL}")
        ok, msg = _run("launchctl", "bootstrap", domain, str(path))
        cmd = f"launchctl bootstrap {domain} {path}"
    else:
        ok, msg = _run("systemctl", "--user", "daemon-reload")
        if ok:
            ok, msg = _run("systemctl", "--user", "enable", "--now", UNIT)
        cmd = f"systemctl --user enable --now {UNIT}"
    out["enabled"] = ok
    if not ok:
        raise Db0Error("failed", f"wrote {path} but could not enable it: {msg}",
                       f"run '{cmd}' in a login session, or use --no-enable")
    return out


def remove() -> dict[str, Any]:
    path = unit_path()
    if manager() == "launchd":
        _run("launchctl", "bootout", f"gui/{os.getuid()}/{LABEL}")
    elif path.exists():
        _run("systemctl", "--user", "disable", "--now", UNIT)
    existed = path.exists()
    if existed:
        path.unlink()
        if manager() == "systemd":
            _run("systemctl", "--user", "daemon-reload")
    return {"manager": manager(), "unit": str(path), "removed": existed}


def status() -> dict[str, Any]:
    path = unit_path()
    out: dict[str, Any] = {"manager": manager(), "unit": str(path), "installed": path.exists()}
    if not path.exists():
        return out
    if manager() == "launchd":
        ok, msg = _run("launchctl", "print", f"gui/{os.getuid()}/{LABEL}")
        out["running"] = ok and "state = running" in msg
    else:
        ok, msg = _run("systemctl", "--user", "is-active", UNIT)
        out["running"] = ok
        if not ok:
            out["state"] = msg
        out["enabled"] = _run("systemctl", "--user", "is-enabled", UNIT)[0]
    return out

"""db0 daemon install-service: the unit it writes runs `db0 daemon run` by absolute path,
restarts on failure and stops with SIGTERM (run here as systemd would run it); doctor reports
it; --remove takes it out."""

from __future__ import annotations

import json
import os
import plistlib
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

from conftest import DB0, Db0


def svc(d: Db0, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DB0, "daemon", "install-service", *args], env=d.env,
                          capture_output=True, text=True, timeout=60)


def test_unit_runs_the_daemon_and_sigterm_is_a_clean_stop(home: Path) -> None:
    d = Db0(home / "db0", env={"HOME": str(home / "h"), "XDG_CONFIG_HOME": ""})
    p = svc(d, "--no-enable", "--json")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    unit = home / "h" / ".config" / "systemd" / "user" / "db0.service"
    assert res["unit"] == str(unit) and res["changed"] is True and res["enabled"] is False
    text = unit.read_text()
    fields = dict(ln.split("=", 1) for ln in text.splitlines() if "=" in ln)
    argv = shlex.split(fields["ExecStart"])
    assert argv == [DB0, "daemon", "run"] and Path(argv[0]).is_absolute()
    assert fields["Restart"] == "on-failure" and fields["KillSignal"] == "SIGTERM"
    assert shlex.split(fields["Environment"]) == [f"DB0_HOME={home / 'db0'}"]
    if shutil.which("systemd-analyze"):
        v = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                           text=True, timeout=60)
        assert v.returncode == 0, v.stderr
    assert json.loads(svc(d, "--no-enable", "--json").stdout)["changed"] is False
    # As systemd runs it: the ExecStart line with the unit's environment, in the foreground.
    env = {**d.env, **dict(e.split("=", 1) for e in shlex.split(fields["Environment"]))}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while d.run("daemon", "status", check=False).code != 0:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the service's daemon did not come up"
            time.sleep(0.2)
        assert d.daemon_pid() == proc.pid  # `daemon run` execs: systemd tracks the daemon
        d.run("remember", "kept across a service stop")
        proc.send_signal(signal.SIGTERM)
        # A clean exit on SIGTERM, so Restart=on-failure does not bring it back.
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    doctor = json.loads(d.run("doctor", "--json", check=False).out)
    assert doctor["service"]["installed"] is True and doctor["service"]["unit"] == str(unit)
    assert d.json("recall", "service stop")["results"][0]["content"] == \
        "kept across a service stop"
    d.stop()
    gone = svc(d, "--remove", "--json")
    assert gone.returncode == 0 and json.loads(gone.stdout)["removed"] is True
    assert not unit.exists()
    assert json.loads(d.run("doctor", "--json", check=False).out)["service"] == {
        "manager": "systemd", "unit": str(unit), "installed": False}
    d.stop()


def test_enable_without_a_user_manager_says_how(home: Path) -> None:
    d = Db0(home / "db0", env={"HOME": str(home / "h"), "XDG_CONFIG_HOME": ""})
    manager = shutil.which("systemctl") is not None and subprocess.run(
        ["systemctl", "--user", "daemon-reload"], capture_output=True).returncode == 0
    p = svc(d)
    unit = home / "h" / ".config" / "systemd" / "user" / "db0.service"
    if manager:
        assert p.returncode == 0, p.stderr  # a real user manager: enabled and started
        svc(d, "--remove")
        return
    assert p.returncode == 1 and len(p.stderr.splitlines()) == 1
    assert "could not enable it" in p.stderr and "--no-enable" in p.stderr
    assert unit.exists()  # the unit is written; nothing else was left half-done
    assert svc(d, "--remove").returncode == 0 and not unit.exists()


def test_launchd_agent_restarts_on_failure_only() -> None:
    from db0.cli.service import launchd_plist

    doc = plistlib.loads(launchd_plist("/opt/db0/bin/db0", {"DB0_HOME": "/x y"}, Path("/l")))
    assert doc["ProgramArguments"] == ["/opt/db0/bin/db0", "daemon", "run"]
    assert doc["KeepAlive"] == {"SuccessfulExit": False} and doc["RunAtLoad"] is True
    assert doc["EnvironmentVariables"] == {"DB0_HOME": "/x y"}
    assert os.path.basename(doc["StandardErrorPath"]) == "service.err"

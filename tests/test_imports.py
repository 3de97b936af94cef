"""The CLI's start-up stays lean: it never loads the store or the heavy libraries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EDITABLE, Db0

HEAVY = ("apsw", "sqlite_vec", "llama_cpp", "psycopg", "watchdog", "numpy", "db0.store",
         "db0.daemon.core.server", "mcp", "pydantic")

PROBE = """
import sys
from db0.daemon import wirejson as json  # the std json would count as loaded by db0
args, heavy = json.loads(sys.argv[1]), json.loads(sys.argv[2])
sys.argv = ["db0", *args]
import db0.cli.app as app
try:
    app.main(sys.argv[1:])
except SystemExit:
    pass
print("LOADED " + json.dumps(sorted(m for m in sys.modules
                        if any(m == h or m.startswith(h + ".") for h in heavy))),
      file=sys.stderr)
"""


def _loaded(args: list[str], env: dict[str, str]) -> list[str]:
    p = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args), json.dumps(HEAVY)],
                       capture_output=True, text=True, env=env, timeout=120)
    line = [ln for ln in p.stderr.splitlines() if ln.startswith("LOADED ")][-1]
    return json.loads(line[len("LOADED "):])  # type: ignore[no-any-return]


def test_help_loads_nothing_heavy(home: Path) -> None:
    d = Db0(home)
    assert _loaded(["--help"], d.env) == []
    assert _loaded(["recall", "--help"], d.env) == []


def test_commands_load_nothing_heavy(db0: Db0) -> None:
    db0.run("remember", "start-up matters")
    for args in (["recall", "start-up"], ["remember", "another"], ["daemon", "status"],
                 ["list"]):
        assert _loaded(args, db0.env) == [], args


def test_linux_paths_equal_platformdirs_without_importing_it(tmp_path: Path) -> None:
    """paths.get_paths spells out the XDG rules so the CLI skips platformdirs (~13 ms)."""
    import os

    import platformdirs

    if not sys.platform.startswith("linux"):
        import pytest

        pytest.skip("the XDG rules are spelled out for Linux only")
    from db0.daemon import paths

    keep = {k: os.environ.get(k) for k in ("DB0_HOME", "XDG_RUNTIME_DIR", "XDG_DATA_HOME",
                                           "XDG_CONFIG_HOME", "XDG_STATE_HOME")}
    try:
        os.environ.pop("DB0_HOME", None)
        for env in ({}, {"XDG_RUNTIME_DIR": str(tmp_path / "run"),
                         "XDG_DATA_HOME": str(tmp_path / "d"),
                         "XDG_CONFIG_HOME": str(tmp_path / "c"),
                         "XDG_STATE_HOME": str(tmp_path / "s")}):
            for k in keep:
                if k != "DB0_HOME":
                    os.environ.pop(k, None)
            os.environ.update(env)
            p = paths.get_paths()
            assert str(p.config_dir) == platformdirs.user_config_dir("db0")
            assert str(p.data_dir) == platformdirs.user_data_dir("db0")
            assert str(p.log_dir) == platformdirs.user_log_dir("db0")
            if env:
                assert str(p.runtime_dir) == platformdirs.user_runtime_dir("db0")
    finally:
        for k, v in keep.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    probe = "import sys, db0.daemon.paths as p; p.get_paths(); print('platformdirs' in sys.modules)"
    env = {k: v for k, v in os.environ.items() if k != "DB0_HOME"}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "False"


def test_well_formed_commands_skip_typer_and_click(db0: Db0) -> None:
    """The fast path: a well-formed command line runs without Typer or click (every command
    declared through db0cli/params.py); help and mistakes still go through Typer."""
    db0.run("remember", "start-up matters")
    framework = ("typer", "click", "rich")

    def loaded(args: list[str]) -> list[str]:
        p = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args),
                            json.dumps(framework)], capture_output=True, text=True,
                           env=db0.env, timeout=120)
        line = [ln for ln in p.stderr.splitlines() if ln.startswith("LOADED ")][-1]
        return sorted({m.split(".")[0] for m in json.loads(line[len("LOADED "):])})

    for args in (["recall", "start-up", "-n", "3"], ["remember", "-k", "x", "another"],
                 ["list", "--json"], ["pack", "start-up", "--budget", "100"],
                 ["session", "list"], ["daemon", "status"], ["stats"]):
        assert loaded(args) == [], args
    for args in (["recall", "--help"], ["recall", "x", "-n", "many"], ["recall", "--bogus"]):
        assert "click" in loaded(args), args


def test_hot_commands_skip_heavy_standard_modules(db0: Db0) -> None:
    """What every prompt and every recall pays for: no `socket` (its enums), `pathlib`,
    `subprocess`, `dataclasses`, `inspect`, `typing`, `datetime`, `importlib`, `json`, `re`,
    `collections`, `contextlib` or `struct` on the hot paths (the daemon starts elsewhere;
    annotations are read by mypy, not at run time; frames go through daemon/wirejson.py and
    their length through int.to_bytes)."""
    if EDITABLE:
        pytest.skip("an editable install's finder (make dev) imports some of these at start")
    db0.run("remember", "start-up matters")
    heavy = ("socket", "pathlib", "subprocess", "dataclasses", "inspect", "threading",
             "typing", "datetime", "importlib", "json", "re", "collections", "contextlib",
             "struct")
    hook_in = json.dumps({"session_id": "imports", "cwd": str(db0.home),
                          "hook_event_name": "UserPromptSubmit", "prompt": "start-up"})

    def loaded(args: list[str], stdin: str = "") -> list[str]:
        p = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args), json.dumps(heavy)],
                           capture_output=True, text=True, env=db0.env, timeout=120,
                           input=stdin)
        line = [ln for ln in p.stderr.splitlines() if ln.startswith("LOADED ")][-1]
        return sorted(json.loads(line[len("LOADED "):]))

    assert loaded(["recall", "start-up"]) == []
    assert loaded(["remember", "another start-up fact"]) == []
    assert loaded(["list", "-n", "3"]) == []
    assert loaded(["hook", "prompt", "--agent", "claude-code"], hook_in) == []
    # ...and the probe can see them: the same run with an import of its own does.
    assert loaded(["daemon", "status"]) != [] or loaded(["doctor"]) != []


def _imported(argv: list[str], env: dict[str, str], stdin: str = "") -> set[str]:
    """The modules a run of argv imported (Python's -X importtime, through the environment)."""
    p = subprocess.run(argv, capture_output=True, text=True, timeout=120, input=stdin,
                       env={**env, "PYTHONPROFILEIMPORTTIME": "1"})
    assert p.returncode == 0, p.stderr[-500:]
    return {ln.rsplit("|", 1)[1].strip() for ln in p.stderr.splitlines()
            if ln.startswith("import time:") and "|" in ln}


def test_the_installed_db0_starts_without_site_and_typer_gets_it(db0: Db0) -> None:
    """`make install` and `make refresh` put db0's launcher in place of pip's script
    (db0cli/launcher.py): the hot paths start without `site`; the Typer path runs it first."""
    from conftest import DB0

    if EDITABLE:
        pytest.skip("an editable install (make dev) keeps pip's script")
    assert Path(DB0).read_text().split("\n", 1)[0] == f"#!{sys.executable} -S"
    db0.run("remember", "start-up without site")
    hook_in = json.dumps({"session_id": "launcher", "cwd": str(db0.home),
                          "hook_event_name": "UserPromptSubmit", "prompt": "start-up"})
    for args, stdin in ((["--version"], ""), (["recall", "start-up"], ""),
                        (["remember", "a second start-up fact"], ""),
                        (["hook", "prompt", "--agent", "claude-code"], hook_in)):
        mods = _imported([DB0, *args], db0.env, stdin)
        assert "db0.cli.app" in mods and "site" not in mods, args
    for args in (["--help"], ["recall", "--help"], ["completions", "show", "bash"]):
        assert {"site", "click"} <= _imported([DB0, *args], db0.env), args
    # A mistake on the Typer path: the usual one line and exit status.
    p = subprocess.run([DB0, "recall", "x", "-n", "many"], capture_output=True, text=True,
                       env=db0.env, timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr and "-n" in p.stderr, p.stderr


def test_the_launcher_replaces_only_pips_db0_script(tmp_path: Path) -> None:
    from db0.cli import launcher

    assert launcher.launcher("python3", ["/x"]) is None  # not absolute
    assert launcher.launcher("/a b/python", ["/x"]) is None  # a space ends the interpreter
    assert launcher.launcher("/" + "p" * 200, ["/x"]) is None  # longer than a shebang
    text = launcher.launcher(sys.executable, launcher.site_paths())
    assert text is not None and text.startswith(f"#!{sys.executable} -S\n")

    other = tmp_path / "other"
    other.write_text("#!/bin/sh\necho hi\n")
    assert launcher.install(other).startswith("left alone")
    assert other.read_text() == "#!/bin/sh\necho hi\n"

    script = tmp_path / "db0"
    script.write_text(f"#!{sys.executable}\nimport sys\nfrom db0.cli.app import entry\n"
                      "if __name__ == '__main__':\n    sys.exit(entry())\n")
    if EDITABLE:
        assert launcher.install(script).startswith("left alone: an editable install")
        return
    assert launcher.install(script) == "replaced by the launcher"
    assert launcher.install(script) == "the launcher already"
    assert os.access(script, os.X_OK)
    p = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.startswith("db0 "), p.stderr
    with pytest.raises(OSError):
        launcher.install(tmp_path / "missing")

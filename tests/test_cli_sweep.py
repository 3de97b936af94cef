"""Every command of the CLI, found in its own command tree, run the ways a person gets it wrong.

For each command and subcommand, in an empty home and in a populated one: `--help`, nothing at
all, unknown ids for its arguments, a malformed value for each option that takes a number or a
choice, numbers out of any range for each number option, and a text far over any limit for
each text option. Whatever happens, the exit code is one the README lists, nothing shows a
traceback or an `internal` error, a command that failed wrote nothing, and an error speaks the
command line's language: the daemon's refusal of a value names the option it came from, never
a request parameter or the wire protocol's documentation. A new command is covered without
editing this file.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import click
import pytest
from conftest import DB0, Db0

EXIT_CODES = {0, 1, 2, 3, 4, 5}
# Run only with --help: a foreground daemon and a model download have their own tests.
HELP_ONLY = {("daemon", "run"), ("model", "pull"), ("model", "install")}
UNKNOWN = "zz-unknown-0123456789"


def _commands() -> list[tuple[tuple[str, ...], click.Command]]:
    import warnings

    with warnings.catch_warnings():  # typer 0.16 on click 8.5: its own deprecation notices
        warnings.simplefilter("ignore", DeprecationWarning)
        import typer.main

        from db0.cli import app

        app._register_commands()
    root = typer.main.get_command(app.app)
    out: list[tuple[tuple[str, ...], click.Command]] = []

    def walk(cmd: click.Command, path: tuple[str, ...]) -> None:
        if isinstance(cmd, click.Group):
            for name, sub in sorted(cmd.commands.items()):
                walk(sub, (*path, name))
        else:
            out.append((path, cmd))

    walk(root, ())
    return out


COMMANDS = _commands()


def _groups() -> list[tuple[tuple[str, ...], click.Group]]:
    """The root and every group of the command tree (what a person may type alone)."""
    from db0.cli import app

    out: list[tuple[tuple[str, ...], click.Group]] = []

    def walk(cmd: click.Command, path: tuple[str, ...]) -> None:
        if isinstance(cmd, click.Group):
            out.append((path, cmd))
            for name, sub in sorted(cmd.commands.items()):
                walk(sub, (*path, name))

    import typer.main

    walk(typer.main.get_command(app.app), ())
    return out


GROUPS = _groups()


def _fill(cmd: click.Command) -> list[str]:
    """The command's required arguments and options, given values that name nothing."""
    args: list[str] = []
    for p in cmd.params:
        if isinstance(p, click.Option) and p.required:
            args += [p.opts[0], UNKNOWN]
    for p in cmd.params:
        if isinstance(p, click.Argument) and p.required:
            args.append(UNKNOWN)
    return args


def _malformed(cmd: click.Command) -> Iterator[tuple[str, list[str]]]:
    for p in cmd.params:
        if not isinstance(p, click.Option) or p.is_flag:
            continue
        if isinstance(p.type, click.types.IntParamType | click.types.FloatParamType):
            yield p.name or "?", [p.opts[0], "not-a-number"]
        elif isinstance(p.type, click.Choice):
            yield p.name or "?", [p.opts[0], "no-such-choice"]


LONG = "y" * 20_000  # over every length limit a text option's value meets


def _out_of_range(cmd: click.Command) -> Iterator[tuple[click.Option, list[str]]]:
    """Well-formed values past any limit: a number below and far above every range, a text
    far over every length limit. Some commands may take them; none may crash on them."""
    for p in cmd.params:
        if not isinstance(p, click.Option) or p.is_flag:
            continue
        if isinstance(p.type, click.types.IntParamType | click.types.FloatParamType):
            yield p, [p.opts[0], "-1"]
            yield p, [p.opts[0], "1000000000000"]
        elif isinstance(p.type, click.types.StringParamType):
            yield p, [p.opts[0], LONG]


def _fingerprint(home: Path) -> tuple[Any, ...]:
    db = home / "data" / "db0.sqlite3"
    if not db.exists():
        return (0, 0, 0, 0)  # a new, empty database is not a write
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    conn.set_busy_timeout(10_000)
    try:
        return tuple(conn.execute("SELECT (SELECT count(*) FROM memories), "
                                  "(SELECT coalesce(max(seq), 0) FROM ops), "
                                  "(SELECT count(*) FROM sessions), "
                                  "(SELECT count(*) FROM checkpoints)").fetchone())
    finally:
        conn.close()


class Runner:
    def __init__(self, home: Path, work: Path) -> None:
        self.db0 = Db0(home, env={"HOME": str(work / "home"), "NO_COLOR": "1"})
        (work / "home").mkdir(exist_ok=True)
        self.work = work
        self.home = home

    def check(self, args: list[str], what: str, must_fail: bool = False,
              option: click.Option | None = None) -> int:
        """Run a command line; `option`: the option given a value out of range, which an
        error about that value must name."""
        before = _fingerprint(self.home)
        p = subprocess.run([DB0, *args], input=b"", capture_output=True, timeout=120,
                           env=self.db0.env, cwd=self.work)
        out = p.stdout.decode("utf-8", "replace")
        err = p.stderr.decode("utf-8", "replace")
        shown = f"db0 {' '.join(a[:40] for a in args)} ({what}) -> {p.returncode}\n{err[-2000:]}"
        assert p.returncode in EXIT_CODES, shown
        if path_of(args) != ("daemon", "logs"):  # it shows the log, which may hold them
            assert "Traceback" not in out + err, shown
        assert "internal" not in err.lower(), shown
        if must_fail:
            assert p.returncode != 0, shown
        if p.returncode not in (0, 3):
            assert _fingerprint(self.home) == before, f"a failed command wrote: {shown}"
            lines = [ln for ln in err.splitlines() if ln.strip()]
            assert lines, f"failed without a word: {shown}"
            if lines[0].startswith("db0: error:"):
                assert len(lines) == 1, f"an error is one line: {shown}"
            assert "protocol.md" not in err, f"an error in the wire protocol's words: {shown}"
            if option is not None and " must be " in err:
                assert any(o in lines[0].split(" must be ")[0] for o in option.opts), (
                    f"the error does not name {option.opts[0]}: {shown}")
        return p.returncode


def path_of(args: list[str]) -> tuple[str, ...]:
    return tuple(args[:2])


def _populate(d: Db0) -> None:
    d.run("remember", "I prefer tabs over spaces", "--key", "indent")
    d.run("remember", "the deploy target is fly.io", "--tag", "ops")
    d.run("remember", "a task note", "-s", "task", env={"DB0_TASK": "fix-ci"})
    d.run("checkpoint", "create", "--label", "start", env={"DB0_SESSION": "sweep-session"})


@pytest.fixture(scope="module", params=["empty", "populated"])
def runner(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Runner]:
    import tempfile

    from conftest import daemon_pids

    with tempfile.TemporaryDirectory(prefix="db0s", dir="/tmp") as d:
        home = Path(d)
        r = Runner(home, tmp_path_factory.mktemp("work"))
        if request.param == "populated":
            _populate(r.db0)
        yield r
        r.db0.stop()
        for pid in daemon_pids(home):
            os.kill(pid, 9)


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=" ".join)
def test_help(path: tuple[str, ...], tmp_path: Path) -> None:
    r = Runner(tmp_path / "h", tmp_path)
    assert r.check([*path, "--help"], "help") == 0


@pytest.mark.parametrize("path,group", GROUPS, ids=[" ".join(p) or "db0" for p, _ in GROUPS])
def test_a_group_alone_shows_its_help(path: tuple[str, ...], group: click.Group,
                                      tmp_path: Path) -> None:
    """`db0`, `db0 session`...: the group's whole help (as its --help shows it), a usage
    error's status, nothing written."""
    r = Runner(tmp_path / "h", tmp_path)
    assert r.check(list(path), "alone", must_fail=True) == 2
    alone = subprocess.run([DB0, *path], capture_output=True, text=True, timeout=60,
                           env=r.db0.env).stderr
    helped = subprocess.run([DB0, *path, "--help"], capture_output=True, text=True,
                            timeout=60, env=r.db0.env).stdout
    assert alone.strip() == helped.strip() and "Commands:" in alone, alone[:500]
    assert set(group.commands) <= set(alone.split()) | {
        n for n, c in group.commands.items() if c.hidden}


@pytest.mark.slow
@pytest.mark.parametrize("path,cmd", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_wrong_ways(runner: Runner, path: tuple[str, ...], cmd: click.Command) -> None:
    if path in HELP_ONLY:
        pytest.skip("help only (its own tests run it)")
    required = [p for p in cmd.params if p.required]
    code = runner.check(list(path), "nothing given", must_fail=bool(required))
    if required:
        assert code == 2, f"db0 {' '.join(path)} without its arguments should be a usage error"
    filled = _fill(cmd)
    if filled:
        runner.check([*path, *filled], "unknown ids")
    for name, bad in _malformed(cmd):
        code = runner.check([*path, *filled, *bad], f"malformed --{name}", must_fail=True)
        assert code == 2, f"db0 {' '.join(path)} {' '.join(bad)} should be a usage error"
    for opt, bad in _out_of_range(cmd):
        runner.check([*path, *filled, *bad], f"{opt.opts[0]} out of range", option=opt)


def test_the_database_is_intact_after_the_sweep(runner: Runner) -> None:
    runner.db0.stop()
    db = runner.home / "data" / "db0.sqlite3"
    if db.exists():
        conn = apsw.Connection(str(db))
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.close()


# Commands whose output is already a protocol of its own: the hook answers the agent in its
# JSON, the MCP server speaks JSON-RPC, `daemon run` is the daemon in the foreground.
NO_JSON = {("hook",), ("mcp",), ("daemon", "run")}


@pytest.mark.parametrize("path,cmd", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_command_takes_json_and_shows_examples(path: tuple[str, ...],
                                                    cmd: click.Command) -> None:
    names = {n for p in cmd.params if isinstance(p, click.Option) for n in p.opts}
    if path not in NO_JSON:
        assert "--json" in names, f"db0 {' '.join(path)} has no --json"
    if path not in NO_JSON and path != ("git", "capture"):
        assert "Example" in (cmd.help or ""), f"db0 {' '.join(path)} --help shows no example"

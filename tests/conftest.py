"""Shared fixtures: a private DB0_HOME per test (short, for the ~100-byte socket path limit),
the real `db0` binary, and a check that no daemon outlives its test."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

DB0 = str(Path(sys.executable).with_name("db0"))


def _editable() -> bool:
    from db0.cli.launcher import editable  # db0 installed editable (make dev)

    return editable()


# An editable install keeps pip's script, and its finder (a .pth file) imports what the
# regular install's start does not: the tests of start-up cost skip there, saying so.
EDITABLE = _editable()
T = TypeVar("T")


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


class Db0:
    """Runs the real `db0` command in one DB0_HOME, as a user would from a shell."""

    def __init__(self, home: Path, env: dict[str, str] | None = None) -> None:
        self.home = home
        self.env = {**os.environ, "DB0_HOME": str(home), "NO_COLOR": "1", **(env or {})}
        for var in ("DB0_USER", "DB0_AGENT", "DB0_SESSION", "DB0_TASK"):
            if env is None or var not in env:
                self.env.pop(var, None)

    def run(self, *args: str, input: str | bytes | None = None, check: bool = True,
            env: dict[str, str] | None = None, timeout: float = 120) -> Result:
        data = input.encode() if isinstance(input, str) else input
        p = subprocess.run([DB0, *args], input=data, capture_output=True, timeout=timeout,
                           env={**self.env, **(env or {})})
        r = Result(p.returncode, p.stdout.decode("utf-8", "replace"),
                   p.stderr.decode("utf-8", "replace"))
        if check and r.code != 0:
            raise AssertionError(f"db0 {' '.join(args)} exited {r.code}: {r.err}{r.out}")
        return r

    def json(self, *args: str, **kw: Any) -> Any:
        return self.run(*args, "--json", **kw).json()

    @property
    def pid_file(self) -> Path:
        return self.home / "run" / "daemon.pid"

    def daemon_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def stop(self) -> None:
        pid = self.daemon_pid()
        subprocess.run([DB0, "daemon", "stop"], env=self.env, capture_output=True, timeout=60)
        if pid:
            _wait_dead(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of ours is dead for our purpose
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _wait_dead(pid: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.02)
    return False


def daemon_pids(home: Path) -> list[int]:
    """Every daemon process whose DB0_HOME is `home` (found through /proc)."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().split(b"\0")
            if b"db0.daemon" not in cmd:
                continue
            env = (d / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"DB0_HOME={home}".encode() in env and _alive(int(d.name)):
            pids.append(int(d.name))
    return pids


@pytest.fixture
def home() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="db0t", dir="/tmp") as d:
        yield Path(d)
        # No stray daemons: stop them, and fail the test if one would not stop.
        leftovers = daemon_pids(Path(d))
        for pid in leftovers:
            os.kill(pid, signal.SIGTERM)
        stuck = [p for p in leftovers if not _wait_dead(p, 20)]
        for pid in stuck:
            os.kill(pid, signal.SIGKILL)
        assert not stuck, f"daemon(s) {stuck} ignored SIGTERM"


def with_git(home: Path) -> Db0:
    """A Db0 in home/db0 whose git has a home of its own (home/githome) and a fixed author, so
    commits made by a test neither read nor change the real user's git config."""
    gh = home / "githome"
    gh.mkdir()
    return Db0(home / "db0", env={
        "HOME": str(gh), "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "Ada",
        "GIT_AUTHOR_EMAIL": "ada@example.org", "GIT_COMMITTER_NAME": "Ada",
        "GIT_COMMITTER_EMAIL": "ada@example.org"})


@pytest.fixture
def db0(home: Path) -> Iterator[Db0]:
    d = Db0(home)
    yield d
    d.stop()


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Whatever a test forgets, it never touches the real user's db0.
    monkeypatch.setenv("DB0_HOME", str(tmp_path / "h"))
    for var in ("DB0_USER", "DB0_AGENT", "DB0_SESSION", "DB0_TASK"):
        monkeypatch.delenv(var, raising=False)


@contextlib.contextmanager
def held_clock() -> Iterator[float]:
    """Wall-clock time held at one instant inside the block: scores that decay with a
    memory's age (recency) then compare exactly between two recalls made moments apart."""
    now, real = time.time(), time.time
    time.time = lambda: now
    try:
        yield now
    finally:
        time.time = real


@pytest.fixture
def still_clock() -> Iterator[float]:
    """held_clock() for the whole test."""
    with held_clock() as now:
        yield now


def give_models(home: Path, models: Path) -> None:
    """Put installed models into a home, as `db0 model install` would: its folders private."""
    import shutil

    from db0.daemon.paths import make_private_dir

    make_private_dir(home / "data")
    shutil.copytree(models, home / "data" / "models")


def vm_steps(conn: Any, fn: Callable[[], T]) -> tuple[T, int]:
    """`fn()`'s result and roughly how many SQLite VM steps it took on `conn` (counted in tens
    by a progress handler): a cost that does not depend on the machine's speed or load."""
    steps = [0]

    def count() -> bool:
        steps[0] += 1
        return False

    conn.set_progress_handler(count, 10)
    try:
        return fn(), steps[0]
    finally:
        conn.set_progress_handler(None)


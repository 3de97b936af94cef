"""Git capture through the git CLI: the hooks `db0 integrate git` installs, amends and rebases
superseding what they rewrote, an existing hook kept, core.hooksPath, a worktree, backfill."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import Db0, with_git

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

EXISTING_HOOK = ("#!/bin/sh\n# the team's own hook\n"
                 "echo \"ran $(git rev-parse --short HEAD)\" >> \"{log}\"\n")


@pytest.fixture
def db(home: Path) -> Any:
    d = with_git(home)
    yield d
    d.stop()


def git(d: Db0, cwd: Path, *args: str, input: str | None = None) -> str:
    p = subprocess.run(["git", *args], cwd=cwd, env=d.env, capture_output=True, text=True,
                       input=input, timeout=60)
    assert p.returncode == 0, f"git {' '.join(args)}: {p.stderr}"
    return p.stdout


def commit(d: Db0, repo: Path, name: str, text: str, msg: str) -> None:
    (repo / name).write_text(text)
    git(d, repo, "add", name)
    git(d, repo, "commit", "-q", "-m", msg)


def live_commits(d: Db0) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = d.json("list", "--tag", "git", "--scope", "agent",
                                        "-n", "1000")["memories"]
    return rows


def settle(d: Db0, repo: Path, timeout: float = 60,
           rewritten: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Wait until the live commit memories are exactly the commits reachable in the repo, and
    the `rewritten` commits are stored too. Each capture runs in the background, and one
    spooled while the daemon starts is replayed at the spool's next round, a second later: a
    rewritten commit's capture may come after everything the live set shows."""
    want = set(git(d, repo, "rev-list", "--all", "HEAD").split())
    rows: list[dict[str, Any]] = []
    stored: set[str] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if d.daemon_pid() is not None:
            rows = live_commits(d)
            if rewritten:
                stored = {r["metadata"]["sha"] for r in d.json(
                    "list", "--tag", "git", "--include-superseded", "-n", "1000")["memories"]}
            if ({r["metadata"]["sha"] for r in rows} == want and len(rows) == len(want)
                    and stored >= set(rewritten)):
                return rows
        time.sleep(0.3)
    got = {r["metadata"]["sha"] for r in rows}
    raise AssertionError(f"missing {want - got}, extra {got - want}, {len(rows)} rows, "
                         f"rewritten and not stored: {set(rewritten) - stored}")


def new_repo(d: Db0, path: Path) -> Path:
    path.mkdir(parents=True)
    git(d, path, "init", "-q", "-b", "main")
    return path


def integrate(d: Db0, cwd: Path, *args: str) -> dict[str, Any]:
    p = subprocess.run([_db0(), "integrate", "git", *args, "--json"], cwd=cwd, env=d.env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    out: dict[str, Any] = json.loads(p.stdout)
    return out


def _db0() -> str:
    from conftest import DB0
    return DB0


def test_commits_amends_rebases_worktrees_and_an_existing_hook(db: Db0, home: Path) -> None:
    repo = new_repo(db, home / "src" / "proj")
    log = home / "team-hook.log"
    hook = repo / ".git" / "hooks" / "post-commit"
    hook.write_text(EXISTING_HOOK.format(log=log))
    hook.chmod(0o755)
    before = hook.read_bytes()
    first = integrate(db, repo)
    assert {c["action"] for c in first["changes"]} == {"updated", "created"}
    again = integrate(db, repo)
    assert {c["action"] for c in again["changes"]} == {"unchanged"}
    # The daemon is not running: the first hooks spool and start one.
    assert db.daemon_pid() is None
    commit(db, repo, "a.md", "alpha\n", "Add the alpha notes")
    commit(db, repo, "b.md", "beta\n", "Use sqlite for the cache layer")
    git(db, repo, "commit", "-q", "--amend", "-m", "Use sqlite for the cache layer, not redis")
    git(db, repo, "checkout", "-q", "-b", "feature", "HEAD~1")
    commit(db, repo, "f.md", "f\n", "Feature: parse the flamingo format")
    commit(db, repo, "g.md", "g\n", "Feature: render flamingo charts")
    git(db, repo, "checkout", "-q", "main")
    commit(db, repo, "c.md", "c\n", "Main moves on: cache eviction")
    git(db, repo, "checkout", "-q", "feature")
    old_feature = git(db, repo, "rev-list", "main..feature").split()
    git(db, repo, "rebase", "-q", "main")
    wt = home / "src" / "proj-wt"
    git(db, repo, "worktree", "add", "-q", "-b", "side", str(wt), "main")
    commit(db, wt, "w.md", "w\n", "Worktree commit: wombat support")

    rows = settle(db, repo, rewritten=tuple(old_feature))
    by_subject = {r["content"].splitlines()[0]: r for r in rows}
    assert "Use sqlite for the cache layer" not in by_subject  # the amended-away version
    assert {"Use sqlite for the cache layer, not redis", "Feature: parse the flamingo format",
            "Main moves on: cache eviction", "Worktree commit: wombat support"} <= set(by_subject)
    assert all(r["metadata"]["repo"] == "proj" and "git" in r["tags"] and "proj" in r["tags"]
               for r in rows)
    assert by_subject["Worktree commit: wombat support"]["metadata"]["branch"] == "side"
    assert by_subject["Main moves on: cache eviction"]["metadata"]["branch"] == "main"
    assert by_subject["Feature: render flamingo charts"]["metadata"]["files"] == ["g.md"]
    # The rewritten commits are kept, superseded by their new versions, in the history.
    every = db.json("list", "--tag", "git", "--include-superseded", "-n", "1000")["memories"]
    old_rows = [r for r in every if r["metadata"]["sha"] in old_feature]
    assert len(old_rows) == len(old_feature) == 2
    assert all(r["superseded_by"] in {x["id"] for x in rows} for r in old_rows)
    found = db.json("recall", "flamingo charts", "--tag", "git", "-n", "10")["results"]
    shas = [r["metadata"]["sha"] for r in found]
    assert not set(shas) & set(old_feature)
    assert len(shas) == len(set(shas))
    hist = db.json("history", by_subject["Feature: render flamingo charts"]["id"])
    assert hist["versions"][0]["metadata"]["sha"] in old_feature, hist
    # The team's hook still ran for every commit, after db0's block.
    assert len(log.read_text().splitlines()) >= 5
    removed = integrate(db, repo, "--remove")
    assert {c["action"] for c in removed["changes"]} == {"updated", "removed"}
    assert hook.read_bytes() == before
    assert not (repo / ".git" / "hooks" / "post-rewrite").exists()


def test_hooks_path_detached_head_and_backfill(db: Db0, home: Path) -> None:
    repo = new_repo(db, home / "r2")
    git(db, repo, "config", "core.hooksPath", ".githooks")
    for i in range(5):
        commit(db, repo, f"n{i}.md", f"{i}\n", f"Backfilled note number {i}")
    db.run("daemon", "start")
    out = db_ingest(db, repo)
    assert out == {"repo": "r2", "commits": 5, "stored": 5, "duplicate": 0, "superseded": 0}
    assert db_ingest(db, repo)["stored"] == 0  # twice stores nothing new
    res = integrate(db, repo)
    assert all(c["file"].startswith(str(repo / ".githooks")) for c in res["changes"])
    assert (repo / ".githooks" / "post-commit").exists()
    git(db, repo, "checkout", "-q", "--detach")
    commit(db, repo, "d.md", "d\n", "Detached experiment with zebras")
    rows = settle(db, repo)
    assert len(rows) == 6
    zebra = next(r for r in rows if "zebras" in r["content"])
    assert "branch" not in zebra["metadata"] and "detached HEAD" in zebra["content"]
    assert db_ingest(db, repo)["stored"] == 0


def db_ingest(d: Db0, repo: Path, *extra: str) -> dict[str, Any]:
    p = subprocess.run([_db0(), "ingest", "git", *extra, "--json"], cwd=repo, env=d.env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    out: dict[str, Any] = json.loads(p.stdout)
    return out


def test_bad_input_is_one_line_and_stores_nothing(db: Db0, home: Path) -> None:
    empty = new_repo(db, home / "empty")
    db.run("daemon", "start")
    p = subprocess.run([_db0(), "ingest", "git"], cwd=empty, env=db.env, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 2 and "no commits yet" in p.stderr and len(p.stderr.splitlines()) == 1
    plain = home / "plain"
    plain.mkdir()
    p = subprocess.run([_db0(), "integrate", "git"], cwd=plain, env=db.env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "not inside a git repository" in p.stderr
    nogit = {**db.env, "PATH": str(Path(_db0()).parent)}
    p = subprocess.run([_db0(), "ingest", "git"], cwd=empty, env=nogit, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode != 0 and "git is not on PATH" in p.stderr
    p = subprocess.run([_db0(), "git", "capture"], cwd=empty, env=nogit, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0 and p.stdout == "" and "Traceback" not in p.stderr
    # A hook that is not a shell script is refused and left exactly as it was.
    hook = empty / ".git" / "hooks" / "post-commit"
    hook.write_text("#!/usr/bin/env python3\nprint('mine')\n")
    p = subprocess.run([_db0(), "integrate", "git"], cwd=empty, env=db.env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "not a shell script" in p.stderr
    assert hook.read_text() == "#!/usr/bin/env python3\nprint('mine')\n"
    assert not (empty / ".git" / "hooks" / "post-rewrite").exists()
    assert db.json("stats")["memories"] == 0
    assert os.path.exists(db.home)

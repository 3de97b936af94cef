"""Watched folders through the real CLI and a real daemon: what a folder holds after creates,
edits, renames, deletes, atomic saves, a thousand files at once and a SIGKILL'd daemon is what
a fresh scan of the folder gives, with no duplicates; bad folders fail with one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import DB0, Db0, _wait_dead, daemon_pids

from db0.daemon.services import watchparse
from db0.store import watch as sw
from db0.store.context import Context

CONFIG = '[watch]\ndebounce = "0.2s"\nmax_file_size = 4096\n'


@pytest.fixture
def wd(home: Path) -> Iterator[Db0]:
    """A daemon whose watcher reacts fast and calls files over 4 KiB large."""
    (home / "config").mkdir()
    (home / "config" / "config.toml").write_text(CONFIG)
    d = Db0(home, {"DB0_USER": "tester"})
    yield d
    d.stop()


@pytest.fixture
def notes() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="db0n", dir="/tmp") as d:
        yield Path(d).resolve()


def fresh_scan(folder: Path, limit: int = 4096) -> dict[str, str]:
    """What the folder should hold, computed from the files: key -> stored content."""
    w = sw.Watch(0, str(folder), watchparse.DEFAULT_GLOBS, "user", Context("tester"), 0.0)
    out: dict[str, str] = {}
    for dirpath, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")
                   and not os.path.islink(os.path.join(dirpath, d))]
        for name in files:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, folder)
            if name.startswith(".") or os.path.islink(path) or not watchparse.matches(
                    rel, w.globs):
                continue
            note = watchparse.read(path, limit)
            if isinstance(note, watchparse.Note):
                for anchor, content in watchparse.sections(rel, note.text):
                    out[w.key(rel, anchor)] = sw.item(w, rel, anchor, content).item["content"]
    return out


def stored(d: Db0, folder: Path) -> list[dict[str, Any]]:
    """The live memories `db0 export` gives for the folder."""
    out = d.run("export").out
    prefix = f"watch:{folder}/"
    return [m for m in map(json.loads, out.splitlines())
            if (m.get("key") or "").startswith(prefix)]


def as_map(items: list[dict[str, Any]]) -> dict[str, str]:
    keys = [m["key"] for m in items]
    assert len(keys) == len(set(keys)), "a key is stored twice"
    return {m["key"]: m["content"] for m in items}


def wait_in_step(d: Db0, folder: Path, timeout: float = 60.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    want: dict[str, str] = {}
    got: dict[str, str] = {}
    while time.monotonic() < deadline:
        want = fresh_scan(folder)
        got = as_map(stored(d, folder))
        if got == want:
            return got
        time.sleep(0.2)
    missing = sorted(set(want) - set(got))[:5]
    extra = sorted(set(got) - set(want))[:5]
    differ = sorted(k for k in set(want) & set(got) if want[k] != got[k])[:5]
    raise AssertionError(f"not in step: missing {missing}, extra {extra}, differ {differ}")


def error_line(r: Any) -> str:
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("db0: error: ") and "(to fix: " in lines[0], \
        r.err
    return str(lines[0])


# -- the commands ---------------------------------------------------------------------------

def test_add_list_status_remove(wd: Db0, notes: Path) -> None:
    (notes / "a.md").write_text("# Title\nintro\n\n## Setup\nrun make\n")
    (notes / "sub").mkdir()
    (notes / "sub" / "b.txt").write_text("plain words\n")
    (notes / "c.rst").write_text("not taken by the default globs\n")
    (notes / ".git").mkdir()
    (notes / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (notes / ".draft.md").write_text("# hidden\n")
    (notes / "bin.md").write_bytes(b"# x\n\0\1\2")
    (notes / "latin1.md").write_bytes("# caf\xe9\n".encode("latin-1"))
    (notes / "big.md").write_text("# big\n" + "word " * 2000)
    (notes / "link.md").symlink_to(notes / "a.md")
    res = wd.json("watch", "add", str(notes))
    assert res["path"] == str(notes) and res["state"] == "watching"
    assert (res["files"], res["sections"]) == (2, 3)
    reasons = {s["path"]: s["reason"] for s in res["skipped"]}
    assert reasons[".git"] == "version-control folder"
    assert reasons[".draft.md"] == "dotfile"
    assert reasons["bin.md"].startswith("binary")
    assert reasons["latin1.md"].startswith("not UTF-8")
    assert reasons["big.md"].startswith("too large")
    assert reasons["link.md"].startswith("symlink")
    assert res["ignored"] == 1  # c.rst
    assert as_map(stored(wd, notes)) == fresh_scan(notes)
    listed = wd.json("watch", "list")["watches"]
    assert [w["path"] for w in listed] == [str(notes)]
    text = wd.run("watch", "status").out
    assert "latin1.md\tnot UTF-8" in text and "bin.md\tbinary" in text
    # Adding it again, or a folder inside it, is refused with one line.
    again = wd.run("watch", "add", str(notes), check=False)
    assert again.code == 1 and "already watched" in error_line(again)
    inner = wd.run("watch", "add", str(notes / "sub"), check=False)
    assert inner.code == 1 and "inside" in error_line(inner)
    wd.run("watch", "remove", str(notes))
    assert wd.json("watch", "list")["watches"] == []
    assert len(stored(wd, notes)) == 3  # remove keeps the memories unless --forget
    gone = wd.run("watch", "remove", str(notes), check=False)
    assert gone.code == 4 and "not watched" in error_line(gone)
    wd.run("watch", "add", str(notes))  # the same memories are taken back, not duplicated
    assert as_map(stored(wd, notes)) == fresh_scan(notes)
    res = wd.json("watch", "remove", str(notes), "--forget")
    assert res["forgotten"] == 3 and stored(wd, notes) == []


def test_bad_folders_fail_with_one_line(wd: Db0, notes: Path) -> None:
    r = wd.run("watch", "add", str(notes / "nope"), check=False)
    assert r.code == 4 and "does not exist" in error_line(r)
    (notes / "file.md").write_text("x")
    r = wd.run("watch", "add", str(notes / "file.md"), check=False)
    assert r.code == 1 and "not a folder" in error_line(r)
    (notes / "loop").symlink_to(notes / "loop")
    r = wd.run("watch", "add", str(notes / "loop"), check=False)
    assert r.code == 1 and "symlink loop" in error_line(r)
    for own in (wd.home / "data", wd.home):
        r = wd.run("watch", "add", str(own), check=False)
        assert r.code == 1 and "db0's own data directory" in error_line(r)
    r = wd.run("watch", "add", str(notes), "--scope", "session", check=False)
    assert r.code == 1 and "session id" in error_line(r)
    if os.geteuid() != 0:  # root reads everything
        locked = notes / "locked"
        locked.mkdir(mode=0)
        r = wd.run("watch", "add", str(locked), check=False)
        assert r.code == 1 and "cannot be read" in error_line(r)
    # Nothing was half-stored and the daemon still serves.
    assert wd.json("watch", "list")["watches"] == []
    assert wd.run("remember", "still serving").code == 0


# -- keeping in step ------------------------------------------------------------------------

def test_edits_renames_deletes_and_atomic_saves(wd: Db0, notes: Path) -> None:
    a = notes / "a.md"
    a.write_text("# Project\nintro\n\n## Setup\nrun make\n\n## Usage\ncall it\n")
    wd.run("watch", "add", str(notes))
    before = {m["key"]: m for m in stored(wd, notes)}
    # An edit supersedes the section that changed and leaves the others as they were.
    a.write_text("# Project\nintro\n\n## Setup\nrun cmake instead\n\n## Usage\ncall it\n")
    wait_in_step(wd, notes)
    after = {m["key"]: m for m in stored(wd, notes)}
    setup = f"watch:{notes}/a.md#Project > Setup"
    usage = f"watch:{notes}/a.md#Project > Usage"
    assert after[usage] == before[usage]
    assert after[setup]["id"] != before[setup]["id"]
    hist = wd.json("history", after[setup]["id"])
    assert [v["id"] for v in hist["versions"]] == [before[setup]["id"], after[setup]["id"]]
    # A rename keeps each section's history under its new key.
    a.rename(notes / "b.md")
    wait_in_step(wd, notes)
    moved = {m["key"]: m for m in stored(wd, notes)}
    new_setup = moved[f"watch:{notes}/b.md#Project > Setup"]
    hist = wd.json("history", new_setup["id"])
    assert [v["id"] for v in hist["versions"]][-2:] == [after[setup]["id"], new_setup["id"]]
    assert hist["versions"][-2]["reason"] == "renamed from a.md"
    # An editor's atomic save: write a temporary file, rename it over the note.
    tmp = notes / ".b.md.swp"
    tmp.write_text("# Project\nintro\n\n## Setup\nrun cmake instead\n\n"
                   "## Usage\nsaved atomically\n")
    tmp.replace(notes / "b.md")
    got = wait_in_step(wd, notes)
    assert got[f"watch:{notes}/b.md#Project > Usage"].endswith("saved atomically")
    # A folder renamed, a file deleted, a file that stops being UTF-8.
    (notes / "dir").mkdir()
    (notes / "dir" / "c.md").write_text("# C\nsee\n")
    (notes / "d.txt").write_text("plain\n")
    wait_in_step(wd, notes)
    (notes / "dir").rename(notes / "dir2")
    (notes / "d.txt").unlink()
    (notes / "b.md").write_bytes(b"# Project\n\xff\xfe\n")
    got = wait_in_step(wd, notes)
    assert set(got) == {f"watch:{notes}/dir2/c.md#C"}
    c_hist = wd.json("history", stored(wd, notes)[0]["id"])
    assert c_hist["versions"][0]["reason"] == "renamed from dir/c.md"
    status = wd.json("watch", "status")["folders"][0]
    assert any(s["path"] == "b.md" and s["reason"].startswith("not UTF-8")
               for s in status["skipped"])
    assert wd.run("recall", "cmake", check=False).out.strip() == ""  # forgotten with b.md


def test_thousand_files_and_a_killed_daemon(wd: Db0, notes: Path) -> None:
    wd.run("watch", "add", str(notes))
    started = time.monotonic()
    for i in range(1000):
        (notes / f"n{i:04d}.md").write_text(f"# Note {i}\nbody of note {i}\n\n## More\nmore {i}\n")
    got = wait_in_step(wd, notes, timeout=90)
    assert len(got) == 2000
    took = time.monotonic() - started
    print(f"1,000 files indexed in {took:.1f} s")

    def kill() -> None:
        pid = wd.daemon_pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        assert _wait_dead(pid)

    # Killed between changes: what changed meanwhile is caught by the scan at start.
    kill()
    for i in range(0, 50):
        (notes / f"n{i:04d}.md").write_text(f"# Note {i}\nedited while down {i}\n")
    for i in range(50, 80):
        (notes / f"n{i:04d}.md").unlink()
    for i in range(80, 100):
        (notes / f"n{i:04d}.md").rename(notes / f"r{i:04d}.md")
    (notes / "new.md").write_text("# New\nwritten while down\n")
    wd.run("watch", "list")  # starts the daemon again
    wait_in_step(wd, notes)
    hist = wd.json("history", next(m["id"] for m in stored(wd, notes)
                                   if m["key"] == f"watch:{notes}/r0080.md#Note 80"))
    assert hist["versions"][-2]["reason"] == "renamed from n0080.md"
    # Killed in the middle of a burst: nothing lost, nothing twice.
    for i in range(300):
        (notes / f"burst{i:03d}.md").write_text(f"# Burst {i}\nburst text {i}\n")
    time.sleep(0.5)
    kill()
    for i in range(0, 300, 3):
        (notes / f"burst{i:03d}.md").unlink()
    wd.run("watch", "list")
    wait_in_step(wd, notes)
    # A fresh daemon watching the same folder stores exactly the same memories.
    with tempfile.TemporaryDirectory(prefix="db0f", dir="/tmp") as other:
        fresh = Db0(Path(other), {"DB0_USER": "tester"})
        try:
            fresh.run("watch", "add", str(notes), timeout=120)
            assert as_map(stored(fresh, notes)) == as_map(stored(wd, notes))
        finally:
            fresh.stop()
            assert not daemon_pids(Path(other))


def test_files_deleted_while_indexed(wd: Db0, notes: Path) -> None:
    wd.run("watch", "add", str(notes))
    for i in range(200):
        (notes / f"t{i:03d}.md").write_text(f"# T {i}\nshort-lived {i}\n")
    for i in range(200):
        (notes / f"t{i:03d}.md").unlink()
    (notes / "keep.md").write_text("# Keep\nthis one stays\n")
    assert set(wait_in_step(wd, notes)) == {f"watch:{notes}/keep.md#Keep"}
    st = wd.json("watch", "status")
    assert st["observer_alive"] and st["folders"][0]["error_count"] == 0
    assert subprocess.run([DB0, "recall", "stays"], env=wd.env, capture_output=True,
                          timeout=60).returncode == 0


def test_a_section_too_deep_for_a_key_of_its_path_is_kept_and_updated(wd: Db0,
                                                                      notes: Path) -> None:
    """A section's key names its folder, file and heading; past a key's limit it is their
    hash: the section is stored all the same, and an edit supersedes it."""
    from db0.store.memories import MAX_KEY_CHARS

    note = notes / "long.md"
    note.write_text(f"# {'deep ' * 120}\nthe first body\n")
    assert wd.json("watch", "add", str(notes))["sections"] == 1

    def live() -> list[dict[str, Any]]:
        return [m for m in map(json.loads, wd.run("export").out.splitlines())
                if "body" in m["content"]]

    [first] = live()
    assert first["key"].startswith("watch:") and len(first["key"]) <= MAX_KEY_CHARS
    assert as_map(live()) == fresh_scan(notes)
    note.write_text(f"# {'deep ' * 120}\nthe second body\n")
    deadline = time.monotonic() + 30
    while "second" not in "".join(m["content"] for m in live()):
        assert time.monotonic() < deadline, live()
        time.sleep(0.2)
    assert [m["key"] for m in live()] == [first["key"]]

"""The daemon's lifecycle on real sockets: auto-start races, stale sockets, kill -9, SIGTERM
drain, a version change, frame limits, permissions, config reload, a daemon that won't start."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import DB0, Db0, _wait_dead, daemon_pids

REPO = Path(__file__).resolve().parent.parent


def _wait_for(cond, timeout: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def test_kill_9_after_remember_loses_nothing(db0: Db0) -> None:
    ids = [db0.json("remember", f"fact number {i}")["id"] for i in range(5)]
    pid = db0.daemon_pid()
    assert pid
    os.kill(pid, signal.SIGKILL)
    assert _wait_dead(pid)
    # the next command replaces the stale socket and starts a new daemon
    got = {m["id"] for m in db0.json("list")["memories"]}
    assert got == set(ids)
    assert db0.daemon_pid() != pid


def test_racing_autostarts_get_one_daemon(home: Path) -> None:
    d = Db0(home)
    try:
        procs = [subprocess.Popen([DB0, "remember", f"racer {i}"], env=d.env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for i in range(6)]
        codes = [p.wait(60) for p in procs]
        assert codes == [0] * 6, [p.stderr.read() for p in procs if p.stderr]
        assert len(daemon_pids(home)) == 1
        assert d.json("stats")["memories"] == 6
    finally:
        d.stop()


def test_stale_socket_is_replaced(home: Path) -> None:
    d = Db0(home)
    run = home / "run"
    run.mkdir(mode=0o700)
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(run / "daemon.sock"))
    s.close()  # a socket file nobody listens on
    try:
        assert d.json("remember", "after a stale socket")["status"] == "stored"
    finally:
        d.stop()


def test_not_a_socket_is_refused(home: Path) -> None:
    d = Db0(home)
    run = home / "run"
    run.mkdir(mode=0o700)
    (run / "daemon.sock").write_text("I am a file")
    r = d.run("remember", "x", check=False)
    assert r.code == 5 and "not a socket" in r.err and "log" in r.err
    assert (run / "daemon.sock").read_text() == "I am a file"


def test_daemon_that_will_not_start_says_why(home: Path) -> None:
    d = Db0(home)
    (home / "data").mkdir(parents=True)
    (home / "data" / "db0.sqlite3").write_bytes(b"this is not a database at all" * 100)
    r = d.run("remember", "x", check=False)
    assert r.code == 5
    assert "failed to start" in r.err and str(home / "logs" / "daemon.log") in r.err
    assert len(r.err.strip().splitlines()) == 1


def test_permissions(db0: Db0, home: Path) -> None:
    db0.run("daemon", "start")
    assert stat.S_IMODE(os.stat(home / "run").st_mode) == 0o700
    st = os.stat(home / "run" / "daemon.sock")
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600


def test_runtime_dir_open_to_others_is_tightened(home: Path) -> None:
    run = home / "run"
    run.mkdir(mode=0o777)
    os.chmod(run, 0o777)
    d = Db0(home)
    try:
        d.run("daemon", "start")
        assert stat.S_IMODE(os.stat(run).st_mode) == 0o700
    finally:
        d.stop()


def _raw(home: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(home / "run" / "daemon.sock"))
    s.settimeout(10)
    return s


def _read(s: socket.socket) -> dict:  # type: ignore[type-arg]
    n = struct.unpack(">I", s.recv(4))[0]
    buf = b""
    while len(buf) < n:
        buf += s.recv(n - len(buf))
    return json.loads(buf)  # type: ignore[no-any-return]


def test_frames_hello_and_limits(db0: Db0, home: Path) -> None:
    db0.run("daemon", "start")
    s = _raw(home)
    body = json.dumps({"v": 1, "id": 7, "method": "daemon.hello", "params": {}}).encode()
    s.sendall(struct.pack(">I", len(body)) + body)
    hello = _read(s)
    assert hello["ok"] and hello["id"] == 7
    assert {"version", "protocol", "capabilities"} <= hello["result"].keys()
    assert "memory.remember" in hello["result"]["capabilities"]
    body = json.dumps({"v": 1, "id": 8, "method": "no.such", "params": {}}).encode()
    s.sendall(struct.pack(">I", len(body)) + body)
    resp = _read(s)
    assert not resp["ok"] and resp["error"]["code"] == "unknown_method"
    s.sendall(struct.pack(">I", 2**31))  # a frame far over the limit
    resp = _read(s)
    assert not resp["ok"] and resp["error"]["code"] == "too_large"
    s.close()
    s = _raw(home)
    s.sendall(struct.pack(">I", 5) + b"nope!")
    assert _read(s)["error"]["code"] == "bad_request"
    s.close()
    assert db0.json("daemon", "status")["running"]  # still serving


def test_sigterm_drains_and_closes(db0: Db0, home: Path) -> None:
    db0.run("daemon", "start")
    pid = db0.daemon_pid()
    assert pid
    lines = "".join(json.dumps({"content": f"bulk {i}"}) + "\n" for i in range(20000))
    result: dict[str, object] = {}

    def importer() -> None:
        r = db0.run("import", "-", "--json", input=lines, check=False)
        result["r"] = r

    t = threading.Thread(target=importer)
    t.start()
    time.sleep(0.8)
    os.kill(pid, signal.SIGTERM)
    t.join(120)
    assert _wait_dead(pid)
    assert not (home / "run" / "daemon.sock").exists()
    assert not (home / "run" / "daemon.pid").exists()
    log = (home / "logs" / "daemon.log").read_text()
    assert "stopping: SIGTERM" in log and "db0 daemon stopped" in log
    # Whatever the import managed is whole: counted batches are all in, nothing half-written.
    stats = db0.json("stats")
    assert stats["memories"] % 5000 == 0 and stats["ops"] == stats["memories"]
    assert db0.json("doctor")["daemon"]["quick_check"] == "ok"


def test_older_daemon_is_replaced(home: Path, tmp_path: Path) -> None:
    # A real older daemon: a copy of the package that says it is version 0.0.1.
    old = tmp_path / "old"
    (old / "db0").mkdir(parents=True)
    shutil.copytree(REPO / "daemon", old / "db0" / "daemon")
    shutil.copytree(REPO / "store", old / "db0" / "store")
    (old / "db0" / "__init__.py").write_text("")
    (old / "db0" / "daemon" / "__init__.py").write_text('__version__ = "0.0.1"\n')
    env = {**os.environ, "DB0_HOME": str(home), "PYTHONPATH": str(old)}
    (home / "logs").mkdir(parents=True)
    proc = subprocess.Popen([sys.executable, "-m", "db0.daemon", "run"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    d = Db0(home)
    try:
        assert _wait_for(lambda: (home / "run" / "daemon.sock").exists())
        assert d.run("remember", "written by the new client").code == 0
        proc.wait(30)  # the old daemon was asked to stop
        st = d.json("daemon", "status")
        assert st["version"] != "0.0.1" and st["pid"] != proc.pid
        assert d.json("stats")["memories"] == 1
    finally:
        if proc.poll() is None:
            proc.kill()
        d.stop()


def test_config_change_applies_without_restart(db0: Db0, home: Path) -> None:
    db0.run("daemon", "start")
    pid = db0.daemon_pid()
    log = home / "logs" / "daemon.log"
    cfg = home / "config" / "config.toml"
    cfg.parent.mkdir(exist_ok=True)
    cfg.write_text('[context]\nuser = "dora"\n')
    assert _wait_for(lambda: log.read_text().count("config applied") >= 2)
    assert db0.json("remember", "who am I")["id"]
    assert db0.json("list")["memories"][0]["user"] == "dora"
    cfg.write_text("[context\nbroken =")
    assert _wait_for(lambda: "config not applied" in log.read_text())
    assert db0.json("list")["memories"][0]["user"] == "dora"  # previous config kept
    assert db0.daemon_pid() == pid


def test_stop_restart_and_logs(db0: Db0) -> None:
    db0.run("daemon", "start")
    first = db0.daemon_pid()
    db0.run("daemon", "restart")
    second = db0.daemon_pid()
    assert first and second and first != second
    assert db0.run("daemon", "stop").out.startswith("stopped")
    assert db0.run("daemon", "stop").out.startswith("not running")
    logs = db0.json("daemon", "logs", "-n", "5")
    assert logs["lines"] and "stopped" in logs["lines"][-1]


def test_writes_do_not_wake_the_late_encoder_when_none_is_installed(db0: Db0) -> None:
    for i in range(8):
        db0.run("remember", f"plain fact {i}")
    # the first write's wake finds no encoder; the writes after it wake nothing
    assert db0.json("daemon", "status")["late"]["looks"] <= 2


def _switches(pid: int, tid: int) -> int:
    text = Path(f"/proc/{pid}/task/{tid}/status").read_text()
    return sum(int(line.split()[1]) for line in text.splitlines() if "ctxt_switches" in line)


def test_a_client_on_a_closed_connection_sends_again_on_a_new_one(db0: Db0) -> None:
    """A connection the daemon closed (here: it restarted) is found out by the next request,
    which goes out whole on a new connection, once (a Unix socket refuses the first byte to
    a closed peer, so nothing was delivered before); a pinned client does not move to the
    new daemon, and says so."""
    from db0.daemon.client import Client
    from db0.daemon.paths import Paths
    from db0.daemon.protocol import Db0Error

    db0.run("daemon", "start")
    h = db0.home
    paths = Paths(h, h / "config", h / "data", h / "logs", h / "run")
    loose, pinned = Client(paths, autostart="never"), Client(paths, autostart="never",
                                                             pinned=True)
    first = loose.call("daemon.hello", {})["pid"]
    pinned.call("daemon.hello", {})
    db0.run("daemon", "restart")
    got = loose.call("memory.remember", {"content": "sent after the restart"})
    assert got["status"] == "stored"
    assert loose.call("daemon.hello", {})["pid"] != first
    with pytest.raises(Db0Error) as e:
        pinned.call("memory.remember", {"content": "never sent"})
    assert e.value.code == "unavailable" and "went away" in e.value.message
    texts = [m["content"] for m in db0.json("list", "-n", "50")["memories"]]
    assert texts.count("sent after the restart") == 1 and "never sent" not in texts
    loose.close()
    pinned.close()


def test_answers_read_ahead_wait_in_the_buffer_and_large_ones_arrive_whole(db0: Db0
                                                                          ) -> None:
    """Requests sent ahead (`send`) are answered in order though their answers arrive
    together (one receive takes several: the rest wait in the client's buffer), and an answer
    larger than one receive arrives whole."""
    from db0.daemon.client import Client
    from db0.daemon.paths import Paths

    db0.run("daemon", "start")
    h = db0.home
    c = Client(Paths(h, h / "config", h / "data", h / "logs", h / "run"), autostart="never")
    texts = [f"read-ahead note {i}" for i in range(25)]
    for t in texts:
        c.send("memory.remember", {"content": t})
    time.sleep(0.3)  # every answer is in the socket before the first is read
    ids = [c.receive("memory.remember")["id"] for _ in texts]
    assert [c.call("memory.get", {"id": i})["content"] for i in ids] == texts
    big = "".join(f"word{i} " for i in range(9000))[:60_000]  # a 60 kB memory, six of them
    for i in range(6):
        c.call("memory.remember", {"content": f"{i} {big}", "scope": "agent",
                                   "context": {"agent": "big"}})
    listed = c.call("memory.list", {"limit": 6, "scopes": ["agent"],
                                    "context": {"agent": "big"}})["memories"]
    assert sorted(m["content"][:2] for m in listed) == [f"{i} " for i in range(6)]
    assert all(m["content"].endswith(big[-20:].strip()) for m in listed)
    c.close()


def test_a_write_that_fails_inside_a_round_loses_only_its_own(db0: Db0) -> None:
    """Remembers from many connections at once share rounds; one whose write fails inside
    the round (it supersedes a memory that does not exist) gets its own error, and every
    other write of its round is kept once, not lost with the failure nor run twice."""
    from db0.daemon.client import Client
    from db0.daemon.paths import Paths
    from db0.daemon.protocol import Db0Error

    db0.run("remember", "warm up")
    h = db0.home
    paths = Paths(h, h / "config", h / "data", h / "logs", h / "run")
    before = db0.json("daemon", "status")
    stored: list[str] = []
    refused: list[str] = []

    def client(name: str) -> None:
        c = Client(paths, autostart="never")
        for i in range(40):
            text = f"{name} round note {i}"
            params: dict[str, Any] = {"content": text}
            if i % 5 == 3:
                params["supersedes"] = "01nosuchmemory00000000000"
            try:
                got = c.call("memory.remember", params)
                assert got["status"] == "stored"
                stored.append(text)
            except Db0Error as e:
                assert e.code == "not_found", e.message
                refused.append(text)
        c.close()

    threads = [threading.Thread(target=client, args=(f"c{k}",)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(refused) == 6 * 8 and len(stored) == 6 * 32
    assert all(int(t.rsplit(" ", 1)[1]) % 5 == 3 for t in refused)
    texts = [m["content"] for m in db0.json("list", "-n", "1000")["memories"]]
    assert sorted(t for t in texts if "round note" in t) == sorted(stored)
    after = db0.json("daemon", "status")
    assert after["commits"] - before["commits"] < after["writes"] - before["writes"]


def test_a_client_calling_in_a_loop_stays_with_its_worker(db0: Db0) -> None:
    """A client's next request, sent at once, is read by the worker that answered the last
    one: the selector thread (the daemon's main thread) is not woken per request."""
    from db0.daemon.client import Client
    from db0.daemon.paths import Paths

    db0.run("remember", "warm up")
    pid = db0.daemon_pid()
    assert pid and Path(f"/proc/{pid}/task").exists()
    h = db0.home
    c = Client(Paths(h, h / "config", h / "data", h / "logs", h / "run"), autostart="never")
    c.call("daemon.hello", {})
    before = _switches(pid, pid)
    for _ in range(200):  # not a quick write: those the selector thread answers itself
        c.call("memory.list", {"limit": 1})
    woken = _switches(pid, pid) - before
    c.close()
    assert woken < 60, woken  # handed back to the selector after every answer: >= 200


def test_quick_writes_from_many_clients_share_commits_and_each_gets_its_answer(
        db0: Db0, home: Path) -> None:
    """Remembers from many connections at once, answered by the selector thread in rounds
    of one commit: every client gets the answer to its own request (its own memory's id,
    or its own error), a request that waits for its embedding still works, a client that
    hangs up before its answer harms no one, and the rounds do share commits."""
    from db0.daemon.client import Client
    from db0.daemon.paths import Paths
    from db0.daemon.protocol import Db0Error

    db0.run("remember", "warm up")
    h = db0.home
    paths = Paths(h, h / "config", h / "data", h / "logs", h / "run")
    before = db0.json("daemon", "status")
    got: dict[str, list[tuple[str, Any]]] = {}

    def client(name: str) -> None:
        c = Client(paths, autostart="never")
        out = got.setdefault(name, [])
        for i in range(60):
            text = f"{name} says {i}"
            # A content that is not a string is refused alone, the others of its round stored.
            params = {"content": 12} if i % 20 == 7 else {"content": text, "wait": i % 20 == 11}
            try:
                out.append((text, c.call("memory.remember", params)))
            except Db0Error as e:
                out.append((text, e))
        c.close()

    threads = [threading.Thread(target=client, args=(f"c{k}",)) for k in range(6)]
    for t in threads:
        t.start()
    for _ in range(5):  # clients that hang up before their answer
        s = _raw(home)
        body = json.dumps({"v": 1, "id": 1, "method": "memory.remember",
                           "params": {"content": "nobody reads this answer"}}).encode()
        s.sendall(struct.pack(">I", len(body)) + body)
        s.close()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    stored = 0
    for name, answers in got.items():
        assert len(answers) == 60, name
        for i, (text, res) in enumerate(answers):
            if i % 20 == 7:
                assert isinstance(res, Db0Error) and res.code == "bad_request", res
                continue
            assert isinstance(res, dict) and res["status"] == "stored", res
            assert db0.json("show", res["id"])["content"] == text
            stored += 1
    after = db0.json("daemon", "status")
    writes, commits = after["writes"] - before["writes"], after["commits"] - before["commits"]
    assert writes >= stored == 6 * 57
    assert commits < 0.8 * writes, (commits, writes)


def test_doctor_bounds_its_page_check_and_full_runs_it_all(db0: Db0) -> None:
    """doctor's page check (PRAGMA quick_check reads every page: minutes at a million
    memories) stops at its time budget with a warning, not a problem, and leaves the read
    connection usable; `--full` runs it to the end."""
    from db0.daemon.client import Client
    from db0.daemon.paths import Paths

    lines = "".join(json.dumps({"content": f"note {i} on the {i % 7} staging hosts"}) + "\n"
                    for i in range(400))
    db0.run("import", "-", input=lines)
    h = db0.home
    c = Client(Paths(h, h / "config", h / "data", h / "logs", h / "run"), autostart="never")
    try:
        cut = c.call("daemon.doctor", {"check_s": 1e-9})
        assert cut["quick_check"] == "not finished in 1e-09 s", cut["quick_check"]
        assert any("db0 doctor --full" in w for w in cut["warnings"]) and not cut["problems"]
        for _ in range(3):  # every pooled reader still reads
            assert c.call("daemon.doctor", {"check_s": 30})["quick_check"] == "ok"
        assert c.call("memory.recall", {"query": "staging hosts"})["results"]
    finally:
        c.close()
    full = db0.json("doctor", "--full")
    assert full["daemon"]["quick_check"] == "ok" and full["ok"], full["problems"]
    assert not any("page check" in w for w in full["warnings"]), full["warnings"]


def test_a_page_check_stops_when_its_client_hangs_up(tmp_path: Path) -> None:
    """The server hands each request a probe of its client's socket (`Request.gone`); doctor's
    page check asks it as it goes and stops once the client closed its end, even with no time
    limit (`--full`), instead of reading every page for nobody."""
    from collections.abc import Callable

    from db0.daemon.core.server import _hung_up
    from db0.daemon.handlers.daemon import _quick_check
    from db0.store.core import Store

    ours, theirs = socket.socketpair()
    try:
        assert not _hung_up(ours)
        theirs.sendall(b"a next request, not a hang-up")
        assert not _hung_up(ours)
        theirs.close()
        assert _hung_up(ours)
    finally:
        ours.close()
    from db0.store import write
    from db0.store.context import Context

    store = Store.open(tmp_path / "db0.sqlite3")
    try:
        with store.transaction():  # pages enough for the check to take a while
            write.remember_many(store, Context("u"), [write.prepare(
                {"content": f"note {i} on the {i % 7} staging hosts"}) for i in range(3000)])
        asked = [0]

        def gone_after(n: int) -> Callable[[], bool]:
            def gone() -> bool:
                asked[0] += 1
                return asked[0] > n
            return gone

        assert _quick_check(store.conn, 0, gone_after(10**9)) == "ok"
        assert asked[0] > 0  # asked while checking, with no time limit
        asked[0] = 0
        assert _quick_check(store.conn, 0, gone_after(0)) is None
        assert _quick_check(store.conn, 30, lambda: False) == "ok"  # the connection still reads
    finally:
        store.close()


@pytest.mark.parametrize(("value", "parsed"), [(True, True), (False, False), ("auto", None),
                                               ("AUTO", None)])
def test_recall_feedback_is_true_false_or_auto(value: object, parsed: bool | None) -> None:
    from db0.daemon.core import config

    cfg, unknown = config.parse({"recall": {"feedback": value}})
    assert cfg.recall.feedback is parsed and not unknown
    assert config.Config().recall.feedback is None  # "auto" unless set


@pytest.mark.parametrize("value", ["yes", 1, "", None, ["auto"]])
def test_recall_feedback_refuses_anything_else(value: object) -> None:
    from db0.daemon.core import config

    with pytest.raises(ValueError, match=r'\[recall\] feedback must be true, false or "auto"'):
        config.parse({"recall": {"feedback": value}})


def test_status_says_whether_recall_runs_feedback(db0: Db0, home: Path) -> None:
    """`daemon status` names the [recall] feedback setting and whether it is on for this store
    (auto: on in a small one); a config change shows at once."""
    db0.run("remember", "a first memory")
    assert db0.json("daemon", "status")["feedback"] == {"setting": "auto", "on": True}
    log = home / "logs" / "daemon.log"
    applied = log.read_text().count("config applied")
    (home / "config" / "config.toml").write_text("[recall]\nfeedback = false\n")
    assert _wait_for(lambda: log.read_text().count("config applied") > applied)
    assert db0.json("daemon", "status")["feedback"] == {"setting": False, "on": False}
    assert "feedback.on" in db0.run("daemon", "status").out


def test_memory_a_big_request_freed_goes_back_to_the_system() -> None:
    """glibc keeps pages freed inside its heap; `give_back_memory` (after an import's commit)
    returns them. In a fresh interpreter: 190 MiB of heap blocks, each pinned by a small block
    after it, so freeing them cannot shrink the heap from its top."""
    code = """
import re
from db0.daemon.core.runtime import give_back_memory
def rss():
    return int(re.search(r"VmRSS:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) >> 10
base = rss()
big, keep = [], []
for _ in range(3000):
    big.append(bytes(65536))  # malloc'd from the heap (below the mmap threshold), touched
    keep.append(bytes(1000))  # past pymalloc's 512 bytes: a heap block after each big one
del big
freed = rss()
give_back_memory()
print(base, freed, rss())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    base, freed, trimmed = map(int, out)
    assert freed - base > 120, out  # the control: freeing alone kept the pages
    assert trimmed - base < (freed - base) / 4, out

"""Sync through a real Postgres: remotes, convergence of several devices under random
interleavings, killed connections, a server stopped and restarted, a newer remote schema,
auto-sync, and server-side search where pgvector is installed."""
# ruff: noqa: F811 (the Postgres fixtures are imported from tests/pg.py)

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DB0, Db0, _wait_dead, daemon_pids
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pg import (  # noqa: F401 (fixtures)
    admin,
    ensure_cluster,
    fresh_database,
    pg_base,
    pg_dsn,
    pgvector_base,
    private_pg,
    terminate,
)

pytestmark = pytest.mark.postgres


@contextlib.contextmanager
def devices(n: int, config: str = "", env: dict[str, str] | None = None
            ) -> Iterator[list[Db0]]:
    """n machines: separate DB0_HOMEs, each with its own daemon (stopped afterwards)."""
    with contextlib.ExitStack() as stack:
        homes = [Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="db0s",
                                                                      dir="/tmp")))
                 for _ in range(n)]
        devs = [Db0(h, env) for h in homes]
        for d in devs:
            if config:
                (d.home / "config").mkdir(parents=True, exist_ok=True)
                (d.home / "config" / "config.toml").write_text(config)
        try:
            yield devs
        finally:
            for d in devs:
                d.stop()
                for pid in daemon_pids(d.home):
                    os.kill(pid, signal.SIGTERM)
                    _wait_dead(pid, 20)


def export(d: Db0) -> list[str]:
    return sorted(d.run("export", "--all", "--everyone").out.splitlines())


def ops_count(d: Db0) -> int:
    return int(d.json("stats")["ops"])


def remote_count(dsn: str, sql: str = "SELECT count(*) FROM db0.ops") -> int:
    with admin(dsn) as c:
        return int(c.execute(sql).fetchone()[0])


# -- remotes ---------------------------------------------------------------------------------

def test_remote_add_list_remove_masks_the_password(db0: Db0) -> None:
    added = db0.json("remote", "add", "team", "postgresql://me:s3cret@db.example/mem")
    assert added["dsn"] == "postgresql://me:****@db.example/mem"
    assert "s3cret" not in json.dumps(added)
    db0.run("remote", "add", "home", "postgresql://me@h/db?password_env=DB0T_PW",
            "--scope", "user")
    listed = db0.json("remote", "list")["remotes"]
    assert {r["name"] for r in listed} == {"team", "home"}
    assert "s3cret" not in db0.run("remote", "list").out
    assert next(r for r in listed if r["name"] == "home")["scopes"] == ["user"]
    assert next(r for r in listed if r["name"] == "team")["scopes"] == ["user", "agent"]
    path = db0.home / "config" / "remotes.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    dup = db0.run("remote", "add", "team", "postgresql://x@y/z", check=False)
    assert dup.code == 1 and "already exists" in dup.err
    bad = db0.run("remote", "add", "bad", "postgresql://x@y/z?nonsense=1", check=False)
    assert bad.code == 1 and "does not parse" in bad.err
    db0.run("remote", "remove", "team")
    assert [r["name"] for r in db0.json("remote", "list")["remotes"]] == ["home"]
    assert db0.run("remote", "remove", "team", check=False).code == 4


def test_password_from_the_environment(pg_dsn: str) -> None:
    dsn = pg_dsn + "&password_env=DB0T_PW"
    with devices(1) as (a,):
        a.run("remember", "secret-free config")
        a.run("remote", "add", "pg", dsn)
        r = a.run("sync", check=False)
        assert r.code == 1 and "DB0T_PW" in r.err and "not set" in r.err
        assert len(r.err.strip().splitlines()) == 1
        a.run("sync", env={"DB0T_PW": "unused-by-peer-auth"})
        assert remote_count(pg_dsn) == 1


# -- convergence -----------------------------------------------------------------------------

ACTIONS = st.lists(
    st.tuples(st.sampled_from(["write", "write", "key", "forget", "supersede", "purge",
                               "sync"]),
              st.integers(0, 2), st.integers(0, 3)),
    min_size=4, max_size=14)


def _play(devs: list[Db0], dsn: str, actions: list[tuple[str, int, int]]) -> None:
    for d in devs:
        d.run("remote", "add", "pg", dsn)
    known: list[list[str]] = [[] for _ in devs]
    purged: list[str] = []
    # Every device writes first, so a drawn run of only forgets still has something to sync.
    actions = [("write", i, 0) for i in range(len(devs))] + list(actions)
    for n, (kind, who, arg) in enumerate(actions):
        i = who % len(devs)
        d = devs[i]
        if kind == "write":
            known[i].append(d.run("remember", f"fact {n} from device {i}",
                                  *(["--scope", "agent"] if arg == 3 else [])).out.strip())
        elif kind == "key":
            known[i].append(d.run("remember", "--key", f"k{arg % 2}",
                                  f"keyed fact {n} from device {i}").out.strip())
        elif kind in ("forget", "supersede") and known[i]:
            target = known[i][arg % len(known[i])]
            if kind == "forget":
                d.run("forget", target)
            else:
                known[i].append(d.run("remember", "--supersedes", target,
                                      f"replacement {n} from device {i}").out.strip())
        elif kind == "purge" and known[i]:
            target = known[i].pop(arg % len(known[i]))
            purged.append(d.json("show", target)["content"])
            d.run("purge", target, "--yes")
        elif kind == "sync":
            d.run("sync")
            known[i] = [m["id"] for m in d.json("list", "--include-superseded", "-n", "500")[
                "memories"]]
    # Everyone syncs round after round until a whole round moves nothing (merging may
    # supersede duplicates, which the next round carries): it must settle, and soon.
    for _round in range(5):
        moved = 0
        for d in devs:
            for r in d.json("sync")["results"]:
                moved += r["applied"] + r["pushed"]
        if not moved:
            break
    assert moved == 0, "the devices did not settle"
    exports = [export(d) for d in devs]
    assert exports[0] or purged, "nothing was written"
    for e in exports[1:]:
        assert e == exports[0]
    for d in devs:  # and each holds the rules, not only the same rows
        assert live_duplicates(d) == []
    for text in purged:  # a purged text is nowhere: no device, no op on the remote
        assert all(text not in line for e in exports for line in e), text
        assert remote_holds(dsn, text) == 0, text


def remote_holds(dsn: str, text: str) -> int:
    """How many ops (and rows of the searchable copy) on the remote hold `text`."""
    with admin(dsn) as c:
        n = int(c.execute("SELECT count(*) FROM db0.ops WHERE payload::text LIKE %s",
                          (f"%{text}%",)).fetchone()[0])
        if c.execute("SELECT to_regclass('db0.memories')").fetchone()[0]:
            n += int(c.execute("SELECT count(*) FROM db0.memories WHERE content = %s",
                               (text,)).fetchone()[0])
        return n


def live_duplicates(d: Db0) -> list[str]:
    """Keys and texts that more than one live memory of the same scope and owner holds."""
    seen: dict[tuple[str, ...], int] = {}
    for line in d.run("export", "--everyone").out.splitlines():
        m = json.loads(line)
        owner = {"user": m.get("user"), "agent": m.get("agent"), "session": m.get("session"),
                 "task": m.get("task")}[m["scope"]]
        if m.get("key"):
            k = ("key", m["scope"], str(owner), m["key"])
            seen[k] = seen.get(k, 0) + 1
        t = ("text", m["scope"], str(owner), str(m.get("key")), m["content"])
        seen[t] = seen.get(t, 0) + 1
    return [" ".join(k) for k, n in seen.items() if n > 1]


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(actions=ACTIONS)
def test_two_devices_converge(pg_base: str, actions: list[tuple[str, int, int]]) -> None:
    with fresh_database(pg_base) as dsn, devices(2) as devs:
        _play(devs, dsn, actions)


@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
@given(actions=ACTIONS)
def test_three_devices_converge(pg_base: str, actions: list[tuple[str, int, int]]) -> None:
    with fresh_database(pg_base) as dsn, devices(3) as devs:
        _play(devs, dsn, actions)


def test_concurrent_edits_last_writer_wins(pg_dsn: str) -> None:
    with devices(2) as (a, b):
        for d in (a, b):
            d.run("remote", "add", "pg", pg_dsn)
        mid = a.run("remember", "shared fact").out.strip()
        a.run("sync")
        b.run("sync")
        b.run("forget", mid)                        # b forgets first...
        time.sleep(0.01)
        a.run("remember", "--supersedes", mid, "a newer version")  # ...a supersedes later
        a.run("sync")
        b.run("sync")
        a.run("sync")
        assert export(a) == export(b)
        # Whole-state last writer wins: a's supersede is newer than b's forget.
        old = b.json("show", mid)
        assert old["superseded_by"] and old["forgotten_at"] is None


def test_purge_reaches_the_remote_and_every_device(pg_dsn: str) -> None:
    """`db0 purge` on one device erases the memory on the remote (its row and every op with
    its text) and, at their next sync, on the others; an edit made meanwhile by a device that
    had not seen the purge does not bring it back."""
    secret = "the vault code is QW8812734"
    with devices(2) as (a, b):
        for d in (a, b):
            d.run("remote", "add", "pg", pg_dsn)
        mid = a.run("remember", secret).out.strip()
        a.run("remember", "an unrelated note")
        a.run("sync")
        b.run("sync")
        assert b.json("show", mid)["content"] == secret
        assert remote_holds(pg_dsn, secret) > 0
        b.run("forget", mid)  # b edits it before it learns of the purge
        a.run("purge", mid, "--yes")
        for d in (a, b, a, b):
            d.run("sync")
        assert remote_holds(pg_dsn, secret) == 0
        for d in (a, b):
            assert d.run("show", mid, check=False).code == 4
            assert [json.loads(x)["content"] for x in export(d)] == ["an unrelated note"]
        b.run("daemon", "stop")  # checkpoint the WAL into the file
        for f in (b.home / "data").glob("db0.sqlite3*"):
            assert b"QW8812734" not in f.read_bytes(), f


def test_session_scope_stays_unless_configured(pg_dsn: str) -> None:
    with devices(2) as (a, b):
        a.run("remember", "--scope", "session", "--session", "s1", "session note")
        a.run("remember", "user note")
        for d in (a, b):
            d.run("remote", "add", "pg", pg_dsn)
        a.run("sync")
        b.run("sync")
        assert [json.loads(x)["content"] for x in export(b)] == ["user note"]
        a.run("remote", "add", "pg2", pg_dsn, "--scope", "user", "--scope", "session")
        b.run("remote", "add", "pg2", pg_dsn, "--scope", "user", "--scope", "session")
        a.run("sync", "pg2")
        b.run("sync", "pg2")
        assert sorted(json.loads(x)["content"] for x in export(b)) == ["session note",
                                                                       "user note"]


# -- faults ----------------------------------------------------------------------------------

def _import(d: Db0, n: int, tag: str) -> None:
    lines = "".join(json.dumps({"content": f"{tag} memory number {i}"}) + "\n"
                    for i in range(n))
    d.run("import", "-", input=lines, timeout=600)


def _kill_when(cond: object, dsn: str, proc: subprocess.Popen[bytes],
               timeout: float = 60) -> bool:
    """Terminate db0's Postgres connections once `cond()` holds while `proc` runs."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return terminate(dsn) > 0
        time.sleep(0.02)
    return False


def test_connection_killed_mid_push_and_mid_pull(pg_dsn: str) -> None:
    n = 12_000
    with devices(2, config="[sync]\nbatch = 100\n") as (a, b):
        _import(a, n, "bulk")
        for d in (a, b):
            d.run("remote", "add", "pg", pg_dsn)
        # Mid-push: kill the connection once some batches have landed.
        push = subprocess.Popen([DB0, "sync"], env=a.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        killed = _kill_when(lambda: remote_count_safe(pg_dsn) >= 1000, pg_dsn, push)
        _, err = push.communicate(timeout=120)
        assert killed, "the push finished before it could be interrupted"
        assert push.returncode == 5, err
        assert "unreachable" in err.decode() and len(err.decode().strip().splitlines()) == 1
        partial = remote_count(pg_dsn)
        assert 0 < partial < n
        a.run("sync")
        assert remote_count(pg_dsn) == n
        assert remote_count(pg_dsn, "SELECT count(DISTINCT op_id) FROM db0.ops") == n
        # Mid-pull: kill b's connection once it has applied some batches.
        pull = subprocess.Popen([DB0, "sync"], env=b.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)

        def b_progress() -> bool:  # its first batch applied: the most of the pull left to cut
            st_ = b.json("sync", "status")["remotes"][0]
            return bool(st_["pulled_total"] >= 100)

        killed = _kill_when(b_progress, pg_dsn, pull)
        _, err = pull.communicate(timeout=120)
        assert killed, "the pull finished before it could be interrupted"
        assert pull.returncode == 5, err
        assert 0 < ops_count(b) < n
        b.run("sync")
        assert ops_count(b) == n          # no gap and no duplicate in b's op log
        assert export(a) == export(b)


def test_postgres_stopped_and_restarted(private_pg: object) -> None:
    pg = private_pg
    with fresh_database(pg.base) as dsn, devices(2) as (a, b):  # type: ignore[attr-defined]
        for d in (a, b):
            d.run("remote", "add", "pg", dsn)
        a.run("remember", "before the outage")
        a.run("sync")
        pg.stop()  # type: ignore[attr-defined]
        a.run("remember", "during the outage")
        r = a.run("sync", check=False)
        assert r.code == 5
        assert len(r.err.strip().splitlines()) == 1 and "unreachable" in r.err
        # The daemon keeps serving.
        assert "during the outage" in a.run("recall", "outage").out
        status = a.json("sync", "status")["remotes"][0]
        assert status["pending_push"] == 1 and "unreachable" in status["last_error"]
        pg.start()  # type: ignore[attr-defined]
        a.run("sync")
        b.run("sync")
        assert export(a) == export(b)
        assert len(export(b)) == 2
        assert a.json("sync", "status")["remotes"][0]["last_error"] is None


def test_newer_remote_schema_is_refused(pg_dsn: str) -> None:
    with devices(1) as (a,):
        a.run("remote", "add", "pg", pg_dsn)
        a.run("remember", "x")
        a.run("sync")
        with admin(pg_dsn) as c:
            c.execute("UPDATE db0.meta SET value='99' WHERE key='schema_version'")
        a.run("remember", "y")
        r = a.run("sync", check=False)
        assert r.code == 5
        assert "newer" in r.err and "upgrade db0" in r.err
        assert remote_count(pg_dsn) == 1


def test_auto_sync_on_an_interval(pg_dsn: str) -> None:
    with devices(1, config='[sync]\ninterval = "1s"\n') as (a,):
        a.run("remote", "add", "pg", pg_dsn)
        a.run("remember", "synced by the timer")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and remote_count_safe(pg_dsn) < 1:
            time.sleep(0.2)
        assert remote_count_safe(pg_dsn) == 1
        assert a.json("daemon", "status")["sync"]["interval_s"] == 1.0


def remote_count_safe(dsn: str) -> int:
    try:
        return remote_count(dsn)
    except Exception:  # the schema is not there yet
        return 0


# -- server-side search ----------------------------------------------------------------------

def test_recall_remote_with_pgvector(pgvector_base: str) -> None:
    with fresh_database(pgvector_base) as dsn, devices(2) as (a, b):
        for d in (a, b):
            d.run("remote", "add", "pg", dsn)
        a.run("remember", "--user", "alice", "alice prefers green tea in the morning")
        a.run("remember", "--user", "bob", "bob prefers black tea with milk")
        gone = a.run("remember", "--user", "alice", "alice drinks tea from a blue mug"
                     ).out.strip()
        a.run("remember", "--agent", "coder", "--scope", "agent", "tea breaks every 2 hours")
        assert a.json("sync")["results"][0]["searchable"] is True
        a.run("forget", gone)
        a.run("sync")
        res = b.json("recall", "--remote", "pg", "--user", "alice", "--agent", "coder", "tea")
        contents = [r["content"] for r in res["results"]]
        assert "alice prefers green tea in the morning" in contents
        assert "tea breaks every 2 hours" in contents
        assert not any("bob" in c for c in contents)
        assert not any("blue mug" in c for c in contents)
        only_agent = b.json("recall", "--remote", "pg", "--user", "alice", "--agent", "coder",
                            "--scope", "agent", "tea")
        assert [r["content"] for r in only_agent["results"]] == ["tea breaks every 2 hours"]
        bob = b.json("recall", "--remote", "pg", "--user", "bob", "tea")["results"]
        assert [r["content"] for r in bob] == ["bob prefers black tea with milk"]


def test_a_purged_memory_stays_out_of_the_searchable_copy(pgvector_base: str) -> None:
    """The server's searchable copy loses a purged memory at once, and a copy made again
    from the op log (as when pgvector arrives after the first syncs) neither brings it back
    nor trips over the purge op, which has no state."""
    with fresh_database(pgvector_base) as dsn, devices(1) as (a,):
        a.run("remote", "add", "pg", dsn)
        mid = a.run("remember", "tea notes hold the code ZK4455").out.strip()
        a.run("remember", "tea is best at 80 degrees")
        assert a.json("sync")["results"][0]["searchable"] is True
        a.run("purge", mid, "--yes")
        a.run("sync")
        assert remote_holds(dsn, "tea notes hold the code ZK4455") == 0
        with admin(dsn) as c:  # as if the copy had never been made
            c.execute("DROP TABLE db0.memories, db0.vectors CASCADE")
            c.execute("DELETE FROM db0.meta WHERE key='searchable'")
        a.run("remember", "tea after lunch")
        assert a.json("sync")["results"][0]["searchable"] is True
        res = a.json("recall", "--remote", "pg", "tea")["results"]
        assert sorted(r["content"] for r in res) == ["tea after lunch",
                                                     "tea is best at 80 degrees"]


def test_recall_remote_without_pgvector_says_so(pg_dsn: str) -> None:
    with devices(1) as (a,):
        a.run("remote", "add", "pg", pg_dsn)
        a.run("remember", "tea")
        a.run("sync")
        r = a.run("recall", "--remote", "pg", "tea", check=False)
        assert r.code == 1 and "pgvector" in r.err


def test_remote_vector_search_with_pgvector(pgvector_base: str) -> None:
    """Vectors made on a device reach the server's copy, and a query vector of the same model
    finds its neighbours there within the context's scopes (no shared word needed)."""
    import numpy as np

    from db0.store import pgsync, vectors
    from db0.store.core import Store

    with fresh_database(pgvector_base) as dsn, devices(2) as (a, b):
        a.run("remote", "add", "pg", dsn)
        ids = [a.run("remember", *extra, text).out.strip() for extra, text in (
            ([], "the deploy key lives in the vault"),
            ([], "lunch is at noon on fridays"),
            (["--user", "bob"], "bob keeps his deploy key on a yubikey"))]
        a.stop()
        store = Store.open(a.home / "data" / "db0.sqlite3")
        try:
            with store.transaction():
                mid = vectors.model_id(store, "test-model", "abc", 4)
                rows = []
                for n, mem in enumerate(ids):
                    rid, h = store.conn.execute(
                        "SELECT rid, content_hash FROM memories WHERE id=?", (mem,)).fetchone()
                    vec = np.zeros(4, dtype="<f4")
                    vec[n] = 1.0
                    rows.append((rid, h, vectors.to_blob(vec)))
                vectors.put(store, mid, rows)
        finally:
            store.close()
        assert a.json("sync")["results"][0]["vectors"] == 3
        assert remote_count(dsn, "SELECT count(*) FROM db0.vectors") == 3
        root = os.environ.get("USER") or __import__("getpass").getuser()
        owners = {"user": root, "agent": "default", "session": None, "task": None}
        found, used = pgsync.search(dsn, "secrets storage", 3, owners, None,
                                    ("test-model", "abc", 4, [0.9, 0.1, 0.0, 0.0]))
        assert used
        assert [r["id"] for r in found][:2] == ids[:2]
        assert found[0]["score_parts"]["vector"] == pytest.approx(0.9939, abs=1e-3)
        assert ids[2] not in [r["id"] for r in found]  # bob's memory is not ours to see
        _, used = pgsync.search(dsn, "deploy", 3, owners, None,
                                ("other-model", "abc", 4, [1.0, 0.0, 0.0, 0.0]))
        assert not used  # another model's vectors are never compared

        # A device with the same model reuses the vectors instead of embedding again.
        b.run("remote", "add", "pg", dsn)
        b.run("stats")  # creates b's database
        b.stop()
        store = Store.open(b.home / "data" / "db0.sqlite3")
        try:
            with store.transaction():
                vectors.model_id(store, "test-model", "abc", 4)
        finally:
            store.close()
        res = b.json("sync")["results"][0]
        assert res["pulled"] == 3 and res["vectors_reused"] == 3
        b.stop()
        store = Store.open(b.home / "data" / "db0.sqlite3")
        try:
            got = {str(i): vectors.from_blob(bytes(v)).tolist() for i, v in store.conn.execute(
                "SELECT m.id, v.vector FROM memory_vectors v JOIN memories m ON m.rid=v.rid")}
        finally:
            store.close()
        assert got == {mem: [1.0 if j == n else 0.0 for j in range(4)]
                       for n, mem in enumerate(ids)}

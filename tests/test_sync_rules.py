"""Sync converges on the rules, not just on the rows, checked fast on Stores in a folder.

Devices are real Stores (SQLite files); a shared list stands in for the server's op log: a
device pushes the ops it made and pulls everyone else's in order, applying them the way
`pgsync.apply_pulled` does (`core.apply_remote_states`, then `write.converge`). After any
interleaving of writes, keyed writes, forgets, supersedes and syncs, and rounds of syncing until
nothing moves, every device holds the same memories and, on each device, at most one live
memory per scope, owner and key, and per scope, owner, key and text. (The same runs against a
real Postgres in tests/test_sync.py.)
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from db0.store import write
from db0.store.context import Context
from db0.store.core import FULL_PAYLOAD_SQL, Store, apply_remote_states

TEXTS = ["the deploy is on fridays", "use tabs", "the api lives at /v2", "ruff, not flake8"]


class Device:
    def __init__(self, path: Path) -> None:
        self.store = Store.open(path)
        self.pushed = 0
        self.cursor = 0
        self.ctx = Context("ada", "agent-x")

    def write(self, p: dict[str, Any], **kw: Any) -> str:
        with self.store.transaction():
            return str(write.remember(self.store, self.ctx, write.prepare(p), **kw)["id"])

    def live_ids(self) -> list[str]:
        return [str(r[0]) for r in self.store.conn.execute(
            "SELECT id FROM memories WHERE superseded_by IS NULL AND forgotten_ts IS NULL")]

    def push(self, server: list[tuple[Any, ...]]) -> int:
        rows = self.store.conn.execute(
            "SELECT seq, op_id, hlc, device_id, kind, " + FULL_PAYLOAD_SQL.format(o="ops") +
            " FROM ops WHERE seq > ? AND "
            "device_id = ? AND json_extract(payload, '$.state') IS NOT NULL ORDER BY seq",
            (self.pushed, self.store.device_id)).fetchall()
        for seq, op_id, hlc, dev, kind, payload in rows:
            server.append((op_id, hlc, dev, kind, payload))
            self.pushed = seq
        return len(rows)

    def pull(self, server: list[tuple[Any, ...]]) -> int:
        todo = [r for r in server[self.cursor:] if r[2] != self.store.device_id]
        self.cursor = len(server)
        if not todo:
            return 0
        ops = [(json.loads(p)["state"], kind, op_id, hlc, dev) for op_id, hlc, dev, kind, p
               in todo]
        with self.store.transaction():
            changed = apply_remote_states(self.store, ops)
            write.converge(self.store, changed)
        return len(changed)

    def sync(self, server: list[tuple[Any, ...]]) -> int:
        return self.push(server) + self.pull(server)

    def snapshot(self) -> list[tuple[Any, ...]]:
        return sorted(self.store.conn.execute(
            "SELECT id, content, key, superseded_by IS NULL, forgotten_ts IS NULL FROM "
            "memories").fetchall())

    def broken_rules(self) -> list[str]:
        out = [f"key {k}: {n} live" for k, n in self.store.conn.execute(
            "SELECT scope || '/' || owner || '/' || key, count(*) FROM memories WHERE "
            "key IS NOT NULL AND superseded_by IS NULL AND forgotten_ts IS NULL "
            "GROUP BY scope, owner, key HAVING count(*) > 1")]
        out += [f"text {t}: {n} live" for t, n in self.store.conn.execute(
            "SELECT scope || '/' || owner || '/' || content, count(*) FROM memories WHERE "
            "superseded_by IS NULL AND forgotten_ts IS NULL "
            "GROUP BY scope, owner, key, content_hash HAVING count(*) > 1")]
        return out


ACTION = st.tuples(st.sampled_from(["write", "write", "key", "forget", "supersede", "sync"]),
                   st.integers(0, 9), st.integers(0, 9))


def play(tmp: Path, n_devices: int, actions: list[tuple[str, int, int]]) -> list[Device]:
    devs = [Device(tmp / f"d{i}.db") for i in range(n_devices)]
    server: list[tuple[Any, ...]] = []
    for kind, who, arg in actions:
        d = devs[who % n_devices]
        scope = "agent" if arg % 3 == 0 else "user"
        if kind == "write":
            d.write({"content": TEXTS[arg % len(TEXTS)], "scope": scope})
        elif kind == "key":
            d.write({"content": f"the editor is {['vim', 'helix', 'emacs'][arg % 3]}",
                     "key": f"editor-{arg % 2}", "scope": scope})
        elif kind in ("forget", "supersede"):
            live = d.live_ids()
            if not live:
                continue
            target = live[arg % len(live)]
            if kind == "forget":
                from db0.store import memories

                with d.store.transaction():
                    memories.forget(d.store, target)
            else:
                d.write({"content": f"replacement {arg}"}, supersedes=target)
        else:
            d.sync(server)
    for _round in range(6):
        if not sum(d.sync(server) for d in devs):
            break
    else:
        raise AssertionError("the devices did not settle in 6 rounds")
    return devs


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.integers(2, 4), st.lists(ACTION, min_size=1, max_size=30))
def test_devices_agree_and_keep_the_rules(tmp_path_factory: Any, n: int,
                                          actions: list[tuple[str, int, int]]) -> None:
    devs = play(tmp_path_factory.mktemp("sync"), n, actions)
    first = devs[0].snapshot()
    for d in devs:
        assert d.snapshot() == first
        assert d.broken_rules() == []
    for d in devs:
        d.store.close()


def test_a_key_written_on_two_devices_has_one_live_version(tmp_path: Path) -> None:
    a, b = Device(tmp_path / "a.db"), Device(tmp_path / "b.db")
    server: list[tuple[Any, ...]] = []
    a.write({"content": "my editor is helix", "key": "editor"})
    time.sleep(0.002)  # ids order by their millisecond: the second write is the newer
    b.write({"content": "my editor is emacs", "key": "editor"})
    for _ in range(3):
        a.sync(server)
        b.sync(server)
    for d in (a, b):
        live = [c for (_i, c, k, is_live, not_forgotten) in d.snapshot()
                if k == "editor" and is_live and not_forgotten]
        assert live == ["my editor is emacs"]  # the newer write wins, on both
        reason = d.store.conn.execute("SELECT supersede_reason FROM memories WHERE content="
                                      "'my editor is helix'").fetchone()[0]
        assert reason == "same key written on another device"
    # A later keyed write supersedes the one live version, and nothing is left behind.
    a.write({"content": "my editor is zed", "key": "editor"})
    for _ in range(3):
        a.sync(server)
        b.sync(server)
    for d in (a, b):
        assert d.broken_rules() == []
        assert [c for (_i, c, k, live, nf) in d.snapshot() if k == "editor" and live and nf] \
            == ["my editor is zed"]

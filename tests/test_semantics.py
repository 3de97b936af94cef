"""Issue 4 end to end through the CLI: scopes and lifetimes, superseding, --as-of, pack budgets,
checkpoints (restore, branch, branch of a branch, diff), spawn (nested) and links.

One daemon serves the module; each test works as its own user, so tests cannot see each other.
"""

from __future__ import annotations

import json
import random
import shlex
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import DB0, Db0, daemon_pids
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from db0.store import tokens


@pytest.fixture(scope="module")
def mod_home() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="db0sem", dir="/tmp") as d:
        home = Path(d)
        (home / "config").mkdir()
        # The expiry job runs often here, so lifetimes show in seconds.
        (home / "config" / "config.toml").write_text('[session]\nexpiry_interval = "0.3s"\n')
        yield home
        Db0(home).stop()
        assert not daemon_pids(home)


@pytest.fixture
def u(mod_home: Path) -> Db0:
    """A fresh user (and default agent) on the shared daemon."""
    return Db0(mod_home, {"DB0_USER": "u" + uuid.uuid4().hex[:8]})


def ctx(d: Db0, **env: str) -> Db0:
    """The same user with more context (DB0_SESSION, DB0_TASK, DB0_AGENT)."""
    return Db0(d.home, {**{k: v for k, v in d.env.items() if k.startswith("DB0_")}, **env})


def contents(d: Db0, query: str, *extra: str) -> list[str]:
    r = d.run("recall", query, "-n", "50", "--json", *extra, check=False)
    assert r.code in (0, 1), r.err
    return [x["content"] for x in r.json()["results"]] if r.out.strip() else []


def wait_until(pred: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def start(d: Db0, what: str, *args: str) -> str:
    out = d.run(what, "start", *args).out.strip()
    assert out.startswith(f"export DB0_{what.upper()}=")
    return shlex.split(out.split("=", 1)[1])[0]


# -- context and scopes -------------------------------------------------------------------------

def test_session_start_exports_and_json(u: Db0) -> None:
    sid = start(u, "session")
    j = u.json("session", "start", "--label", "second")
    assert j["session"] != sid and j["label"] == "second" and j["ended_at"] is None
    listed = {s["session"] for s in u.json("session", "list")["sessions"]}
    assert {sid, j["session"]} <= listed
    u.run("session", "end", sid)
    assert sid not in {s["session"] for s in u.json("session", "list")["sessions"]}
    assert sid in {s["session"] for s in u.json("session", "list", "--all")["sessions"]}


def test_session_scope_isolated_both_ways_and_ends(u: Db0) -> None:
    a, b = ctx(u, DB0_SESSION=start(u, "session")), ctx(u, DB0_SESSION=start(u, "session"))
    ida = a.run("remember", "-s", "session", "zebra crossing in session A").out.strip()
    b.run("remember", "-s", "session", "zebra stripes in session B")
    assert contents(a, "zebra") == ["zebra crossing in session A"]
    assert contents(b, "zebra") == ["zebra stripes in session B"]
    assert contents(u, "zebra") == []  # no session: no session memories
    ended = a.json("session", "end")
    assert ended["expired"] == 1
    assert contents(a, "zebra") == []
    assert contents(b, "zebra") == ["zebra stripes in session B"]
    kinds = [e["kind"] for v in a.json("history", ida)["versions"] for e in v["events"]]
    assert "expire" in kinds


def test_task_scope_isolated_and_leaves_search_when_ended(u: Db0) -> None:
    s = ctx(u, DB0_SESSION=start(u, "session"))
    t1 = ctx(s, DB0_TASK=start(s, "task"))
    t2 = ctx(s, DB0_TASK=start(s, "task"))
    t1.run("remember", "-s", "task", "walrus note for task one")
    t2.run("remember", "-s", "task", "walrus note for task two")
    assert contents(t1, "walrus") == ["walrus note for task one"]
    assert contents(t2, "walrus") == ["walrus note for task two"]
    assert contents(s, "walrus") == []
    t1.run("task", "end")
    assert contents(t1, "walrus") == []
    assert contents(t2, "walrus") == ["walrus note for task two"]
    # Ending the session ends its open tasks too.
    s.run("session", "end")
    assert contents(t2, "walrus") == []


def test_user_and_agent_scopes(u: Db0) -> None:
    coder = ctx(u, DB0_AGENT="coder", DB0_SESSION=start(u, "session"))
    coder2 = ctx(u, DB0_AGENT="coder", DB0_SESSION=start(u, "session"))
    writer = ctx(u, DB0_AGENT="writer")
    other_user_coder = Db0(u.home, {"DB0_USER": "someone-else-" + uuid.uuid4().hex[:6],
                                    "DB0_AGENT": "coder"})
    coder.run("remember", "-s", "agent", "okapi tabs not spaces for the coder agent")
    coder.run("remember", "okapi user prefers dark mode")
    assert set(contents(coder2, "okapi")) == {"okapi tabs not spaces for the coder agent",
                                              "okapi user prefers dark mode"}
    assert contents(writer, "okapi") == ["okapi user prefers dark mode"]
    # agent memories follow the agent across users; user memories stay with the user
    assert contents(other_user_coder, "okapi") == ["okapi tabs not spaces for the coder agent"]
    assert contents(u, "okapi", "--scope", "agent") == []  # default agent sees no coder memory
    assert contents(coder, "okapi", "--scope", "user") == ["okapi user prefers dark mode"]


def test_ttl_and_idle_session_expire_with_an_op(u: Db0) -> None:
    mid = u.run("remember", "--ttl", "1s", "ephemeral narwhal").out.strip()
    assert contents(u, "narwhal") == ["ephemeral narwhal"]
    wait_until(lambda: contents(u, "narwhal") == [], 10)
    hist = wait_until(lambda: (h := u.json("history", mid)) and any(
        e["kind"] == "expire" for v in h["versions"] for e in v["events"]) and h, 10)
    assert hist["versions"][0]["forgotten_at"]
    s = ctx(u, DB0_SESSION=start(u, "session", "--idle-ttl", "1s"))
    s.run("remember", "-s", "session", "idle quokka")
    sid = s.env["DB0_SESSION"]

    def ended() -> bool:
        rows = u.json("session", "list", "--all")["sessions"]
        return any(r["session"] == sid and r["end_reason"] == "idle" for r in rows)
    wait_until(ended, 15)
    assert contents(s, "quokka") == []


# -- facts that evolve -----------------------------------------------------------------------------

def test_supersede_chains_duplicates_keys_and_as_of(u: Db0) -> None:
    a = u.json("remember", "the office is on floor 3")
    assert u.json("remember", "the office is on floor 3")["status"] == "duplicate"
    time.sleep(0.05)
    before_b = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + \
        f".{int(time.time() * 1000) % 1000:03d}Z"
    time.sleep(0.05)
    b = u.json("remember", "--supersedes", a["id"], "--reason", "moved", "the office is on floor 5")
    assert b["superseded"] == a["id"]
    # Superseding the old version again supersedes the chain's current one.
    c = u.json("remember", "--supersedes", a["id"], "the office is on floor 7")
    assert c["superseded"] == b["id"]
    assert contents(u, "office floor") == ["the office is on floor 7"]
    everything = set(contents(u, "office floor", "--include-superseded"))
    assert everything == {"the office is on floor 3", "the office is on floor 5",
                          "the office is on floor 7"}
    chain = u.json("history", c["id"])["versions"]
    assert [v["content"] for v in chain] == ["the office is on floor 3",
                                             "the office is on floor 5",
                                             "the office is on floor 7"]
    assert chain[0]["reason"] == "moved" and all(v["events"] for v in chain)
    assert contents(u, "office floor", "--as-of", before_b) == ["the office is on floor 3"]
    k1 = u.json("remember", "--key", "editor", "editor is vim")
    k2 = u.json("remember", "--key", "editor", "editor is helix")
    assert k2["superseded"] == k1["id"]
    assert contents(u, "editor") == ["editor is helix"]


# -- pack ----------------------------------------------------------------------------------------

WORDS = [
    "deploy", "cache", "socket", "memory", "agent", "session", "vector", "python", "rust",
    "editor", "kiwi", "mango", "database", "budget", "token", "window", "pack", "recall",
]


@pytest.fixture(scope="module")
def pack_user(mod_home: Path) -> Db0:
    d = Db0(mod_home, {"DB0_USER": "packer"})
    rng = random.Random(4)
    lines = []
    for i in range(120):
        n = rng.choice([3, 8, 20, 60])
        text = " ".join(rng.choices(WORDS, k=n)) + f" ünïcode-{i} #{i}"
        lines.append(json.dumps({"content": text}))
    d.run("import", "-", input="\n".join(lines))
    d.run("remember", "--pin", "pinned: always reply in English")
    return d


def test_pack_formats_and_pinned_first(pack_user: Db0) -> None:
    res = pack_user.json("pack", "deploy cache", "--budget", "300")
    for field in ("text", "tokens", "budget", "tokenizer", "items"):
        assert field in res
    assert res["tokens"] == tokens.count(res["text"]) <= 300
    assert res["items"][0]["content"] == "pinned: always reply in English"
    assert all(it["id"] in res["text"] for it in res["items"])
    md = pack_user.run("pack", "deploy cache", "--budget", "300").out
    assert md.startswith("## user\n") and "ago, id " in md
    xml = pack_user.run("pack", "deploy", "-b", "200", "-f", "xml").out
    assert xml.startswith("<db0-memories>") and xml.rstrip().endswith("</db0-memories>")
    piped = pack_user.run("pack", "-", "--budget", "100", input="deploy cache").out
    assert tokens.count(piped.rstrip("\n")) <= 100
    bad = pack_user.run("pack", "x", "--budget", "0", check=False)
    assert bad.code == 2 and "budget must be" in bad.err and len(bad.err.strip().splitlines()) == 1


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(budget=st.integers(1, 3000), query=st.lists(st.sampled_from(WORDS), min_size=0,
                                                      max_size=4),
       fmt=st.sampled_from(["md", "xml"]), user=st.sampled_from(["packer", "packer2"]))
@example(budget=1, query=[], fmt="xml", user="packer")  # the wrapper alone is over budget
@example(budget=20, query=["deploy"], fmt="md", user="packer")
def test_pack_never_exceeds_the_budget(pack_user: Db0, budget: int, query: list[str],
                                       fmt: str, user: str) -> None:
    from db0.daemon.client import Client, connect

    if user == "packer2" and not getattr(test_pack_never_exceeds_the_budget, "seeded", False):
        rng = random.Random(9)
        d = Db0(pack_user.home, {"DB0_USER": "packer2"})
        d.run("import", "-", input="\n".join(json.dumps({"content": " ".join(
            rng.choices(WORDS, k=rng.randint(1, 200)))}) for _ in range(60)))
        test_pack_never_exceeds_the_budget.seeded = True  # type: ignore[attr-defined]
    import os

    old = os.environ.get("DB0_HOME")
    os.environ["DB0_HOME"] = str(pack_user.home)
    try:
        c: Client = connect()
        res = c.call("memory.pack", {"query": " ".join(query), "budget": budget,
                                     "format": fmt, "context": {"user": user}})
        c.close()
    finally:
        if old is None:
            os.environ.pop("DB0_HOME", None)
        else:
            os.environ["DB0_HOME"] = old
    assert res["tokenizer"] == tokens.NAME
    assert res["tokens"] == tokens.count(res["text"]) <= budget
    if res["items"] and budget > 200:
        assert len(res["items"]) >= 1


# -- checkpoints ----------------------------------------------------------------------------------

def test_checkpoints_restore_branch_and_diff(u: Db0, tmp_path: Path) -> None:
    s = ctx(u, DB0_SESSION=start(u, "session"))
    s.run("remember", "-s", "session", "plan: gecko step one")
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"step": 1, "notes": ["gecko"]}))
    cp1 = s.json("checkpoint", "create", "--label", "one", "--state", str(state))["id"]
    assert json.loads(s.run("checkpoint", "show", cp1).out) == {"step": 1, "notes": ["gecko"]}
    late = s.run("remember", "-s", "session", "plan: gecko step two").out.strip()
    s.run("remember", "shared gecko user fact")
    cp2 = s.json("checkpoint", "create", "--state", "-", input='{"step": 2}')["id"]
    assert s.json("checkpoint", "show", cp2)["state"] == {"step": 2}
    assert [c["id"] for c in s.json("checkpoint", "list")["checkpoints"]] == [cp2, cp1]
    d = s.json("checkpoint", "diff", cp1, cp2)
    assert [x["id"] for x in d["added"]] == [late]

    # A branch from cp1 sees the session as it was then, and writes only to itself.
    br = s.json("checkpoint", "branch", cp1)
    assert br["parent"] == s.env["DB0_SESSION"]
    b = ctx(u, DB0_SESSION=br["session"])
    assert set(contents(b, "gecko")) == {"plan: gecko step one", "shared gecko user fact"}
    b.run("remember", "-s", "session", "branch gecko idea")
    assert "branch gecko idea" not in contents(s, "gecko")
    cpb = b.json("checkpoint", "create")["id"]
    b.run("remember", "-s", "session", "branch gecko after checkpoint")
    bb = ctx(u, DB0_SESSION=b.json("checkpoint", "branch", cpb)["session"])
    assert set(contents(bb, "gecko")) == {"plan: gecko step one", "shared gecko user fact",
                                          "branch gecko idea"}

    # Restore rolls the session back; user memories stay; history keeps the undone write.
    r = s.json("checkpoint", "restore", cp1)
    assert r["rolled_back"] == 1
    assert set(contents(s, "gecko")) == {"plan: gecko step one", "shared gecko user fact"}
    kinds = [e["kind"] for v in s.json("history", late)["versions"] for e in v["events"]]
    assert kinds[-1] == "rollback"
    missing = s.run("checkpoint", "show", "cnope", check=False)
    assert missing.code == 4 and "no checkpoint" in missing.err
    no_session = u.run("checkpoint", "create", check=False)
    assert no_session.code == 1 and "session" in no_session.err


# -- spawn and links ------------------------------------------------------------------------------

def test_spawn_nested_isolation_and_exit_code(u: Db0) -> None:
    parent = ctx(u, DB0_SESSION=start(u, "session"))
    parent.run("remember", "-s", "session", "parent-only ibex plan")
    child_script = (
        f"{DB0} remember 'ibex learned by child';"
        f"{DB0} remember -s session 'child session ibex';"
        f"{DB0} recall ibex --json > \"$OUT_CHILD\";"
        f"{DB0} spawn --agent grandchild --task -- sh -c "
        f"'{DB0} remember -s task \"grandchild task ibex\"; "
        f"{DB0} recall ibex --json > \"$OUT_GRAND\"; exit 3';"
        "echo $? > \"$OUT_CODE\"; exit 5")
    out = Path(tempfile.mkdtemp(prefix="db0spawn"))
    env = {"OUT_CHILD": str(out / "c.json"), "OUT_GRAND": str(out / "g.json"),
           "OUT_CODE": str(out / "code")}
    r = parent.run("spawn", "--agent", "child", "--", "sh", "-c", child_script, env=env,
                   check=False)
    assert r.code == 5
    assert (out / "code").read_text().strip() == "3"
    child_sees = {x["content"] for x in json.loads((out / "c.json").read_text())["results"]}
    grand_sees = {x["content"] for x in json.loads((out / "g.json").read_text())["results"]}
    assert child_sees == {"ibex learned by child", "child session ibex"}
    assert grand_sees == {"ibex learned by child", "grandchild task ibex"}
    assert set(contents(parent, "ibex")) == {"parent-only ibex plan", "ibex learned by child"}
    assert parent.run("spawn", "--agent", "x", "--", "/nonexistent/cmd", check=False).code == 4


def test_links_show_and_expand(u: Db0) -> None:
    a = u.run("remember", "lemur habitat is Madagascar").out.strip()
    b = u.run("remember", "ring-tailed primates sunbathe in the morning").out.strip()
    assert u.json("link", a, b, "--type", "supports")["status"] == "linked"
    assert u.json("link", a, b, "--type", "supports")["status"] == "exists"
    shown = u.json("show", a)["links"]
    assert shown == [{"id": b, "type": "supports", "direction": "out"}]
    plain = u.json("recall", "lemur", "-n", "1")["results"]
    assert [x["id"] for x in plain] == [a]
    expanded = u.json("recall", "lemur", "-n", "1", "--expand")["results"]
    assert [x["id"] for x in expanded] == [a, b] and expanded[1]["via"]["id"] == a
    # Piped text: the linked memory has no score of its own and shows the link it came by.
    lines = u.run("recall", "lemur", "-n", "1", "--expand").out.splitlines()
    assert [ln.split("\t")[:2] for ln in lines] == [[a, lines[0].split("\t")[1]],
                                                     [b, "supports link"]]
    bad = u.run("link", a, b, "--type", "hates", check=False)
    assert bad.code == 1 and "unknown link type" in bad.err
    assert u.run("link", a, "zzzzzzzzzz", check=False).code == 4


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))

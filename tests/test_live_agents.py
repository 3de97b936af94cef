"""The real agent CLIs with db0 integrated: Claude Code (`claude -p`), Codex (`codex exec`) and
Gemini CLI (`gemini -p`), each at the version daemon/agents.py was checked against, each run once
against the stand-in model endpoint (tests/standin.py) in a private HOME, with a private
DB0_HOME that has the embedding model.

Per agent: `db0 integrate AGENT` writes the agent's settings as it would a user's; a memory is
seeded; one non-interactive session says "I prefer tabs over spaces" and asks for the deploy
target. Then, from what the stand-in recorded, db0's fenced context reached the model at session
start and with the prompt; and from db0 itself, the session's turns and the stated preference
were captured.

The seeds are chosen so that the prompt has something new to inject: the session-start pack is
kept small (`[hooks] session_budget`) and the newest memories are about the garden, so the
deploy fact reaches the model only through the prompt's recall (a memory injected at session
start is never injected again in that session).

Needs node and npm (the CLIs are installed from the npm registry once, into
~/.cache/db0-tests/agents); skipped with the reason when npm cannot install them.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import agentrun
import pytest
from conftest import DB0, Db0, _wait_dead, daemon_pids, give_models
from standin import StandIn

pytestmark = pytest.mark.slow

PROMPT = "I prefer tabs over spaces. What is the deploy target for this project?"
DEPLOY = "the deploy target is fly.io"
GARDEN = [f"garden note {i}: the {plant} bed needs watering on {day}"
          for i, (plant, day) in enumerate([
              ("tomato", "Mondays"), ("basil", "Tuesdays"), ("rose", "Wednesdays"),
              ("mint", "Thursdays"), ("bean", "Fridays"), ("pepper", "Saturdays"),
              ("squash", "Sundays"), ("carrot", "mornings"), ("lettuce", "evenings"),
              ("onion", "weekends"), ("garlic", "holidays"), ("kale", "cool days"),
              ("leek", "hot days"), ("pea", "dry days"), ("thyme", "windy days"),
              ("sage", "cloudy days")])]
TIMINGS: dict[str, dict[str, Any]] = {}


@pytest.fixture(scope="module")
def models() -> Iterator[Path]:
    """A models folder with the default embedding model, made once for the module."""
    with tempfile.TemporaryDirectory(prefix="db0lm", dir="/tmp") as d:
        installed = Path.home() / ".local" / "share" / "db0" / "models"
        index = installed / "models.json"
        if index.exists():  # `make install` built it: point at it (read-only), no copy
            doc = json.loads(index.read_text())
            mdir = Path(d) / "data" / "models"
            mdir.mkdir(parents=True)
            (mdir / "models.json").write_text(json.dumps(
                {"current": doc["current"], "models": doc["models"]}))
        else:
            db = Db0(Path(d))
            try:
                db.run("model", "install", timeout=900)
            finally:
                db.stop()
        yield Path(d) / "data" / "models"


@pytest.fixture(scope="module")
def standin() -> Iterator[StandIn]:
    with StandIn() as s:
        yield s


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    for agent, t in TIMINGS.items():
        print(f"\n{agent}: " + ", ".join(f"{k} {v}" for k, v in t.items()))


def session_of(db: Db0, agent: str) -> dict[str, Any]:
    rows = db.json("session", "list", "--all")["sessions"]
    found = [s for s in rows if (s.get("label") or "").startswith(agent + " ")]
    assert len(found) == 1, f"one db0 session for {agent} expected, got {rows}"
    one: dict[str, Any] = found[0]
    return one


@pytest.mark.parametrize("agent", list(agentrun.TABLE))
def test_agent_session_is_remembered(agent: str, models: Path, standin: StandIn,
                                     tmp_path: Path) -> None:
    t0 = time.monotonic()
    try:
        inst = agentrun.install(agent)
    except agentrun.NotInstallable as e:
        pytest.skip(f"{agent} CLI not installable: {e}")
    t_install = time.monotonic() - t0
    home = tmp_path / "home"  # the agent's HOME
    proj = tmp_path / "garden"  # the project folder the session runs in
    home.mkdir()
    proj.mkdir()
    with tempfile.TemporaryDirectory(prefix="db0l", dir="/tmp") as d:
        db0_home = Path(d)
        give_models(db0_home, models)
        (db0_home / "config").mkdir()
        (db0_home / "config" / "config.toml").write_text("[hooks]\nsession_budget = 60\n")
        env = {**agentrun.base_env(home, [str(Path(DB0).parent)]),
               **agentrun.configure(agent, home, standin.url),
               "DB0_HOME": str(db0_home)}
        if os.environ.get("PYTHONPATH"):  # a worktree's link tree reaches the hooks too
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        db = Db0(db0_home, env=env)
        try:
            _session(agent, inst, db, env, home, proj, standin, t_install)
        finally:
            db.stop()
            for pid in daemon_pids(db0_home):
                os.kill(pid, 15)
                _wait_dead(pid, 20)


def _session(agent: str, inst: agentrun.Installed, db: Db0, env: dict[str, str], home: Path,
             proj: Path, standin: StandIn, t_install: float) -> None:
    spec = agentrun.TABLE[agent]
    t0 = time.monotonic()
    r = db.run("integrate", agent, "--json", env={"HOME": str(home)})
    changes = r.json()["changes"]
    assert any(c["what"] == "hooks" and c["added"] for c in changes), changes
    db.run("remember", DEPLOY)
    notes = home / "garden.jsonl"  # newer than the deploy fact, so first in the recent list
    notes.write_text("".join(json.dumps({"content": n}) + "\n" for n in GARDEN))
    db.run("import", str(notes), "--wait")
    t_setup = time.monotonic() - t0

    seen = len(standin.requests)
    run = agentrun.run(inst, PROMPT, proj, env, timeout=180,
                       extra=agentrun.LATENCY_OPTIONS[agent])
    assert run.code == 0, f"{agent} exited {run.code}: {run.err[-3000:]}"
    reqs = [q for q in standin.requests[seen:] if q in standin.model_requests()]
    assert reqs, f"{agent} asked the stand-in nothing"
    TIMINGS[agent] = {"install": f"{t_install:.1f}s", "db0 setup": f"{t_setup:.1f}s",
                      "session": f"{run.seconds:.1f}s",
                      "hook ms": agentrun.hook_latencies(agent, run)}

    # What reached the model: db0's fence from SessionStart, and from the prompt's hook
    # (Gemini CLI escapes < and > in hook context and wraps it in <hook_context>).
    bodies = "\n".join(q.text for q in reqs)
    fences = re.findall(r'(?:<|&lt;)db0-context source=\\?"db0\\?" agent=\\?"[\w-]+\\?" '
                        r'event=\\?"([\w-]+)\\?"', bodies)
    assert "session-start" in fences, (
        f"{agent}: no session-start context reached the model (fences seen: {fences}); "
        f"the hooks log says: {_hooks_log(db)}")
    assert "prompt" in fences, (
        f"{agent}: no prompt-time context reached the model (fences seen: {fences}); "
        f"the hooks log says: {_hooks_log(db)}")
    assert "fly.io" in bodies, f"{agent}: the deploy fact never reached the model"

    # What db0 captured: the session, its turns, and the preference as a fact. The one-shot
    # run ends with SessionEnd, which ends db0's session and so expires its session-scope
    # turns at once: `db0 export --everyone --all` still shows them, `db0 list` no longer.
    deadline = time.monotonic() + 20
    while True:  # a spooled event (hook faster than the daemon) is drained shortly after
        try:
            sess = session_of(db, agent)
            dump = [json.loads(line) for line in
                    db.run("export", "--everyone", "--all").out.splitlines()]
            mems = [m for m in dump if m.get("session") == sess["id"]]
        except AssertionError:
            mems = []
        roles = {m["metadata"].get("role") for m in mems if "turn" in m.get("tags", [])}
        if {"user", "assistant"} <= roles or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    turns = [m for m in mems if "turn" in m.get("tags", [])]
    assert any(m["metadata"].get("role") == "user" and "tabs over spaces" in m["content"]
               for m in turns), f"{agent}: the user's turn was not captured: {turns}"
    assert any(m["metadata"].get("role") == "assistant" and "stand-in model" in m["content"]
               for m in turns), f"{agent}: the assistant's turn was not captured: {turns}"
    assert not any("db0-context" in m["content"] or "hook_context" in m["content"]
                   for m in mems), f"{agent}: db0 captured its own injected context: {mems}"
    assert sess["ended_at"] is not None or _ended(db, agent), (
        f"{agent} ended its session (SessionEnd) but db0's session is still open")
    facts = db.json("recall", "which indentation, tabs or spaces", "--limit", "5")["results"]
    assert any("tabs over spaces" in f["content"] and f["scope"] == "user" for f in facts), \
        f"{agent}: the preference was not kept as a user fact: {facts}"
    assert spec.checked_version in inst.version
    if agent == "codex":
        _codex_fork(inst, db, env, proj, standin, sess)


def _ended(db: Db0, agent: str) -> bool:
    """Whether db0 ended the agent's session (SessionEnd may land just after the exit)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if session_of(db, agent)["ended_at"] is not None:
            return True
        time.sleep(0.25)
    return False


def _codex_fork(inst: agentrun.Installed, db: Db0, env: dict[str, str], proj: Path,
                standin: StandIn, sess: dict[str, Any]) -> None:
    """`codex exec fork ID`: SessionStart comes with source "fork", and db0 injects there too."""
    agent_sid = sess["label"].split(" ", 1)[1]
    seen = len(standin.requests)
    run = agentrun.run(inst, "And which indentation do I like?", proj, env, timeout=180,
                       extra=("fork", agent_sid))
    assert run.code == 0, f"codex exec fork exited {run.code}: {run.err[-3000:]}"
    last = [q for q in standin.requests[seen:] if q in standin.model_requests()][-1].text
    # The fork carries the parent's history, db0's session-start context included: a fresh
    # one for the forked session makes it two.
    assert len(re.findall(r'event=\\?"session-start\\?"', last)) >= 2, (
        "codex: no session-start context reached the model in a forked session "
        "(SessionStart source 'fork')")


def _hooks_log(db: Db0) -> str:
    log = db.home / "logs" / "hooks.log"
    return log.read_text()[-1500:] if log.exists() else "(empty)"

"""`db0 hook EVENT --agent …` through the real CLI and a real daemon: each agent's documented
hook JSON, a transcript that grows between turn-ends, malformed and oversized stdin, and a
stopped daemon whose spooled events arrive once and only once."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import DB0, Db0, Result, _wait_dead, daemon_pids


@pytest.fixture(scope="module")
def d() -> Iterator[Db0]:
    """One daemon for the module: every test uses its own agent session ids."""
    with tempfile.TemporaryDirectory(prefix="db0h", dir="/tmp") as tmp:
        db = Db0(Path(tmp))
        db.run("daemon", "start")
        yield db
        db.stop()
        for pid in daemon_pids(Path(tmp)):
            os.kill(pid, signal.SIGTERM)
            _wait_dead(pid, 20)


def hook(db: Db0, event: str, agent: str, payload: Any, raw: bytes | None = None,
         env: dict[str, str] | None = None) -> Result:
    data = raw if raw is not None else json.dumps(payload).encode()
    r = db.run("hook", event, "--agent", agent, input=data, check=False, env=env)
    assert r.code == 0, r
    assert "Traceback" not in r.err and "Traceback" not in r.out
    return r


def injected(r: Result, name: str) -> str:
    assert r.out, r
    out = json.loads(r.out)
    spec = out["hookSpecificOutput"]
    assert spec["hookEventName"] == name
    text: str = spec["additionalContext"]
    assert text.startswith("<db0-context") and text.endswith("</db0-context>")
    assert len(text) <= 10_000
    return text


def sid() -> str:
    return str(uuid.uuid4())


def session_of(db: Db0, label_part: str) -> dict[str, Any]:
    rows = db.json("session", "list", "--all")["sessions"]
    found = [s for s in rows if label_part in (s.get("label") or "")]
    assert len(found) == 1, rows
    return found[0]


def session_memories(db: Db0, session: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = db.json("list", "--session", session, "--scope", "session",
                                        "--limit", "500")["memories"]
    return out


def cc(event: str, session: str, cwd: str, **extra: Any) -> dict[str, Any]:
    """Claude Code's documented hook input (hooks.md, v2.1.240)."""
    base = {"session_id": session, "transcript_path": extra.pop("transcript_path", ""),
            "cwd": cwd, "hook_event_name": event, "permission_mode": "default"}
    return {**base, **extra}


# -- a real-shaped Claude Code transcript -----------------------------------------------------

def line(kind: str, text: Any, session: str, uid: str | None = None, **extra: Any) -> str:
    role = "assistant" if kind == "assistant" else "user"
    msg: dict[str, Any] = {"role": role, "content": text}
    if kind == "assistant":
        msg.update(id="msg_" + (uid or "x")[:8], type="message", model="claude-sonnet-5",
                   stop_reason=None, usage={"input_tokens": 2, "output_tokens": 9})
    obj = {"parentUuid": None, "isSidechain": False, "userType": "external", "cwd": "/w/app",
           "sessionId": session, "version": "2.1.144", "gitBranch": "main", "type": kind,
           "message": msg, "uuid": uid or str(uuid.uuid4()),
           "timestamp": "2026-05-19T10:00:00.000Z", **extra}
    return json.dumps(obj)


def test_claude_code_every_event(d: Db0, tmp_path: Path) -> None:
    d.run("remember", "--key", "db", "The staging database is postgres 16 on port 5433")
    s = sid()
    cwd = str(tmp_path / "shop")
    transcript = tmp_path / f"{s}.jsonl"
    transcript.write_text("")
    r = hook(d, "session-start", "claude-code",
             cc("SessionStart", s, cwd, source="startup", model="claude-sonnet-5",
                transcript_path=str(transcript)))
    text = injected(r, "SessionStart")
    assert "postgres 16" in text  # the user's memories, at the start
    d.run("remember", "The payments webhook rotates its signing key monthly")
    r = hook(d, "prompt", "claude-code", cc(
        "UserPromptSubmit", s, cwd, transcript_path=str(transcript),
        prompt="How often does the payments webhook key rotate? I prefer psql over pgcli."))
    text = injected(r, "UserPromptSubmit")
    assert "rotates its signing key monthly" in text
    assert "postgres 16" not in text  # injected at the start already
    # The same memory is not injected again on the next prompt of this session.
    r = hook(d, "prompt", "claude-code", cc("UserPromptSubmit", s, cwd,
                                            prompt="payments webhook signing key again"))
    assert "monthly" not in r.out
    transcript.write_text("\n".join([
        line("user", "Which port does the staging database use?", s),
        line("assistant", [{"type": "text", "text": "It listens on 5433 (staging)."}], s),
    ]) + "\n")
    r = hook(d, "turn-end", "claude-code", cc(
        "Stop", s, cwd, transcript_path=str(transcript), stop_hook_active=False,
        last_assistant_message="It listens on 5433 (staging).", background_tasks=[],
        session_crons=[]))
    assert r.out == ""  # Stop: nothing to say (plain stdout would not reach the model)
    sess = session_of(d, s)
    turns = session_memories(d, sess["id"])
    contents = [m["content"] for m in turns]
    assert "It listens on 5433 (staging)." in contents
    assert contents.count("It listens on 5433 (staging).") == 1  # transcript + last message
    assert all(m["metadata"]["source"] == "claude-code" for m in turns)
    # The preference in the prompt became a user fact with a key, naming its source.
    facts = d.json("list", "--scope", "user", "--tag", "extracted")["memories"]
    pref = [f for f in facts if "psql over pgcli" in f["content"]]
    assert len(pref) == 1 and pref[0]["key"] and pref[0]["metadata"]["source"] == "claude-code"
    assert pref[0]["metadata"]["via"] == "hook:prompt"
    r = hook(d, "pre-compact", "claude-code", cc("PreCompact", s, cwd, trigger="auto",
                                                 custom_instructions="",
                                                 transcript_path=str(transcript)))
    assert r.out == ""
    summary = ("This session is being continued. The user is building a shop. "
               "We decided to use Stripe for payments. The user's name is Ada.")
    r = hook(d, "post-compact", "claude-code", cc("PostCompact", s, cwd, trigger="auto",
                                                  compact_summary=summary))
    cps = d.json("checkpoint", "list", "--all")["checkpoints"]
    mine = [c for c in cps if c.get("session") == sess["id"]]
    assert len(mine) == 2, cps
    facts = d.json("list", "--scope", "user", "--tag", "extracted")["memories"]
    dec = [f for f in facts if "Stripe" in f["content"]]
    assert dec and dec[0]["key"].startswith("decision.shop.")
    assert dec[0]["metadata"]["via"] == "hook:compact-summary"
    r = hook(d, "session-end", "claude-code", cc("SessionEnd", s, cwd, reason="prompt_input_exit"))
    assert r.out == ""
    assert session_of(d, s)["ended_at"] is not None
    # The next session in this directory starts with the compaction summary.
    s2 = sid()
    r = hook(d, "session-start", "claude-code", cc("SessionStart", s2, cwd, source="startup"))
    text = injected(r, "SessionStart")
    assert "Stripe for payments" in text and "Earlier session in this directory" in text
    # ... and a session elsewhere does not.
    r = hook(d, "session-start", "claude-code", cc("SessionStart", sid(), str(tmp_path / "x"),
                                                   source="startup"))
    assert "Earlier session" not in r.out and "building a shop" not in r.out


def test_transcript_grows_between_turn_ends(d: Db0, tmp_path: Path) -> None:
    s = sid()
    cwd = str(tmp_path)
    t = tmp_path / "t.jsonl"
    a1 = str(uuid.uuid4())
    first = [
        line("user", "Let's refactor the billing module into smaller services", s),
        # Claude Code writes one line per content block, and streaming partials repeat a uuid.
        line("assistant", [{"type": "thinking", "thinking": "hmm", "signature": "x"}], s),
        line("assistant", [{"type": "text", "text": "I will split billing into three parts."}],
             s, a1),
        line("assistant", [{"type": "text", "text": "I will split billing into three parts."}],
             s, a1),
        line("assistant", [{"type": "tool_use", "id": "toolu_01", "name": "Read",
                            "input": {"file_path": "/w/app/billing.py"}}], s),
        line("user", [{"type": "tool_result", "tool_use_id": "toolu_01",
                       "content": "def charge(): SECRET_FILE_TEXT"}], s,
             toolUseResult={"type": "text"}),
        json.dumps({"type": "attachment", "attachment": {
            "type": "hook_success", "stdout": "<db0-context>old injected text</db0-context>"},
            "uuid": str(uuid.uuid4())}),
        json.dumps({"type": "progress", "data": {"x": 1}, "uuid": str(uuid.uuid4())}),
        line("user", "<system-reminder>internal reminder text</system-reminder>Caveat", s,
             isMeta=True),
        "this line is not JSON {",
        json.dumps({"type": "some-future-type", "uuid": str(uuid.uuid4())}),
    ]
    t.write_text("\n".join(first) + "\n")
    hook(d, "turn-end", "claude-code", cc("Stop", s, cwd, transcript_path=str(t),
                                          stop_hook_active=False))
    sess = session_of(d, s)
    got = sorted(m["content"] for m in session_memories(d, sess["id"]))
    assert got == ["I will split billing into three parts.",
                   "Let's refactor the billing module into smaller services"]
    # The transcript grows; a partial last line (being written) waits for the next turn.
    more = line("user", "Keep the public API stable <private>my token is hunter2</private>"
                " and <db0-context source=\"db0\">injected before</db0-context>please", s)
    partial = line("assistant", [{"type": "text", "text": "Understood, the API stays."}], s)
    with open(t, "a") as f:
        f.write(first[0] + "\n")  # a fork/resume repeating an earlier line (same uuid)
        f.write(more + "\n")
        f.write(partial[: len(partial) // 2])
    hook(d, "turn-end", "claude-code", cc("Stop", s, cwd, transcript_path=str(t)))
    got = sorted(m["content"] for m in session_memories(d, sess["id"]))
    assert len(got) == 3, got
    new = [g for g in got if g.startswith("Keep the public API")]
    assert new and "hunter2" not in new[0] and "injected before" not in new[0]
    assert "db0-context" not in new[0] and "private" not in new[0]
    with open(t, "a") as f:
        f.write(partial[len(partial) // 2:] + "\n")
    hook(d, "turn-end", "claude-code", cc("Stop", s, cwd, transcript_path=str(t)))
    got = [m["content"] for m in session_memories(d, sess["id"])]
    assert len(got) == 4 and "Understood, the API stays." in got
    # Nothing injected, internal or private was stored anywhere.
    dump = d.run("export", "--everyone", "--all").out
    for bad in ("SECRET_FILE_TEXT", "old injected text", "internal reminder text", "hunter2"):
        assert bad not in dump
    # A transcript that went away (or never was) is skipped, not an error.
    t.unlink()
    hook(d, "turn-end", "claude-code", cc("Stop", s, cwd, transcript_path=str(t),
                                          last_assistant_message="Done with billing."))
    got = [m["content"] for m in session_memories(d, sess["id"])]
    assert "Done with billing." in got


def test_codex_events(d: Db0, tmp_path: Path) -> None:
    s = sid()
    cwd = str(tmp_path / "svc")
    roll = tmp_path / "rollout-2026-05-22T10-00-00-x.jsonl"
    base = {"session_id": s, "transcript_path": None, "cwd": cwd, "model": "gpt-5-codex"}
    r = hook(d, "session-start", "codex", {**base, "hook_event_name": "SessionStart",
                                           "source": "startup"})
    assert r.out == "" or injected(r, "SessionStart")
    d.run("remember", "The release train leaves every Tuesday at noon")
    r = hook(d, "prompt", "codex", {**base, "hook_event_name": "UserPromptSubmit",
                                    "turn_id": "t1", "prompt": "when does the release train leave"})
    assert "Tuesday at noon" in injected(r, "UserPromptSubmit")
    roll.write_text("\n".join(json.dumps(x) for x in [
        {"timestamp": "2026-05-22T10:00:00Z", "type": "session_meta", "payload": {"id": s}},
        {"timestamp": "2026-05-22T10:00:01Z", "type": "response_item", "payload": {
            "type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "<environment_context>cwd</environment_context>"}]}},
        {"timestamp": "2026-05-22T10:00:02Z", "type": "response_item", "payload": {
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "Always use ruff for linting here."}]}},
        {"timestamp": "2026-05-22T10:00:03Z", "type": "event_msg",
         "payload": {"type": "agent_message", "message": "ok"}},
        {"timestamp": "2026-05-22T10:00:04Z", "type": "response_item", "payload": {
            "type": "message", "role": "assistant",
            "content": [{"type": "output_text", "text": "Configured ruff in pyproject."}]}},
    ]) + "\n")
    r = hook(d, "turn-end", "codex", {**base, "transcript_path": str(roll),
                                      "hook_event_name": "Stop", "turn_id": "t1",
                                      "stop_hook_active": False,
                                      "last_assistant_message": "Configured ruff in pyproject."})
    assert r.out == ""  # Codex's Stop takes nothing or a JSON object (never plain text)
    sess = session_of(d, s)
    got = sorted(m["content"] for m in session_memories(d, sess["id"]))
    assert got == ["Always use ruff for linting here.", "Configured ruff in pyproject.",
                   "when does the release train leave"], got
    agent_facts = d.json("list", "--scope", "agent", "--agent", "codex")["memories"]
    assert any("ruff" in f["content"] and f["key"] for f in agent_facts)
    for ev, name in (("pre-compact", "PreCompact"), ("post-compact", "PostCompact")):
        r = hook(d, ev, "codex", {**base, "hook_event_name": name, "trigger": "manual"})
        assert r.out == ""


def test_gemini_events(d: Db0, tmp_path: Path) -> None:
    s = sid()
    cwd = str(tmp_path / "g")
    base = {"session_id": s, "transcript_path": "", "cwd": cwd,
            "timestamp": "2026-08-01T10:00:00Z"}
    r = hook(d, "session-start", "gemini", {**base, "hook_event_name": "SessionStart",
                                            "source": "startup"})
    assert r.out == "" or injected(r, "SessionStart")
    d.run("remember", "Gemini tests use the fixture called sandbox_home")
    r = hook(d, "prompt", "gemini", {**base, "hook_event_name": "BeforeAgent",
                                     "prompt": "which fixture do gemini tests use"})
    assert "sandbox_home" in injected(r, "BeforeAgent")  # stdout is only JSON
    r = hook(d, "turn-end", "gemini", {**base, "hook_event_name": "AfterAgent",
                                       "prompt": "which fixture do gemini tests use",
                                       "prompt_response": "They use sandbox_home."})
    assert r.out == ""
    # Gemini fires PreCompress "auto" at every turn, compaction or not: no checkpoint for it.
    r = hook(d, "pre-compact", "gemini", {**base, "hook_event_name": "PreCompress",
                                          "trigger": "auto"})
    assert r.out == ""
    def gemini_checkpoints() -> list[dict[str, object]]:
        return [c for c in d.json("checkpoint", "list", "--all")["checkpoints"]
                if str(c["label"]).startswith("gemini ")]  # the daemon is shared with other tests
    assert gemini_checkpoints() == []
    for ev, name in (("pre-compact", "PreCompress"), ("session-end", "SessionEnd")):
        r = hook(d, ev, "gemini", {**base, "hook_event_name": name, "trigger": "manual",
                                   "reason": "exit"})
        assert r.out == ""
    sess = session_of(d, s)
    assert sess["ended_at"] is not None
    assert len(gemini_checkpoints()) == 1


def test_session_start_leaves_watched_notes_to_the_prompts(d: Db0, tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "plugins.md").write_text("# Plugins\n\nA tutorial on writing plugins for the "
                                      "svc project, with hooks and entry points.\n")
    d.run("watch", "add", str(notes))
    d.run("remember", "The svc project deploys with fly.io")
    cwd = str(tmp_path / "svc")
    s = sid()
    r = hook(d, "session-start", "claude-code", cc("SessionStart", s, cwd, source="startup"))
    start = injected(r, "SessionStart")
    assert "fly.io" in start and "tutorial on writing plugins" not in start
    r = hook(d, "prompt", "claude-code", cc("UserPromptSubmit", s, cwd,
                                            prompt="how do I write a plugin for svc"))
    assert "tutorial on writing plugins" in injected(r, "UserPromptSubmit")


def test_extraction_supersedes_and_skips_chatter(d: Db0, tmp_path: Path) -> None:
    s = sid()
    for prompt in ("hi", "thanks!", "ok", "My shell is zsh.", "Let me check the logs first.",
                   "Actually, my shell is fish."):
        hook(d, "prompt", "claude-code", cc("UserPromptSubmit", s, str(tmp_path), prompt=prompt))
    facts = d.json("list", "--scope", "user", "--tag", "extracted")["memories"]
    shell = [f for f in facts if "shell" in f["content"]]
    assert [f["content"] for f in shell] == ["Actually, my shell is fish."]
    hist = d.json("history", shell[0]["id"])
    assert "zsh" in json.dumps(hist)  # the earlier fact, superseded by the correction
    assert not any(f["content"].lower().startswith(("hi", "thanks", "let me")) for f in facts)


def test_malformed_input_fails_open(d: Db0) -> None:
    log = d.home / "logs" / "hooks.log"
    before = log.read_text() if log.exists() else ""
    for raw in (b"not json", b"[1, 2]", b"\xff\xfe\x00garbage", b'{"session_id": ', b"null"):
        r = hook(d, "prompt", "claude-code", None, raw=raw)
        assert r.out == "" and r.err == ""
    r = hook(d, "turn-end", "codex", None, raw=b"{{{")
    assert r.out == ""
    for args in (["hook", "no-such-event", "--agent", "claude-code"],
                 ["hook", "prompt", "--agent", "cursor"], ["hook", "prompt"],
                 ["hook", "prompt", "--agent", "claude-code", "--bogus"]):
        r = d.run(*args, input=b"{}", check=False)
        assert (r.code, r.out) == (0, "") and "Traceback" not in r.err
    after = log.read_text()[len(before):]
    assert "not JSON" in after and "unknown event" in after and "unknown agent" in after
    assert "not a JSON object" in after
    # An empty object is a well-formed event with nothing in it: handled, silently.
    r = hook(d, "turn-end", "claude-code", {})
    assert r.out == ""


def test_fifty_megabytes_of_stdin(d: Db0) -> None:
    big = b'{"prompt": "' + b"x" * (50 * 1024 * 1024) + b'"}'
    started = time.monotonic()
    r = hook(d, "prompt", "claude-code", None, raw=big)
    assert r.out == ""
    assert time.monotonic() - started < 10
    assert "over" in (d.home / "logs" / "hooks.log").read_text()


def test_stdin_left_open_does_not_hang(d: Db0) -> None:
    p = subprocess.Popen([DB0, "hook", "prompt", "--agent", "claude-code"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=d.env)
    assert p.stdin is not None
    p.stdin.write(b'{"prompt": "never closed"')
    p.stdin.flush()
    started = time.monotonic()
    code = p.wait(timeout=30)  # stdin still open: the hook gives up on it in seconds
    assert code == 0 and time.monotonic() - started < 10
    p.stdin.close()
    assert p.stdout is not None and p.stdout.read() == b""
    p.stdout.close()


def test_disabled_by_environment(d: Db0, tmp_path: Path) -> None:
    r = hook(d, "session-start", "claude-code", cc("SessionStart", sid(), str(tmp_path)),
             env={"DB0_DISABLE": "1"})
    assert r.out == ""


def test_stopped_daemon_spools_and_drains_once(home: Path, tmp_path: Path) -> None:
    db = Db0(home)
    s = sid()
    cwd = str(tmp_path)
    spool = home / "data" / "spool"
    # No daemon: the hook spools, starts one in the background and returns at once.
    started = time.monotonic()
    r = hook(db, "prompt", "claude-code", cc("UserPromptSubmit", s, cwd,
                                             prompt="My favourite database is SQLite."))
    assert r.out == ""
    assert time.monotonic() - started < 3
    hook(db, "turn-end", "claude-code", cc("Stop", s, cwd,
                                           last_assistant_message="Noted: SQLite it is."))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not spool.exists() or any(spool.glob("*.json"))):
        time.sleep(0.1)
    assert spool.exists() and not list(spool.glob("*.json"))
    # Once it runs, the spooled events are there exactly once.
    facts = db.json("list", "--scope", "user")["memories"]
    assert [f["content"] for f in facts] == ["My favourite database is SQLite."]
    sess = session_of(db, s)
    got = sorted(m["content"] for m in session_memories(db, sess["id"]))
    assert got == ["My favourite database is SQLite.", "Noted: SQLite it is."]
    # The same event spooled again (a reply that came too late) changes nothing.
    events = db.json("daemon", "status")["spool"]
    ev = {"event_id": "e" * 32, "agent": "claude-code", "event": "prompt",
          "data": {"session_id": s, "cwd": cwd, "prompt": "Remember that the build runs on CI."},
          "context": {}}
    for n in (1, 2):
        (spool / f"0000{n}-{ev['event_id']}.json").write_text(json.dumps(ev))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(spool.glob("*.json")):
        time.sleep(0.1)
    status = db.json("daemon", "status")["spool"]
    assert status["drained"] >= events["drained"] + 2 and status["pending"] == 0
    facts = db.json("list", "--scope", "user")["memories"]
    assert sum("build runs on CI" in f["content"] for f in facts) == 1
    # A file that is not an event is set aside, not retried forever.
    (spool / "00009-bad.json").write_text("{not json")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (spool / "00009-bad.json").exists():
        time.sleep(0.1)
    assert (spool / "bad" / "00009-bad.json").exists()
    problems = db.json("doctor", check=False)
    assert "daemon not running" in json.dumps(problems)  # the hooks log, shown by doctor
    db.stop()
    shutil.rmtree(spool, ignore_errors=True)


def test_hook_skips_typer_and_heavy_imports(d: Db0) -> None:
    """The hook runs at every prompt: the standard library and the protocol, nothing more."""
    probe = (
        "import sys, io, json\n"
        "sys.stdin = io.TextIOWrapper(io.BytesIO(b'{}'))\n"
        "import db0.cli.app as app\n"
        "app.main(['hook', 'turn-end', '--agent', 'claude-code'])\n"
        "bad = ('typer', 'click', 'rich', 'apsw', 'numpy', 'db0.store', 'db0.daemon.core.server')\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in bad\n"
        "                        or any(m.startswith(b + '.') or m == b for b in bad))))\n")
    p = subprocess.run([str(Path(DB0).with_name("python")), "-c", probe], env=d.env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout.strip().splitlines()[-1]) == []

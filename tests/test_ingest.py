"""db0 ingest FILE|- --format claude-code|codex|messages: the capture pipeline over a whole
transcript, idempotent; and the `git` target handed to git capture."""

from __future__ import annotations

import json
import os
import signal
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Db0, _wait_dead, daemon_pids


@pytest.fixture(scope="module")
def d() -> Iterator[Db0]:
    with tempfile.TemporaryDirectory(prefix="db0i", dir="/tmp") as tmp:
        db = Db0(Path(tmp))
        yield db
        db.stop()
        for pid in daemon_pids(Path(tmp)):
            os.kill(pid, signal.SIGTERM)
            _wait_dead(pid, 20)


def cc_line(kind: str, content: Any, session: str, **extra: Any) -> dict[str, Any]:
    return {"parentUuid": None, "isSidechain": False, "userType": "external", "cwd": "/w/x",
            "sessionId": session, "version": "2.1.144", "type": kind,
            "message": {"role": "assistant" if kind == "assistant" else "user",
                        "content": content},
            "uuid": str(uuid.uuid4()), "timestamp": "2026-05-19T10:00:00.000Z", **extra}


def write_lines(path: Path, objs: list[Any]) -> Path:
    path.write_text("\n".join(o if isinstance(o, str) else json.dumps(o) for o in objs) + "\n")
    return path


def extracted(d: Db0, needle: str) -> list[dict[str, Any]]:
    rows = d.json("list", "--tag", "extracted", "--limit", "500")["memories"]
    return [r for r in rows if needle in r["content"]]


def test_claude_code_transcript_twice_stores_nothing_new(d: Db0, tmp_path: Path) -> None:
    s = str(uuid.uuid4())
    t = write_lines(tmp_path / f"{s}.jsonl", [
        {"type": "summary", "summary": "Billing refactor", "leafUuid": "x"},
        cc_line("user", "hello", s),
        cc_line("user", "My favourite test runner is pytest. Let me know when done.", s),
        cc_line("assistant", [{"type": "text", "text": "Noted, pytest it is."}], s),
        cc_line("assistant", [{"type": "tool_use", "id": "t1", "name": "Bash",
                               "input": {"command": "ls"}}], s),
        cc_line("user", [{"type": "tool_result", "tool_use_id": "t1", "content": "a b"}], s,
                toolUseResult={"stdout": "a b"}),
        cc_line("user", "This session is being continued. We decided to ship on Thursdays.",
                s, isCompactSummary=True),
        "{broken line",
    ])
    first = d.json("ingest", str(t), "--format", "claude-code")
    assert first["format"] == "claude-code" and first["turns"] == 4
    assert first["stored"] >= 3 and first["facts"] == 2, first
    assert first["skipped_lines"] >= 3  # summary title, tool lines, the broken line
    again = d.json("ingest", str(t), "--format", "claude-code")
    assert (again["stored"], again["new_turns"], again["facts"]) == (0, 0, 0), again
    runner = extracted(d, "pytest")
    assert len(runner) == 1 and runner[0]["key"] == "pref.test-runner"
    assert runner[0]["metadata"]["via"] == "ingest"
    assert runner[0]["metadata"]["source"] == "claude-code"
    assert runner[0]["metadata"]["agent_session"] == s  # the transcript's own session id
    ship = extracted(d, "Thursdays")
    assert len(ship) == 1 and ship[0]["metadata"]["via"] == "ingest:compact-summary"
    # The same session captured by hooks later lands in the same db0 session, no repeats.
    sessions = [x for x in d.json("session", "list", "--all")["sessions"]
                if s in (x.get("label") or "")]
    assert len(sessions) == 1
    turns = d.json("list", "--session", sessions[0]["id"], "--scope", "session")["memories"]
    assert sorted(m["content"] for m in turns) == [
        "My favourite test runner is pytest. Let me know when done.", "Noted, pytest it is."]


def test_codex_rollout_and_auto_format(d: Db0, tmp_path: Path) -> None:
    roll = write_lines(tmp_path / "rollout-1.jsonl", [
        {"timestamp": "2026-05-22T10:00:00Z", "type": "session_meta", "payload": {"id": "c1"}},
        {"timestamp": "2026-05-22T10:00:01Z", "type": "response_item", "payload": {
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "Never commit directly to main."}]}},
        {"timestamp": "2026-05-22T10:00:02Z", "type": "response_item", "payload": {
            "type": "message", "role": "assistant",
            "content": [{"type": "output_text", "text": "Understood."}]}},
        {"timestamp": "2026-05-22T10:00:03Z", "type": "response_item",
         "payload": {"type": "function_call", "name": "shell", "arguments": "{}"}},
    ])
    r = d.json("ingest", str(roll))  # --format auto
    assert r["format"] == "codex" and r["turns"] == 2 and r["facts"] == 1, r
    rows = d.json("list", "--scope", "agent", "--agent", "codex")["memories"]
    assert [m["content"] for m in rows] == ["Never commit directly to main."]
    assert rows[0]["key"].startswith("instruction.")
    assert d.json("ingest", str(roll), "--format", "codex")["stored"] == 0


def test_messages_from_stdin_and_arrays(d: Db0, tmp_path: Path) -> None:
    msgs = [{"role": "system", "content": "You are helpful."},
            {"role": "user", "content": "Remember that the office wifi is called Nimbus."},
            {"role": "assistant", "content": [{"type": "text", "text": "I will remember."}]}]
    arr = json.dumps(msgs)
    r = d.json("ingest", "-", "--format", "messages", input=arr)
    assert r["turns"] == 2 and r["facts"] == 1 and r["skipped_lines"] == 1, r
    assert d.json("ingest", "-", "--format", "messages", input=arr)["stored"] == 0
    wifi = extracted(d, "Nimbus")
    assert len(wifi) == 1 and wifi[0]["key"] == "note.office-wifi"
    lines = tmp_path / "m.jsonl"
    lines.write_text("\n".join(json.dumps(m) for m in msgs[1:]) + "\n")
    r = d.json("ingest", str(lines), "--format", "messages")
    assert r["turns"] == 2 and r["facts"] == 0  # the fact is known already: a duplicate
    assert len(extracted(d, "Nimbus")) == 1
    # A later fact with the same key supersedes it.
    d.json("ingest", "-", "--format", "messages", input=json.dumps(
        [{"role": "user", "content": "Remember that the office wifi is called Stratus."}]))
    now = extracted(d, "office wifi")
    assert [m["content"] for m in now] == ["Remember that the office wifi is called Stratus."]


def test_bad_input(d: Db0, tmp_path: Path) -> None:
    r = d.run("ingest", str(tmp_path / "missing.jsonl"), check=False)
    assert r.code == 4 and "cannot read" in r.err and "Traceback" not in r.err  # 4: not found
    r = d.run("ingest", "-", "--format", "yaml", input="x", check=False)
    assert r.code == 2 and "--format" in r.err
    empty = d.json("ingest", "-", "--format", "messages", input="not json at all\n")
    assert empty["turns"] == 0 and empty["stored"] == 0 and empty["skipped_lines"] == 1

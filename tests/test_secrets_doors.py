"""A secret planted through every front door is nowhere on disk: not in the database, its WAL,
the logs, the spool, nor in `db0 export`.

The doors: `remember`, `import`, a hook's prompt (captured as a turn and recorded as the query of
an injection), a transcript by `db0 ingest`, a git commit message, a watched Markdown note, a
checkpoint's label and state, and MCP's `remember`. Each door gets its own secret, so a miss
names the door.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path

import anyio
from conftest import DB0, Db0, with_git

from db0.store import secrets

SECRETS = {
    "remember": "ghp_" + "R3m3mb3rT0k3nAAAAbbbbCCCCddddEEEEffff",
    "import": "glpat-" + "Imp0rtT0k3nXyZw9Vu8T",
    "hook-prompt": "sk-ant-api03-" + "H00kPr0mptQx7Wv6Ut5Sr4",
    "ingest": "xoxb-" + "111122223333-ingestabcdef",
    "git": "AKIA" + "G1TC0MM1TMESSAG0",
    "watch": "ghp_" + "Watch3dN0teAAAAbbbbCCCCddddEEEEffff01",
    "checkpoint-label": "glpat-" + "Ch3ckp0intLab3lQw9Ez",
    "checkpoint-state": "sk-proj-" + "Ch3ckp0intStat3Zq8Yx7",
    "mcp": "ghp_" + "Mcp0T00lAAAAbbbbCCCCddddEEEEffff0000",
}


def _git(env: dict[str, str], cwd: Path, *args: str) -> None:
    p = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr


def _mcp_remember(d: Db0, text: str) -> dict[str, object]:
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    async def main() -> dict[str, object]:
        params = StdioServerParameters(command=DB0, args=["mcp"],
                                       env={"PATH": d.env["PATH"], "DB0_HOME": str(d.home)})
        async with Client(params, read_timeout_seconds=60) as client:
            r = await client.call_tool("remember", {"content": text})
            assert not r.is_error, r
            out: dict[str, object] = json.loads(r.content[0].text)
            return out

    return anyio.run(main)


def test_a_secret_through_every_front_door_is_nowhere_on_disk(home: Path) -> None:
    d = with_git(home)
    try:
        s = SECRETS
        for door, value in s.items():  # each planted value is one the patterns know
            assert secrets.redact(value)[1], door
        assert d.json("remember", f"the CI token is {s['remember']}")["redacted"]
        imp = d.json("import", "-", input=json.dumps(
            {"content": f"registry login {s['import']}", "metadata": {"why": s["import"]}}))
        assert imp["redacted"]

        # A hook: the prompt is captured as a turn and is the query its injection records.
        d.run("remember", "deploys go through the staging registry first")
        sid = str(uuid.uuid4())
        prompt = f"deploy the staging registry with key {s['hook-prompt']} please"
        r = d.run("hook", "prompt", "--agent", "claude-code", input=json.dumps({
            "session_id": sid, "transcript_path": "", "cwd": str(home),
            "hook_event_name": "UserPromptSubmit", "prompt": prompt}))
        assert "staging registry" in r.out  # something was injected, so an injection row exists

        transcript = home / "t.jsonl"
        transcript.write_text(json.dumps({"role": "user",
                                          "content": f"the slack bot is {s['ingest']}"}) + "\n")
        assert d.json("ingest", str(transcript), "--format", "messages")["stored"] >= 1

        repo = home / "repo"
        repo.mkdir()
        _git(d.env, repo, "init", "-q", "-b", "main")
        (repo / "a.txt").write_text("a\n")
        _git(d.env, repo, "add", "a.txt")
        _git(d.env, repo, "commit", "-q", "-m", f"rotate the key {s['git']}")
        p = subprocess.run([DB0, "git", "capture", "--json"], cwd=repo, env=d.env,
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr

        notes = home / "notes"
        notes.mkdir()
        (notes / "ops.md").write_text(f"# Ops\n\nThe bot token is {s['watch']}.\n")
        d.run("watch", "add", str(notes))
        deadline = time.monotonic() + 60
        while "Ops" not in d.run("export").out and time.monotonic() < deadline:
            time.sleep(0.2)

        cp = d.run("checkpoint", "create", "--session", "s1", "--label",
                   f"before {s['checkpoint-label']}", "--state", "-",
                   input=json.dumps({"env": s["checkpoint-state"]}))
        assert "redacted before storing" in cp.err

        assert _mcp_remember(d, f"mcp saw {s['mcp']}")["redacted"]

        exported = d.run("export").out
        for door in ("remember", "import", "ingest", "git", "watch", "mcp"):
            assert "[REDACTED:" in exported, door
        d.stop()
        files = [p for p in (d.home).rglob("*") if p.is_file() and "models" not in p.parts]
        blob = b"".join(p.read_bytes() for p in files)
        for door, value in s.items():
            assert value.encode() not in blob, f"{door}: the secret is on disk"
            assert value not in exported, f"{door}: the secret is in the export"
    finally:
        d.stop()

"""db0 integrate claude-code|codex|gemini|mcp and status, against settings files that already
hold other tools' entries: twice changes nothing more, --remove leaves them as they were."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import DB0, Result

OTHER_CLAUDE = {
    "model": "opus",
    "permissions": {"allow": ["Bash(npm test:*)"]},
    "hooks": {
        "Stop": [{"hooks": [{"type": "command", "command": "afplay /System/ding.aiff"}]}],
        "SessionStart": [{"matcher": "startup", "hooks": [
            {"type": "command", "command": "bm hook session-start --harness claude",
             "timeout": 20}]}],
        "PreToolUse": [{"matcher": "Bash", "hooks": [
            {"type": "command", "command": "atuin history start --hook"}]}],
    },
}
OTHER_CLAUDE_JSON = {"numStartups": 41, "projects": {"/w/app": {"allowedTools": []}},
                     "mcpServers": {"github": {"type": "stdio", "command": "gh-mcp",
                                               "args": []}}}
OTHER_CODEX_TOML = """# my codex config
model = "gpt-5-codex"

[mcp_servers.github]
command = "gh-mcp"
args = []   # keep this comment
"""
OTHER_CODEX_HOOKS = {"hooks": {"Stop": [{"hooks": [
    {"type": "command", "command": "notify-send done", "timeout": 3}]}]}}
OTHER_GEMINI = {"theme": "GitHub", "hooks": {"BeforeTool": [{"matcher": "write_file", "hooks": [
    {"name": "lint", "type": "command", "command": "./lint.sh", "timeout": 30000}]}]},
    "mcpServers": {"fs": {"command": "fs-mcp"}}}


def run(home: Path, cwd: Path, *args: str, input: bytes | None = None) -> Result:
    env = {**os.environ, "HOME": str(home), "DB0_HOME": str(home / "db0"), "NO_COLOR": "1"}
    p = subprocess.run([DB0, *args], cwd=cwd, env=env, capture_output=True, input=input,
                       timeout=120)
    return Result(p.returncode, p.stdout.decode(), p.stderr.decode())


def integ(home: Path, cwd: Path, *args: str) -> dict[str, Any]:
    r = run(home, cwd, "integrate", *args, "--json")
    assert r.code == 0, r
    out: dict[str, Any] = json.loads(r.out)
    return out


def write(path: Path, data: Any) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = (data if isinstance(data, str) else json.dumps(data, indent=4)).encode()
    path.write_bytes(raw)
    return raw


def load(path: Path) -> Any:
    return json.loads(path.read_text())


def backups(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + ".db0-backup*"))


def ours(settings: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for event, groups in settings.get("hooks", {}).items():
        for g in groups:
            for h in g["hooks"]:
                if " hook " in h["command"] and "--agent" in h["command"]:
                    out.setdefault(event, []).append({**h, "matcher": g.get("matcher")})
    return out


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    home, proj = tmp_path / "home", tmp_path / "proj"
    home.mkdir()
    proj.mkdir()
    return home, proj


def test_claude_code_twice_then_remove(dirs: tuple[Path, Path]) -> None:
    home, proj = dirs
    settings, cj = home / ".claude" / "settings.json", home / ".claude.json"
    raw_settings, raw_cj = write(settings, OTHER_CLAUDE), write(cj, OTHER_CLAUDE_JSON)
    out = integ(home, proj, "claude-code")
    assert {c["action"] for c in out["changes"]} == {"updated"}
    assert any("trust" in s for s in out["manual_steps"])
    s = load(settings)
    mine = ours(s)
    assert set(mine) == {"SessionStart", "UserPromptSubmit", "Stop", "PreCompact",
                         "PostCompact", "SessionEnd"}
    assert all(1 <= h["timeout"] <= 60 for hs in mine.values() for h in hs)  # seconds
    assert mine["SessionStart"][0]["matcher"] == "startup|resume|clear|compact"
    assert all(h["command"].endswith("--agent claude-code") for hs in mine.values()
               for h in hs)
    # Everything that was there is still there, unchanged.
    for event, groups in OTHER_CLAUDE["hooks"].items():  # type: ignore[attr-defined]
        for g in groups:
            assert g in s["hooks"][event]
    assert s["model"] == "opus" and s["permissions"] == OTHER_CLAUDE["permissions"]
    c = load(cj)
    assert c["mcpServers"]["github"] == OTHER_CLAUDE_JSON["mcpServers"]["github"]  # type: ignore[index]
    assert c["mcpServers"]["db0"]["args"] == ["mcp"] and c["numStartups"] == 41
    # Backups hold what was there before.
    assert [b.read_bytes() for b in backups(settings)] == [raw_settings]
    assert [b.read_bytes() for b in backups(cj)] == [raw_cj]
    # Twice: nothing changes, no new backup.
    text = settings.read_text()
    out = integ(home, proj, "claude-code")
    assert {c["action"] for c in out["changes"]} == {"unchanged"}
    assert settings.read_text() == text and len(backups(settings)) == 1
    st = integ(home, proj, "status")["integrations"]
    row = next(r for r in st if r["agent"] == "claude-code" and r["scope"] == "user")
    assert row["mcp"] == "yes" and len(row["hooks"]) == 6
    # --remove takes exactly db0's entries out.
    out = integ(home, proj, "claude-code", "--remove")
    assert {c["action"] for c in out["changes"]} == {"removed"}
    assert load(settings) == OTHER_CLAUDE and load(cj) == OTHER_CLAUDE_JSON
    out = integ(home, proj, "claude-code", "--remove")
    assert {c["action"] for c in out["changes"]} == {"unchanged"}


def test_installed_command_runs(dirs: tuple[Path, Path]) -> None:
    home, proj = dirs
    integ(home, proj, "claude-code")
    cmd = load(home / ".claude" / "settings.json")["hooks"]["Stop"][0]["hooks"][0]["command"]
    env = {**os.environ, "HOME": str(home), "DB0_HOME": str(home / "db0")}
    p = subprocess.run(["sh", "-c", cmd], input=b'{"session_id": "x", "cwd": "/tmp"}',
                       env=env, capture_output=True, timeout=60, cwd=proj)
    assert p.returncode == 0 and p.stdout == b"" and b"Traceback" not in p.stderr
    # The hook started a daemon in the background without waiting: let it come up before
    # stopping it, or it outlives the test.
    deadline = time.monotonic() + 60
    while run(home, proj, "daemon", "status").code != 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    run(home, proj, "daemon", "stop")


def test_codex_hooks_and_toml(dirs: tuple[Path, Path]) -> None:
    home, proj = dirs
    hooks, toml = home / ".codex" / "hooks.json", home / ".codex" / "config.toml"
    write(hooks, OTHER_CODEX_HOOKS)
    raw_toml = write(toml, OTHER_CODEX_TOML)
    out = integ(home, proj, "codex")
    assert any("/hooks" in s and "trust" in s for s in out["manual_steps"])
    h = load(hooks)
    mine = ours(h)
    assert set(mine) == {"SessionStart", "UserPromptSubmit", "Stop", "PreCompact",
                         "PostCompact", "SessionEnd"}  # Codex 0.171 has SessionEnd
    assert "fork" in mine["SessionStart"][0]["matcher"].split("|")  # codex exec fork ID
    assert all(h["timeout"] <= 60 for hs in mine.values() for h in hs)
    assert OTHER_CODEX_HOOKS["hooks"]["Stop"][0] in h["hooks"]["Stop"]
    import tomllib

    text = toml.read_text()
    assert text.startswith(OTHER_CODEX_TOML)  # appended: comments and order kept
    doc = tomllib.loads(text)
    assert doc["mcp_servers"]["db0"]["args"] == ["mcp"]
    assert doc["mcp_servers"]["github"]["command"] == "gh-mcp"
    out = integ(home, proj, "codex")
    assert {c["action"] for c in out["changes"]} == {"unchanged"} and toml.read_text() == text
    integ(home, proj, "codex", "--remove")
    assert toml.read_bytes() == raw_toml
    assert load(hooks) == OTHER_CODEX_HOOKS


def test_gemini_milliseconds_and_one_file(dirs: tuple[Path, Path]) -> None:
    home, proj = dirs
    s = home / ".gemini" / "settings.json"
    write(s, OTHER_GEMINI)
    integ(home, proj, "gemini")
    data = load(s)
    mine = ours(data)
    assert set(mine) == {"SessionStart", "BeforeAgent", "AfterAgent", "PreCompress",
                         "SessionEnd"}
    assert all(h["timeout"] >= 1000 for hs in mine.values() for h in hs)  # milliseconds
    # Gemini compares lifecycle matchers as exact strings: "startup|resume|clear" matches none.
    assert mine["SessionStart"][0]["matcher"] is None
    assert all(h["name"].startswith("db0-") for hs in mine.values() for h in hs)
    assert data["mcpServers"]["db0"] == {"command": data["mcpServers"]["db0"]["command"],
                                         "args": ["mcp"]}
    assert data["mcpServers"]["fs"] == {"command": "fs-mcp"} and data["theme"] == "GitHub"
    assert len(backups(s)) == 1  # hooks and MCP in one file: one write, one backup
    integ(home, proj, "gemini", "--remove")
    assert load(s) == OTHER_GEMINI


def test_project_scope_and_dry_run(dirs: tuple[Path, Path]) -> None:
    home, proj = dirs
    out = integ(home, proj, "claude-code", "--project", "--dry-run")
    assert {c["action"] for c in out["changes"]} == {"created"}
    assert not (proj / ".claude").exists() and not (proj / ".mcp.json").exists()
    integ(home, proj, "claude-code", "--project")
    assert ours(load(proj / ".claude" / "settings.json"))
    assert load(proj / ".mcp.json")["mcpServers"]["db0"]["args"] == ["mcp"]
    assert not (home / ".claude").exists()  # the user's settings were not touched
    r = run(home, proj, "integrate", "claude-code", "--user", "--project")
    assert r.code == 2


def test_malformed_settings_refused_untouched(dirs: tuple[Path, Path]) -> None:
    home, proj = dirs
    settings = home / ".claude" / "settings.json"
    raw = write(settings, '{"hooks": {"Stop": [ }')
    r = run(home, proj, "integrate", "claude-code")
    assert r.code == 1 and "not valid JSON" in r.err and "line 1" in r.err
    assert "Traceback" not in r.err and len(r.err.strip().splitlines()) == 1
    assert settings.read_bytes() == raw and not backups(settings)
    assert not (home / ".claude.json").exists()  # nothing else written either
    write(settings, {"hooks": []})
    r = run(home, proj, "integrate", "claude-code")
    assert r.code == 1 and "not an object" in r.err
    toml = home / ".codex" / "config.toml"
    raw = write(toml, "model = = 'x'\n")
    r = run(home, proj, "integrate", "codex")
    assert r.code == 1 and "not valid TOML" in r.err
    assert toml.read_bytes() == raw and not (home / ".codex" / "hooks.json").exists()


def test_a_db0_entry_not_ours_is_left_alone(dirs: tuple[Path, Path]) -> None:
    home, proj = dirs
    cj = home / ".claude.json"
    theirs = {"mcpServers": {"db0": {"command": "npx", "args": ["some-other-db0"]}}}
    write(cj, theirs)
    out = integ(home, proj, "claude-code")
    mcp = next(c for c in out["changes"] if c["what"] == "mcp")
    assert mcp["action"] == "unchanged" and "did not write" in mcp["note"]
    assert load(cj) == theirs
    integ(home, proj, "claude-code", "--remove")
    assert load(cj) == theirs


def test_mcp_target_registers_where_agents_live(dirs: tuple[Path, Path]) -> None:
    home, proj = dirs
    (home / ".codex").mkdir()
    (home / ".gemini").mkdir()
    out = integ(home, proj, "mcp")
    files = {Path(c["file"]).name for c in out["changes"] if c["action"] == "created"}
    assert files == {"config.toml", "settings.json"}
    assert not (home / ".claude.json").exists() and not (home / ".claude").exists()
    assert not (home / ".gemini" / "settings.json").read_text().count("hook")
    st = {(r["agent"], r["scope"]): r for r in integ(home, proj, "status")["integrations"]}
    assert st[("codex", "user")]["mcp"] == "yes" and st[("gemini", "user")]["mcp"] == "yes"
    assert st[("claude-code", "user")]["mcp"] == "no"
    integ(home, proj, "mcp", "--remove")  # db0 created both: nothing else in them, deleted
    assert not (home / ".codex" / "config.toml").exists()
    assert not (home / ".gemini" / "settings.json").exists()


def test_bad_target_and_git(dirs: tuple[Path, Path]) -> None:
    home, proj = dirs
    r = run(home, proj, "integrate", "vim")
    assert r.code == 2 and "TARGET" in r.err
    if importlib.util.find_spec("db0.cli.gitcapture") is None:
        r = run(home, proj, "integrate", "git")
        assert r.code == 5 and "git capture" in r.err


# -- how the files are written (settingsfile, settingsio) -----------------------------------

def test_layout_kept_and_remove_gives_back_the_same_bytes(dirs: tuple[Path, Path]) -> None:
    home, proj = dirs
    settings, cj = home / ".claude" / "settings.json", home / ".claude.json"
    tabs_crlf = json.dumps(OTHER_CLAUDE, indent="\t").replace("\n", "\r\n")  # no final newline
    raw_settings, raw_cj = write(settings, tabs_crlf), write(cj, OTHER_CLAUDE_JSON)  # 4 spaces
    integ(home, proj, "claude-code")
    text = settings.read_bytes().decode()
    assert text.count("\n") == text.count("\r\n") and not text.endswith("\n")
    assert all(not line.startswith(" ") for line in text.split("\r\n"))  # tabs, as it was
    assert ours(json.loads(text)) and text.startswith(tabs_crlf[:tabs_crlf.index('"hooks"')])
    c = cj.read_text()
    assert '\n    "mcpServers": {\n        "github": {' in c  # 4 spaces, not re-indented
    assert '\n        "db0": {\n            "type": "stdio",' in c
    integ(home, proj, "claude-code", "--remove")
    assert settings.read_bytes() == raw_settings and cj.read_bytes() == raw_cj


def test_files_db0_created_are_deleted_by_remove(dirs: tuple[Path, Path]) -> None:
    home, proj = dirs
    integ(home, proj, "claude-code")
    settings, cj = home / ".claude" / "settings.json", home / ".claude.json"
    assert settings.exists() and cj.exists()
    data = load(cj)  # Claude Code writes its own state into the file db0 created
    cj.write_text(json.dumps({"numStartups": 1, **data}, indent=2))
    out = integ(home, proj, "claude-code", "--remove", "--dry-run")
    would = next(c for c in out["changes"] if c["file"] == str(settings))
    assert "would be deleted" in would["note"] and settings.exists()
    out = integ(home, proj, "claude-code", "--remove")
    assert not settings.exists() and not backups(settings)
    assert load(cj) == {"numStartups": 1}  # not db0's alone any more: kept
    gone = next(c for c in out["changes"] if c["file"] == str(settings))
    assert gone["action"] == "removed" and "deleted" in gone["note"]


def test_gemini_settings_with_comments(dirs: tuple[Path, Path]) -> None:
    home, proj = dirs
    s = home / ".gemini" / "settings.json"
    jsonc = ('{\n  // my theme\n  "theme": "GitHub", /* for now */\n  "mcpServers": {\n'
             '    "fs": {"command": "fs-mcp"} // local files\n  }\n}\n')
    raw = write(s, jsonc)
    integ(home, proj, "gemini")
    text = s.read_text()
    assert text.startswith('{\n  // my theme\n  "theme": "GitHub", /* for now */\n')
    assert '"fs": {"command": "fs-mcp"}, // local files\n    "db0": {' in text
    st = {(r["agent"], r["scope"]): r for r in integ(home, proj, "status")["integrations"]}
    assert st[("gemini", "user")]["mcp"] == "yes" and len(st[("gemini", "user")]["hooks"]) == 5
    integ(home, proj, "gemini", "--remove")
    assert s.read_bytes() == raw
    # Claude Code rejects comments in its settings: db0 refuses them there, saying where.
    cs = home / ".claude" / "settings.json"
    write(cs, '{\n  // no\n  "model": "opus"\n}\n')
    r = run(home, proj, "integrate", "claude-code")
    assert r.code == 1 and "line 2, column 3" in r.err and "comment" in r.err


def test_one_backup_per_file(dirs: tuple[Path, Path]) -> None:
    home, proj = dirs
    settings = home / ".claude" / "settings.json"
    write(settings, OTHER_CLAUDE)
    for _ in range(3):
        before = settings.read_bytes()
        integ(home, proj, "claude-code")
        integ(home, proj, "claude-code", "--remove")
        assert before == settings.read_bytes()
    assert backups(settings) == [settings.with_name("settings.json.db0-backup")]
    assert ours(load(backups(settings)[0]))  # what the last write replaced


def test_codex_toml_crlf_without_final_newline(dirs: tuple[Path, Path]) -> None:
    home, proj = dirs
    toml = home / ".codex" / "config.toml"
    raw = write(toml, OTHER_CODEX_TOML.rstrip("\n").replace("\n", "\r\n"))
    integ(home, proj, "codex")
    text = toml.read_bytes().decode()
    assert text.startswith(raw.decode()) and text.count("\n") == text.count("\r\n")
    out = integ(home, proj, "codex")
    mcp = next(c for c in out["changes"] if c["what"] == "mcp")
    assert mcp["action"] == "unchanged" and toml.read_bytes().decode() == text
    integ(home, proj, "codex", "--remove")
    assert toml.read_bytes() == raw

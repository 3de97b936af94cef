"""`db0 mcp` through the SDK's own client over stdio, against a real daemon; and Claude Code.

One daemon serves the module (its DB0_HOME made here); each test starts its own `db0 mcp`
process, as an MCP client would.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import DB0, Db0, _wait_dead, daemon_pids

from db0.cli import mcpserver

TOOLS = {"remember", "recall", "pack", "forget", "history", "checkpoint"}
READS = {"recall", "pack", "history"}


@pytest.fixture(scope="module")
def shared() -> Iterator[Db0]:
    with tempfile.TemporaryDirectory(prefix="db0m", dir="/tmp") as d:
        db0 = Db0(Path(d))
        db0.run("daemon", "start")
        try:
            yield db0
        finally:
            db0.stop()
            for pid in daemon_pids(Path(d)):
                os.kill(pid, signal.SIGTERM)
                _wait_dead(pid, 20)


@asynccontextmanager
async def session(db0: Db0, *flags: str, env: dict[str, str] | None = None
                  ) -> AsyncIterator[Any]:
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    keep = {k: os.environ[k] for k in ("PATH", "PYTHONPATH") if k in os.environ}
    params = StdioServerParameters(command=DB0, args=["mcp", *flags],
                                   env={**keep, "DB0_HOME": str(db0.home), **(env or {})})
    async with Client(params, read_timeout_seconds=60) as client:
        yield client


def run(fn: Callable[[], Awaitable[Any]]) -> Any:
    return anyio.run(fn)


def text(result: Any) -> str:
    assert result.content, result
    return "".join(c.text for c in result.content if getattr(c, "type", "") == "text")


def ok(result: Any) -> Any:
    assert not result.is_error, text(result)
    body = text(result)
    try:
        return json.loads(body)
    except ValueError:
        return body


def test_lists_and_calls_every_tool(shared: Db0) -> None:
    async def main() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with session(shared, "--session", "mcp-s1") as c:
            tools = {t.name: t for t in (await c.list_tools()).tools}
            out["tools"] = tools
            first = ok(await c.call_tool("remember", {
                "content": "The deploy target is the fly.io app stellar-owl", "key": "deploy",
                "tags": ["ops"]}))
            second = ok(await c.call_tool("remember", {
                "content": "The deploy target moved to the hetzner box nebula-7",
                "key": "deploy", "tags": ["ops"], "reason": "migrated"}))
            out["remember"] = (first, second)
            out["recall"] = ok(await c.call_tool("recall", {"query": "deploy target",
                                                             "limit": 5}))
            out["recall_old"] = ok(await c.call_tool("recall", {
                "query": "deploy target", "include_superseded": True}))
            out["pack"] = ok(await c.call_tool("pack", {"query": "where do we deploy",
                                                         "budget": 300}))
            out["history"] = ok(await c.call_tool("history", {"id": second["id"]}))
            out["checkpoint"] = ok(await c.call_tool("checkpoint", {
                "label": "before-migration", "state": {"plan": ["dump", "restore"]}}))
            out["forget"] = ok(await c.call_tool("forget", {"id": second["id"],
                                                             "reason": "wrong"}))
            out["after"] = ok(await c.call_tool("recall", {"query": "nebula hetzner"}))
            out["missing"] = await c.call_tool("forget", {"id": "0nosuchmemory000000000000"})
            out["bad"] = await c.call_tool("recall", {"query": "x", "limit": 0})
            res = await c.read_resource(f"db0://memory/{first['id']}")
            out["resource"] = json.loads(res.contents[0].text)
            out["prompt"] = await c.get_prompt("prime", {"topic": "deploy"})
        return out

    out = run(main)
    tools = out["tools"]
    assert set(tools) == TOOLS
    for name, tool in tools.items():
        assert tool.description and "\n    " not in tool.description, name
        assert tool.annotations.read_only_hint is (name in READS), name
    assert tools["forget"].annotations.destructive_hint is True

    first, second = out["remember"]
    assert first["status"] == "stored" and second["superseded"] == first["id"]
    ids = [r["id"] for r in out["recall"]["results"]]
    assert ids and ids[0] == second["id"] and first["id"] not in ids
    assert first["id"] in [r["id"] for r in out["recall_old"]["results"]]
    assert "nebula-7" in out["pack"] and "stellar-owl" not in out["pack"]
    assert [v["id"] for v in out["history"]["versions"]] == [first["id"], second["id"]]
    cp = out["checkpoint"]
    assert cp["id"].startswith("c") and cp["session"] == "mcp-s1"
    assert out["forget"] == {"id": second["id"], "status": "forgotten"}
    assert second["id"] not in [r["id"] for r in out["after"]["results"]]
    assert out["missing"].is_error and "to fix" in text(out["missing"])
    assert out["bad"].is_error
    assert out["resource"]["id"] == first["id"] and "stellar-owl" in out["resource"]["content"]
    prompt = out["prompt"].messages[0].content.text
    assert "deploy" in prompt

    # What the tools wrote is what the CLI sees: the context came from `db0 mcp --session`.
    shown = shared.json("show", first["id"])
    assert shown["tags"] == ["ops"] and shown["scope"] == "user"
    assert shown["session"] == "mcp-s1"  # where it was said
    cps = shared.json("checkpoint", "list", "--session", "mcp-s1")["checkpoints"]
    assert [c["label"] for c in cps] == ["before-migration"]
    state = shared.json("checkpoint", "show", cp["id"])["state"]
    assert state == {"plan": ["dump", "restore"]}


def test_context_flags_then_environment(shared: Db0) -> None:
    """`db0 mcp --agent A` beats DB0_AGENT in the server's environment, which beats nothing."""
    async def remember(flags: tuple[str, ...], env: dict[str, str], content: str) -> str:
        async with session(shared, *flags, env=env) as c:
            res = ok(await c.call_tool("remember", {"content": content, "scope": "agent"}))
            return str(res["id"])

    async def main() -> tuple[str, str]:
        env = {"DB0_AGENT": "env-agent", "DB0_USER": "ada"}
        a = await remember(("--agent", "flag-agent"), env, "flags win over the environment")
        b = await remember((), env, "the environment fills in what flags leave out")
        return a, b

    a, b = run(main)
    shown_a, shown_b = shared.json("show", a), shared.json("show", b)
    assert (shown_a["agent"], shown_a["user"]) == ("flag-agent", "ada")
    assert (shown_b["agent"], shown_b["user"]) == ("env-agent", "ada")


def test_secrets_are_redacted_and_reported(shared: Db0) -> None:
    token = "ghp_" + "Zq8Xw7Vu6Ts5Rq4Po3Nm2Lk1Jh0Gf9Ed8Cb7A6z"

    async def main() -> tuple[Any, Any]:
        async with session(shared, "--session", "mcp-secret") as c:
            mem = ok(await c.call_tool("remember", {
                "content": f"CI uses {token} <private>and my salary is 99k</private>"}))
            cp = ok(await c.call_tool("checkpoint", {"label": "secret",
                                                     "state": {"env": f"GH={token}"}}))
            return mem, cp

    mem, cp = run(main)
    assert mem["redacted"] == {"github-token": 1, "private": 1}
    assert cp["redacted"] == {"github-token": 1}
    content = shared.json("show", mem["id"])["content"]
    assert token not in content and "[REDACTED:github-token]" in content
    assert "salary" not in content
    state = json.dumps(shared.json("checkpoint", "show", cp["id"])["state"])
    assert token not in state and "REDACTED" in state
    files = [*(shared.home / "data").glob("db0.sqlite3*"), *(shared.home / "logs").glob("*")]
    blob = b"".join(p.read_bytes() for p in files if p.is_file())
    assert token.encode() not in blob and b"salary is 99k" not in blob


def test_answers_stay_under_the_token_limit(shared: Db0) -> None:
    words = ["granite", "harbour", "lantern", "meadow", "orchard", "pebble", "quarry",
             "ribbon", "saddle", "thimble", "walnut", "zephyr"]
    lines = [json.dumps({"content": f"bulky note {i}: " + " ".join(
        words[(i + j) % len(words)] for j in range(700)), "tags": ["bulky"]})
        for i in range(40)]
    shared.run("import", "-", input="\n".join(lines))
    huge = shared.json("remember", "-", input="colossal " + "abcdefgh " * 6500)["id"]

    async def main() -> dict[str, Any]:
        async with session(shared) as c:
            return {
                "recall": text(await c.call_tool("recall", {"query": "bulky note granite",
                                                            "limit": 40})),
                "huge": text(await c.call_tool("recall", {"query": "colossal", "limit": 1})),
                "pack": text(await c.call_tool("pack", {"query": "bulky note",
                                                        "budget": 50000})),
                "resource": (await c.read_resource(f"db0://memory/{huge}")).contents[0].text,
            }

    out = run(main)
    for name, body in out.items():
        assert mcpserver.count_tokens(body) <= mcpserver.MAX_TOKENS, name
    rec = json.loads(out["recall"])
    assert 0 < len(rec["results"]) < 40 and "more left out" in rec["truncated"]
    one = json.loads(out["huge"])["results"][0]
    assert one["id"] == huge and one["content"].endswith("tokens]")
    assert out["pack"].startswith("[db0: budget lowered from 50000")
    assert "bulky note" in out["pack"]
    assert "cut to stay under" in out["resource"]


def test_reconnects_after_the_daemon_restarts(shared: Db0) -> None:
    async def main() -> tuple[Any, Any]:
        async with session(shared) as c:
            before = ok(await c.call_tool("remember", {"content": "survives a restart"}))
            await anyio.to_thread.run_sync(lambda: shared.run("daemon", "restart"))
            after = ok(await c.call_tool("recall", {"query": "survives restart"}))
            return before, after

    before, after = run(main)
    assert before["id"] in [r["id"] for r in after["results"]]


def test_a_daemon_the_server_started_restarts_at_once(db0: Db0) -> None:
    """With no daemon running, `db0 mcp` starts one: its child. Stopped, that daemon is a
    process its parent has not reaped yet, which is not a running daemon: `db0 daemon
    restart` returns at once, and the server reaps it at its next call (it reconnects)."""
    def proc_state(pid: int) -> str | None:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return None

    async def main() -> tuple[int | None, Any, float, str | None]:
        async with session(db0) as c:
            ok(await c.call_tool("remember", {"content": "before the restart"}))
            first = db0.daemon_pid()
            t = time.monotonic()
            res = await anyio.to_thread.run_sync(
                lambda: db0.run("daemon", "restart", check=False, timeout=60))
            took = time.monotonic() - t
            ok(await c.call_tool("remember", {"content": "after the restart"}))
            return first, res, took, proc_state(first) if first else "?"

    first, res, took, state = run(main)
    assert first and res.code == 0, res.err
    assert took < 10, took
    assert state is None, state  # reaped, not left a zombie
    assert db0.daemon_pid() not in (None, first)


def test_answers_are_cut_within_the_limit() -> None:
    cut = mcpserver.cut("word " * 20000, 500, "text")
    assert mcpserver.count_tokens(cut) <= 500 and cut.endswith("500 tokens]")
    assert mcpserver.cut("short", 500) == "short"


def test_wrong_arguments_are_said_with_the_fix(shared: Db0) -> None:
    async def main() -> tuple[Any, ...]:
        async with session(shared) as c:
            bad_type = await c.call_tool("recall", {"query": "x", "limit": "many"})
            missing = await c.call_tool("remember", {"scope": "user"})
            prime = await c.get_prompt("prime", {"topic": "deploy", "budget": "lots"})
            alive = ok(await c.call_tool("recall", {"query": "deploy"}))
        return bad_type, missing, prime, alive

    bad_type, missing, prime, alive = run(main)
    for r in (bad_type, missing):
        body = text(r)
        assert r.is_error and "to fix" in body and "pydantic" not in body, body
        assert len(body.splitlines()) == 1, body
    assert "limit" in text(bad_type) and "content" in text(missing)
    assert "budget must be a whole number" in prime.messages[0].content.text
    assert "results" in alive


def test_help_and_other_commands_do_not_import_the_sdk(shared: Db0) -> None:
    from test_imports import _loaded

    assert _loaded(["mcp", "--help"], shared.env) == []
    assert _loaded(["recall", "anything"], shared.env) == []


def test_missing_rpc_is_a_clear_tool_error() -> None:
    from db0.daemon.protocol import Db0Error

    msg = mcpserver._message("memory.pack", Db0Error("unknown_method", "unknown method"))
    assert "does not know memory.pack" in msg and "db0 daemon restart" in msg


CLAUDE_CACHE = Path(tempfile.gettempdir()) / "db0-test-cache" / "claude-code"


def _claude() -> Path:
    """Claude Code from npm, installed once into a cache under /tmp (skips when it cannot)."""
    exe = CLAUDE_CACHE / "node_modules" / ".bin" / "claude"
    if exe.exists():
        return exe
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed")
    CLAUDE_CACHE.mkdir(parents=True, exist_ok=True)
    try:
        p = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix",
                            str(CLAUDE_CACHE), "@anthropic-ai/claude-code"],
                           capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        pytest.skip("npm install @anthropic-ai/claude-code took over 300 s")
    if p.returncode != 0 or not exe.exists():
        pytest.skip(f"npm install @anthropic-ai/claude-code failed (registry unreachable?): "
                    f"{(p.stderr or p.stdout).strip().splitlines()[-1:]}")
    return exe


def test_claude_code_connects(shared: Db0, tmp_path: Path) -> None:
    claude = _claude()
    home, project = tmp_path / "home", tmp_path / "project"
    project.mkdir(parents=True)
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DB0_", "CLAUDE"))}
    env.update(HOME=str(home), DB0_HOME=str(shared.home), DISABLE_AUTOUPDATER="1",
               CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1")

    def claude_run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(claude), *args], cwd=project, env=env, capture_output=True,
                              text=True, timeout=120)

    added = claude_run("mcp", "add", "db0", "--", DB0, "mcp")
    assert added.returncode == 0, added.stderr + added.stdout
    # a server that cannot start, to show that `mcp list` tells the two apart
    assert claude_run("mcp", "add", "broken", "--", "/bin/false").returncode == 0
    listed = claude_run("mcp", "list")
    lines = {ln.split(":", 1)[0]: ln for ln in listed.stdout.splitlines() if ":" in ln}
    assert "Connected" in lines.get("db0", ""), listed.stdout + listed.stderr
    assert "Connected" not in lines.get("broken", "missing"), listed.stdout
    config = json.loads((home / ".claude.json").read_text())
    servers = config["projects"][str(project)]["mcpServers"]
    assert servers["db0"]["command"] == DB0 and servers["db0"]["args"] == ["mcp"]

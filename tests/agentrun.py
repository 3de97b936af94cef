"""The three coding agents, installed and run for tests: Claude Code, Codex CLI, Gemini CLI.

Each CLI is installed from npm at the version daemon/agents.py was checked against, once, into
a cache (`$DB0_AGENTS_CACHE`, default ~/.cache/db0-tests/agents/<pkg>@<version>), so reruns
start at once. Each run gets a private HOME, and an environment built from nothing (env -i
style) that points the agent at the stand-in model endpoint (tests/standin.py) and turns off
what would phone home: telemetry, update checks, non-essential traffic.

Run as a script it regenerates the hook and transcript fixtures from real runs:

    python tests/agentrun.py capture tests/fixtures/agents

(a hook that saves its stdin for every event db0 uses, one non-interactive session per agent,
paths sanitised to /home/user; see tests/fixtures/agents/README.md).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "build" / "pp"))  # this worktree's db0.*, when linked


def _table() -> dict[str, Any]:
    """daemon/agents.py's AGENTS: from db0 if importable, else from this checkout's file."""
    try:
        from db0.daemon.agents import AGENTS

        return dict(AGENTS)
    except ImportError:
        import importlib.util

        spec = importlib.util.spec_from_file_location("_agents", HERE.parent / "daemon"
                                                      / "agents.py")
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules["_agents"] = mod
        spec.loader.exec_module(mod)
        return dict(mod.AGENTS)


TABLE: dict[str, Any] = _table()
CACHE = Path(os.environ.get("DB0_AGENTS_CACHE")
             or Path.home() / ".cache" / "db0-tests" / "agents")
DUMMY_KEY = "standin-dummy-key"


@dataclass(frozen=True)
class Installed:
    agent: str
    package: str
    version: str
    bin: Path


class NotInstallable(Exception):
    """npm is missing or the registry is unreachable (a reason to skip, said once)."""


def install(agent: str) -> Installed:
    """The agent's CLI at its checked version, from the cache or npm (into the cache)."""
    spec = TABLE[agent]
    pkg, ver = spec.npm_package, spec.checked_version
    root = CACHE / f"{pkg.replace('/', '+')}@{ver}"
    binary = root / "node_modules" / ".bin" / spec.binary
    if not binary.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise NotInstallable("npm is not on PATH")
        root.mkdir(parents=True, exist_ok=True)
        p = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error",
                            "--prefix", str(root), f"{pkg}@{ver}"], capture_output=True,
                           text=True, timeout=600)
        if p.returncode != 0 or not binary.exists():
            raise NotInstallable(f"npm install {pkg}@{ver} failed: "
                                 f"{(p.stderr or p.stdout).strip()[-300:]}")
    return Installed(agent, pkg, ver, binary)


def base_env(home: Path, extra_path: list[str] | None = None) -> dict[str, str]:
    """A clean environment: a private HOME, PATH with node and the given folders."""
    node = shutil.which("node")
    dirs = [*(extra_path or []), *([str(Path(node).parent)] if node else []), "/usr/bin", "/bin"]
    path = ":".join(dict.fromkeys(dirs))
    return {"HOME": str(home), "PATH": path, "LANG": "C.UTF-8", "TERM": "dumb",
            "NO_COLOR": "1", "TMPDIR": os.environ.get("TMPDIR", "/tmp")}


def configure(agent: str, home: Path, url: str) -> dict[str, str]:
    """Point the agent in `home` at the stand-in at `url`; the env variables it needs.

    Written before `db0 integrate`, which then edits these files as it would a user's.
    """
    if agent == "claude-code":
        (home / ".claude").mkdir(parents=True, exist_ok=True)
        return {"ANTHROPIC_BASE_URL": url, "ANTHROPIC_API_KEY": DUMMY_KEY,
                # no update checks, no telemetry, no non-essential model calls
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1",
                "DISABLE_TELEMETRY": "1", "DISABLE_ERROR_REPORTING": "1"}
    if agent == "codex":
        d = home / ".codex"
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.toml").write_text(
            'model = "gpt-5.5"\nmodel_provider = "standin"\n'
            "check_for_update_on_startup = false\n\n[analytics]\nenabled = false\n\n"
            '[model_providers.standin]\nname = "standin"\n'
            f'base_url = "{url}/v1"\nwire_api = "responses"\nenv_key = "STANDIN_API_KEY"\n'
            "request_max_retries = 0\nstream_max_retries = 0\n")
        return {"STANDIN_API_KEY": DUMMY_KEY}
    if agent == "gemini":
        d = home / ".gemini"
        d.mkdir(parents=True, exist_ok=True)
        (d / "settings.json").write_text(json.dumps({
            "security": {"auth": {"selectedType": "gemini-api-key"}},
            "privacy": {"usageStatisticsEnabled": False},
            "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False},
        }, indent=2) + "\n")
        return {"GOOGLE_GEMINI_BASE_URL": url, "GEMINI_API_KEY": DUMMY_KEY,
                "GEMINI_CLI_TRUST_WORKSPACE": "true", "GEMINI_TELEMETRY_ENABLED": "false"}
    raise ValueError(agent)


def command(inst: Installed, prompt: str, extra: tuple[str, ...] = ()) -> list[str]:
    """One non-interactive session with one prompt (`extra` options before it)."""
    if inst.agent == "codex":
        # Codex runs user hooks only once trusted in its /hooks screen (trust is kept per
        # hook hash); automation that vetted them passes this flag instead.
        return [str(inst.bin), "exec", "--dangerously-bypass-hook-trust",
                "--skip-git-repo-check", *extra, prompt]
    return [str(inst.bin), *extra, "-p", prompt]


@dataclass
class Run:
    code: int
    out: str
    err: str
    seconds: float
    lines: list[tuple[float, str, str]]  # (seconds since start, "out"|"err", line) as read


def run(inst: Installed, prompt: str, cwd: Path, env: dict[str, str],
        timeout: float = 120, extra: tuple[str, ...] = ()) -> Run:
    """One session; each output line is timestamped as it arrives (hook latencies)."""
    import threading

    t0 = time.monotonic()
    p = subprocess.Popen(command(inst, prompt, extra), cwd=cwd, env=env,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, errors="replace")
    lines: list[tuple[float, str, str]] = []

    def pump(stream: Any, name: str) -> None:
        for line in stream:
            lines.append((time.monotonic() - t0, name, line.rstrip("\n")))

    threads = [threading.Thread(target=pump, args=(p.stdout, "out"), daemon=True),
               threading.Thread(target=pump, args=(p.stderr, "err"), daemon=True)]
    for t in threads:
        t.start()
    try:
        code = p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise
    for t in threads:
        t.join(5)
    return Run(code, "\n".join(x for _, n, x in lines if n == "out"),
               "\n".join(x for _, n, x in lines if n == "err"), time.monotonic() - t0, lines)


def hook_latencies(agent: str, r: Run) -> dict[str, int]:
    """Each hook's duration in ms as the agent reports it (options from LATENCY_OPTIONS)."""
    out: dict[str, int] = {}
    if agent == "gemini":  # --debug: "Hook execution for X: ... total duration: Nms"
        for m in re.finditer(r"Hook execution for (\w+): .*?total duration: (\d+)ms",
                             r.err + "\n" + r.out):
            out[m.group(1)] = int(m.group(2))
        return out
    started: dict[str, float] = {}
    for t, stream, line in r.lines:
        if agent == "claude-code" and stream == "out" and '"hook_' in line:
            try:  # stream-json with --include-hook-events: hook_started / hook_response
                ev = json.loads(line)
            except ValueError:
                continue
            if ev.get("subtype") == "hook_started":
                started[ev["hook_id"]] = t
            elif ev.get("subtype") == "hook_response" and ev.get("hook_id") in started:
                out[ev["hook_event"]] = round((t - started[ev["hook_id"]]) * 1000)
        elif agent == "codex" and stream == "err":  # "hook: X" ... "hook: X Completed"
            hm = re.match(r"hook: (\w+)( Completed)?$", line.strip())
            if hm and not hm.group(2):
                started[hm.group(1)] = t
            elif hm and hm.group(1) in started:
                out[hm.group(1)] = round((t - started[hm.group(1)]) * 1000)
    return out


# Options that make each agent report its hooks as they run (for hook_latencies).
LATENCY_OPTIONS = {
    "claude-code": ("--output-format", "stream-json", "--verbose", "--include-hook-events"),
    "codex": (),
    "gemini": ("--debug",),
}


def transcripts(agent: str, home: Path) -> list[Path]:
    """The transcript files the agent wrote under `home`."""
    pattern = {"claude-code": ".claude/projects/*/*.jsonl",
               "codex": ".codex/sessions/*/*/*/rollout-*.jsonl",
               "gemini": ".gemini/tmp/*/chats/session-*.json*"}[agent]
    return sorted(home.glob(pattern))


# -- capturing fixtures ---------------------------------------------------------------------

CAPTURE_HOOK = """#!/usr/bin/env python3
# Saves one hook call (its stdin, and the agent-set variables) for the fixtures.
import json, os, sys, time
data = sys.stdin.buffer.read()
env = {k: v for k, v in os.environ.items()
       if k.startswith(("CLAUDE", "CODEX", "GEMINI")) or k in ("PWD",)}
name = "%d-%s.json" % (time.time_ns(), sys.argv[1])
with open(os.path.join(os.environ["CAPTURE_DIR"], name), "w") as f:
    json.dump({"event": sys.argv[1], "stdin": json.loads(data or b"{}"), "env": env}, f)
if len(sys.argv) > 2:
    sys.stdout.write(sys.argv[2])
"""


def _capture_settings(agent: str, hook: Path) -> dict[str, Any]:
    spec = TABLE[agent]
    table: dict[str, Any] = {}
    for h in spec.hooks:
        # Codex's Stop must print JSON (an empty object will do).
        out = " '{}'" if agent == "codex" and h.db0_event == "turn-end" else ""
        handler: dict[str, Any] = {"type": "command", "command": f"{hook} {h.event}{out}",
                                   "timeout": 10 * (1000 if spec.timeout_unit == "ms" else 1)}
        if agent == "gemini":
            handler["name"] = f"capture-{h.event}"
        table[h.event] = [{"hooks": [handler]}]
    return {"hooks": table}


def sanitise(text: str, home: Path, cwd: Path) -> str:
    """Machine-specific paths out: the private home becomes /home/user, the project
    /home/user/proj (also as Claude Code spells it in a folder name)."""
    encoded = re.sub(r"[^A-Za-z0-9]", "-", str(cwd))
    text = text.replace(str(cwd), "/home/user/proj").replace(str(home), "/home/user")
    text = text.replace(encoded, "-home-user-proj")
    return text.replace(str(home.parent.parent), "/tmp/x")


def capture(out_dir: Path) -> None:
    import tempfile

    from standin import StandIn

    prompt = "I prefer tabs over spaces. What is the deploy target?"
    with StandIn() as standin, tempfile.TemporaryDirectory(prefix="agcap") as tmp:
        for agent, spec in TABLE.items():
            inst = install(agent)
            home = Path(tmp) / agent / "home"
            cwd = Path(tmp) / agent / "proj"
            cap = Path(tmp) / agent / "cap"
            for d in (home, cwd, cap):
                d.mkdir(parents=True)
            hook = Path(tmp) / "capture_hook.py"
            hook.write_text(CAPTURE_HOOK)
            hook.chmod(0o755)
            env = {**base_env(home), **configure(agent, home, standin.url),
                   "CAPTURE_DIR": str(cap)}
            settings = _capture_settings(agent, hook)
            path = home / spec.hooks_file
            old = json.loads(path.read_text()) if path.exists() else {}
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({**old, **settings}, indent=2))
            r = run(inst, prompt, cwd, env)
            if r.code != 0:
                raise SystemExit(f"{agent} exited {r.code}: {r.err[-2000:]}")
            dest = out_dir / agent
            dest.mkdir(parents=True, exist_ok=True)
            for f in dest.glob("hook-*.json"):
                f.unlink()
            for f in sorted(cap.iterdir()):
                d = json.loads(f.read_text())
                (dest / f"hook-{d['event']}.json").write_text(
                    sanitise(json.dumps(d["stdin"], indent=2, ensure_ascii=False), home, cwd)
                    + "\n")
            if agent == "codex":  # a forked session starts with source "fork"
                sid = next(json.loads(f.read_text())["stdin"]["session_id"]
                           for f in sorted(cap.iterdir()))
                for f in cap.iterdir():
                    f.unlink()
                r = run(inst, "And now?", cwd, env, extra=("fork", sid))
                start = next(json.loads(f.read_text()) for f in sorted(cap.iterdir())
                             if f.name.endswith("-SessionStart.json"))
                (dest / "hook-SessionStart-fork.json").write_text(sanitise(json.dumps(
                    start["stdin"], indent=2, ensure_ascii=False), home, cwd) + "\n")
            if agent == "claude-code":  # compaction: a few turns, then /compact
                sid = next(json.loads(f.read_text())["stdin"]["session_id"]
                           for f in sorted(cap.iterdir()))
                for text in ("Second question.", "Third question.", "Fourth question."):
                    run(inst, text, cwd, env, extra=("--resume", sid))
                for f in cap.iterdir():
                    f.unlink()
                run(inst, "/compact", cwd, env, extra=("--resume", sid))
                for f in sorted(cap.iterdir()):
                    d = json.loads(f.read_text())
                    name = {"PreCompact": "hook-PreCompact.json",
                            "PostCompact": "hook-PostCompact.json"}.get(d["event"])
                    if d["event"] == "SessionStart" and d["stdin"].get("source") == "compact":
                        name = "hook-SessionStart-compact.json"
                    if name:
                        (dest / name).write_text(sanitise(json.dumps(
                            d["stdin"], indent=2, ensure_ascii=False), home, cwd) + "\n")
            (dest / "hook-env.json").write_text(sanitise(json.dumps(
                sorted({k for f in cap.iterdir() for k in json.loads(f.read_text())["env"]}),
                indent=2), home, cwd) + "\n")
            for t in transcripts(agent, home)[:1]:
                (dest / f"transcript{''.join(t.suffixes)}").write_text(
                    sanitise(t.read_text(), home, cwd))
            (dest / "VERSION").write_text(f"{inst.package}@{inst.version}\n")
            print(f"{agent}: {len(list(cap.iterdir()))} hook calls, {r.seconds:.1f}s")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "capture":
        sys.path.insert(0, str(HERE))
        capture(Path(sys.argv[2]))
    else:
        raise SystemExit("usage: python tests/agentrun.py capture OUT_DIR")

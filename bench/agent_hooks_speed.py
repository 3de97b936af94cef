"""Issue 16's figure: per-agent hook latency, `db0 hook EVENT --agent AGENT` as a whole process
(start to exit, as the agent waits on it) against a warm daemon, for Claude Code, Codex and
Gemini CLI at session start, at a prompt and at the end of a turn, beside `python -c pass`
measured in the same run.

The home holds the default embedding model and `--size` memories (grown as bench/hook_speed.py
grows them: 500 embedded by the daemon, the rest noisy copies written through the store). Each
payload is the agent's own, captured from a real run (tests/fixtures/agents/AGENT/hook-EVENT.json,
the agent's event names from daemon/agents.py), with a new session id per session, this home's
project folder as cwd and a new prompt and reply each turn. One round is, for each agent in turn:
session start, prompt, turn end, then `python -c pass`; rounds repeat `--runs` times, so load
from other processes falls on every series alike.

For each agent and event: wall-time median and p95, the hook process's CPU seconds (user + system,
from wait4) and the daemon's CPU for the same call (from /proc, 10 ms ticks: a mean over the
runs), how many outputs injected db0 context, and how many outputs were not valid for the agent
(stdout must be empty or a JSON object; for events in the table's `json_required`, not plain text).
The load average is taken before and after.

Prints one JSON document. Usage: python bench/agent_hooks_speed.py [--size 10000] [--runs 40]
[--models DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from embed_recall_speed import DB0, QUERIES, TAILS, embed_speed, grow, stop  # noqa: E402

FIXTURES = HERE.parent / "tests" / "fixtures" / "agents"
AGENT_NAMES = ("claude-code", "codex", "gemini")
EVENTS = ("session-start", "prompt", "turn-end")
REPLIES = ("Done: the tests pass now.", "I updated the config and reran the build.",
           "The migration is written; it needs a review before it runs.",
           "Noted, I will use that from now on.")
TICK = os.sysconf("SC_CLK_TCK")


def agents_table() -> dict[str, Any]:
    from db0.daemon.agents import AGENTS

    return AGENTS


def templates() -> dict[tuple[str, str], dict[str, Any]]:
    """(agent, db0 event) -> the agent's captured payload for it, and its event name."""
    out = {}
    for name, agent in agents_table().items():
        if name not in AGENT_NAMES:
            continue
        for h in agent.hooks:
            if h.db0_event in EVENTS:
                f = FIXTURES / name / f"hook-{h.event}.json"
                out[(name, h.db0_event)] = {"event": h.event,
                                            "payload": json.loads(f.read_text())}
    return out


def cpu_of(pid: int) -> float:
    """A process's user + system CPU seconds so far."""
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TICK


def run(cmd: list[str], env: dict[str, str], stdin: bytes) -> tuple[float, float, int, bytes]:
    """Wall ms, CPU seconds of the process (user + system), exit code, stdout."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    p.stdin.write(stdin)  # type: ignore[union-attr]
    p.stdin.close()  # type: ignore[union-attr]
    out = p.stdout.read()  # type: ignore[union-attr]
    _, status, ru = os.wait4(p.pid, 0)
    ms = (time.perf_counter() - t) * 1000
    p.returncode = os.waitstatus_to_exitcode(status)
    return ms, ru.ru_utime + ru.ru_stime, p.returncode, out


def well_formed(out: bytes, event: str, json_required: tuple[str, ...]) -> bool:
    text = out.decode("utf-8", "replace").strip()
    if not text:
        return True
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return event not in json_required


def stats(ms: list[float], cpu: list[float], dcpu: list[float]) -> dict[str, Any]:
    s = sorted(ms)
    return {"median_ms": round(statistics.median(s), 1),
            "p95_ms": round(s[int(0.95 * (len(s) - 1))], 1),
            "cpu_s_median": round(statistics.median(cpu), 4),
            "daemon_cpu_s_mean": round(statistics.fmean(dcpu), 4), "n": len(s)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--models", help="a models folder to copy instead of installing")
    args = ap.parse_args()
    table = agents_table()
    tpl = templates()
    out: dict[str, Any] = {"cpus": os.cpu_count(), "runs": args.runs,
                           "load_average_before": os.getloadavg(),
                           "agents": {a: table[a].checked_version for a in AGENT_NAMES}}
    with tempfile.TemporaryDirectory(prefix="db0h", dir="/tmp") as home:
        env = {**os.environ, "DB0_HOME": home, "NO_COLOR": "1"}
        for var in ("DB0_USER", "DB0_AGENT", "DB0_SESSION", "DB0_TASK"):
            env.pop(var, None)
        (Path(home) / "config").mkdir(parents=True, exist_ok=True)
        (Path(home) / "config" / "config.toml").write_text(
            f"[embed]\nthreads = {int(os.environ.get('DB0_BENCH_THREADS', '2'))}\n")
        if args.models:
            shutil.copytree(args.models, Path(home) / "data" / "models")
        subprocess.run([DB0, "model", "install"], env=env, check=True, capture_output=True)
        project = Path(home) / "proj"
        project.mkdir()
        rng = random.Random(16)
        try:
            embed_speed(home, 500)
            stop(home)
            out["memories"] = grow(home, args.size, seed=args.size)
            subprocess.run([DB0, "daemon", "start"], env=env, check=True, capture_output=True)
            pid = int(json.loads(subprocess.run([DB0, "daemon", "status", "--json"], env=env,
                                                check=True, capture_output=True,
                                                text=True).stdout)["pid"])

            def payload(agent: str, event: str, session: str, prompt: str,
                        reply: str) -> bytes:
                t = tpl[(agent, event)]
                p = dict(t["payload"])
                p["session_id"] = session
                p["cwd"] = str(project)
                p["transcript_path"] = str(project / f"{session}.jsonl")
                a = table[agent]
                if event == "prompt":
                    p[a.prompt_field] = prompt
                if event == "turn-end":
                    p[a.last_message_field] = reply
                    if "prompt" in p:
                        p["prompt"] = prompt
                return json.dumps(p).encode()

            def one(agent: str, event: str, session: str, prompt: str, reply: str
                    ) -> tuple[float, float, float, bytes]:
                before = cpu_of(pid)
                ms, cpu, code, so = run([DB0, "hook", event, "--agent", agent], env,
                                        payload(agent, event, session, prompt, reply))
                if code != 0:
                    raise SystemExit(f"db0 hook {event} --agent {agent} exited {code}")
                return ms, cpu, cpu_of(pid) - before, so

            for agent in AGENT_NAMES:  # warm: the model loaded, pages cached
                for event in EVENTS:
                    one(agent, event, f"warm-{agent}", rng.choice(QUERIES), REPLIES[0])
            series: dict[tuple[str, str], list[tuple[float, float, float]]] = {
                k: [] for k in tpl}
            injected = {k: 0 for k in tpl}
            malformed = {k: 0 for k in tpl}
            base: list[tuple[float, float]] = []
            for i in range(args.runs):
                for agent in AGENT_NAMES:
                    session = str(uuid.UUID(int=rng.getrandbits(128)))
                    prompt = f"{rng.choice(QUERIES)} {rng.choice(TAILS)} {i}"
                    reply = rng.choice(REPLIES)
                    for event in EVENTS:
                        ms, cpu, dcpu, so = one(agent, event, session, prompt, reply)
                        series[(agent, event)].append((ms, cpu, dcpu))
                        injected[(agent, event)] += b"db0-context" in so
                        malformed[(agent, event)] += not well_formed(
                            so, tpl[(agent, event)]["event"], table[agent].json_required)
                ms, cpu, _, _ = run([sys.executable, "-c", "pass"], env, b"")
                base.append((ms, cpu))
            floor = statistics.median(b[0] for b in base)
            out["python_c_pass"] = {
                "median_ms": round(floor, 1),
                "p95_ms": round(sorted(b[0] for b in base)[int(0.95 * (len(base) - 1))], 1),
                "cpu_s_median": round(statistics.median(b[1] for b in base), 4)}
            out["hooks"] = {}
            for agent in AGENT_NAMES:
                out["hooks"][agent] = {}
                for event in EVENTS:
                    rows = series[(agent, event)]
                    st = stats([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])
                    st["ratio_to_python"] = round(st["median_ms"] / floor, 2)
                    st["agent_event"] = tpl[(agent, event)]["event"]
                    st["injected"] = injected[(agent, event)]
                    st["malformed_output"] = malformed[(agent, event)]
                    out["hooks"][agent][event] = st
            log = Path(home) / "logs" / "hooks.log"
            out["hooks_log_lines"] = len(log.read_text().splitlines()) if log.exists() else 0
        finally:
            stop(home)
    out["load_average_after"] = os.getloadavg()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

"""`db0 hook EVENT --agent claude-code|codex|gemini`: the one front door for agent hooks.

It runs at every prompt, so it is lean: no Typer, no rich, only the standard library and the
daemon's protocol and paths modules (the app sends `db0 hook …` here before building anything).

Fail-open, always: exit status 0, nothing on stdout but output that is well-formed for that agent
(or nothing), never a traceback. stdin is read up to MAX_STDIN bytes and for at most
STDIN_SECONDS; more, or something that is not a JSON object, is a malformed event, logged to
`<logs>/hooks.log` (`db0 doctor` shows the last ones) and otherwise ignored.

The event goes to the daemon through the one client (`daemon/client.py` `deliver`) with a
deadline that bounds the whole hook (BUDGET_S from its start): if the daemon does not answer in
time (stopped, frozen, overloaded), the request is spooled (`<data>/spool/`), a daemon is started
in the background if none runs, and the hook exits; the daemon replays the spool. Each event
carries an id, so one that reached the daemon and was also spooled is handled once.
"""

from __future__ import annotations

import os
import sys
import time

from db0.daemon import wirejson as json
from db0.daemon.agents import AGENTS, injecting
from db0.daemon.paths import Paths, get_paths

TYPE_CHECKING = False  # typing stays unloaded at run time: it is costly to import
if TYPE_CHECKING:
    from typing import Any

EVENTS = ("session-start", "prompt", "turn-end", "pre-compact", "post-compact", "session-end")
MAX_STDIN = 8 * 1024 * 1024
STDIN_SECONDS = 3.0
# The whole hook, from its start to its answer: an agent waits for it at every prompt, so a
# daemon that is slow to answer costs the prompt no more than this (the event is spooled).
BUDGET_S = 0.25


def _process_start() -> float:
    """When this process started, on the time.monotonic() clock: the interpreter's start and
    the CLI's imports come before this module's and count against the budget too. The module's
    import time when the start cannot be read (no /proc)."""
    now = time.monotonic()
    try:
        with open("/proc/self/stat", "rb") as f:
            start_ticks = int(f.read().rsplit(b")", 1)[1].split()[19])
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return now
    return now - min(max(age, 0.0), BUDGET_S)


_STARTED = _process_start()

USAGE = """Usage: db0 hook EVENT --agent AGENT

  The front door for agent hooks: reads the hook's JSON on stdin, hands the event to the
  db0 daemon, and prints what the agent should see (injected context) or nothing.
  Always exits 0 (fail-open); problems go to the hooks log (see: db0 doctor).

  EVENT   session-start | prompt | turn-end | pre-compact | post-compact | session-end
  AGENT   claude-code | codex | gemini

  Install it into an agent's settings with: db0 integrate claude-code|codex|gemini
  Set DB0_DISABLE=1 to turn it off for one session.
"""


class Malformed(Exception):
    """The event cannot be used (said once in the hooks log)."""


def _log(paths: Paths, agent: str, event: str, message: str) -> None:
    """One line in the hooks log: when, which hook, what went wrong (never memory text)."""
    try:
        from db0.daemon.paths import make_private_dir

        make_private_dir(paths.log_dir)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        line = f"{stamp} {agent or '?'} {event or '?'}: {message}\n"
        fd = os.open(paths.log_dir / "hooks.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode("utf-8", "replace"))
        finally:
            os.close(fd)
    except OSError:
        pass


def parse_args(argv: list[str]) -> tuple[str, str]:
    event = agent = ""
    it = iter(argv)
    for a in it:
        if a in ("-h", "--help"):
            raise SystemExit(USAGE)
        if a == "--agent":
            agent = next(it, "")
        elif a.startswith("--agent="):
            agent = a.split("=", 1)[1]
        elif a.startswith("-"):
            raise Malformed(f"unknown option {a}")
        elif not event:
            event = a
        else:
            raise Malformed(f"unexpected argument {a!r}")
    if event not in EVENTS:
        raise Malformed(f"unknown event {event!r} (one of {', '.join(EVENTS)})")
    if agent not in AGENTS:
        raise Malformed(f"unknown agent {agent!r} (one of {', '.join(sorted(AGENTS))})")
    return event, agent


def read_stdin(limit: int = MAX_STDIN, seconds: float = STDIN_SECONDS) -> bytes:
    """At most `limit` bytes of stdin, for at most `seconds`; Malformed beyond either."""
    try:
        fd = sys.stdin.fileno()
    except (AttributeError, ValueError, OSError):
        return b""
    if os.isatty(fd):
        return b""
    import select

    deadline = time.monotonic() + seconds
    buf = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Malformed(f"stdin was not closed within {seconds:g}s")
        try:
            ready, _, _ = select.select([fd], [], [], left)
        except (OSError, ValueError):
            ready = [fd]
        if not ready:
            continue
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return bytes(buf)
        buf += chunk
        if len(buf) > limit:
            raise Malformed(f"stdin is over {limit} bytes")


def _str(d: dict[str, Any], *names: str) -> str | None:
    """The first of these fields that is non-empty text, cleaned of what db0 cannot store
    (NUL bytes, lone surrogates)."""
    for n in names:
        v = d.get(n)
        if isinstance(v, str) and v:
            v = v.replace("\x00", "")
            return v.encode("utf-8", "replace").decode("utf-8") if _has_surrogate(v) else v
    return None


def _has_surrogate(v: str) -> bool:
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def normalise(agent: str, event: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The agent's hook JSON as db0's event data, by the field names the agents table gives
    for this agent."""
    a = AGENTS[agent]
    data: dict[str, Any] = {
        "session_id": _str(payload, a.session_id_field)
        or (os.environ.get(a.session_env) if a.session_env else None) or None,
        "cwd": _str(payload, a.cwd_field) or os.environ.get("CLAUDE_PROJECT_DIR")
        or os.environ.get("GEMINI_CWD") or os.getcwd(),
        "transcript_path": _str(payload, a.transcript_field),
        "hook_event_name": _str(payload, "hook_event_name"),
    }
    if event == "prompt":
        data["prompt"] = _str(payload, a.prompt_field)
    if event == "turn-end":
        data["last_message"] = _str(payload, a.last_message_field)
    if event == "post-compact" and a.summary_field:
        data["summary"] = _str(payload, a.summary_field)
    for name in ("source", "trigger", "reason", "model"):
        v = _str(payload, name)
        if v:
            data[name] = v
    return {k: v for k, v in data.items() if v is not None}


def _context(agent: str) -> dict[str, Any]:
    ctx = {"user": os.environ.get("DB0_USER") or None,
           "agent": os.environ.get("DB0_AGENT") or agent}
    return {k: v for k, v in ctx.items() if v}


def render(agent: str, event: str, text: str | None, hook_event_name: str | None) -> str:
    """What the agent reads on stdout: JSON it understands, or nothing (every agent takes an
    empty stdout; the events in the table's `json_required` take no plain text)."""
    name = injecting(agent).get(event)
    if text and name:
        return json.dumps({"hookSpecificOutput": {"hookEventName": hook_event_name or name,
                                                  "additionalContext": text}},
                          ensure_ascii=False)
    return ""


def run(argv: list[str]) -> str:
    """Handle one hook call; the text for stdout. Raises Malformed for unusable input."""
    event, agent = parse_args(argv)
    if os.environ.get("DB0_DISABLE", "") not in ("", "0"):
        return render(agent, event, None, None)
    raw = read_stdin()
    try:
        payload = json.loads(raw) if raw.strip() else {}
    except (ValueError, RecursionError) as e:
        raise Malformed(f"stdin is not JSON ({type(e).__name__})") from None
    if not isinstance(payload, dict):
        raise Malformed("stdin is not a JSON object")
    data = normalise(agent, event, payload)
    params = {"event_id": os.urandom(16).hex(), "agent": agent, "event": event, "data": data,
              "context": _context(agent), "inject": event in ("session-start", "prompt")}
    paths = get_paths()
    from db0.daemon.client import deliver
    from db0.daemon.protocol import Db0Error

    left = max(0.05, BUDGET_S - (time.monotonic() - _STARTED))
    try:
        result = deliver("hook.event", params, left, paths)
    except Db0Error as e:
        _log(paths, agent, event, f"daemon: {e.message}")
        return render(agent, event, None, data.get("hook_event_name"))
    if result is None:
        _log(paths, agent, event, "daemon not running or not answering in time: event spooled")
        return render(agent, event, None, data.get("hook_event_name"))
    text = result.get("inject") if isinstance(result, dict) else None
    return render(agent, event, text if isinstance(text, str) else None,
                  data.get("hook_event_name"))


def main(argv: list[str]) -> int:
    """Entry point from db0.cli.app: always 0."""
    out = ""
    try:
        out = run(argv)
    except SystemExit as e:  # --help
        if isinstance(e.code, str):
            sys.stdout.write(e.code)
        return 0
    except Malformed as e:
        agent = argv[argv.index("--agent") + 1] if "--agent" in argv[:-1] else ""
        event = next((a for a in argv if a in EVENTS), "")
        _log(get_paths(), agent, event, str(e))
        # Codex's Stop wants JSON even when we have nothing to say.
        out = ""
    except BaseException as e:  # never a traceback in the agent's face
        try:
            _log(get_paths(), "", "", f"hook failed: {type(e).__name__}: {e}")
        except Exception:
            pass
        if isinstance(e, KeyboardInterrupt):
            return 0
    if out:
        try:
            sys.stdout.write(out + "\n")
            sys.stdout.flush()
        except (BrokenPipeError, OSError):
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            except OSError:
                pass
    return 0

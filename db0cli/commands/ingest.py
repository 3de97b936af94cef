"""db0 ingest FILE|- --format claude-code|codex|messages: an existing transcript through the
hooks' capture pipeline (turns into a session, durable facts into user and agent scope).

Lines already taken (by uuid, or a digest of the line) are skipped, so ingesting a file twice
stores nothing new. `db0 ingest git [RANGE]` imports commits (db0cli/gitcapture.py).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from db0.cli import output
from db0.cli.options import AgentOpt, JsonOpt, UserOpt, context, read_source
from db0.cli.params import Annotated, Arg, Command, Opt, cmd
from db0.cli.rpc import client
from db0.daemon.protocol import Db0Error

FORMATS = ("auto", "claude-code", "codex", "gemini", "messages")
CHUNK = 8 * 1024 * 1024  # bytes of JSON lines per request (the frame limit is 32 MB)
MAX_DOCUMENT = 30 * 1024 * 1024  # a single JSON document cannot be split


def detect(data: bytes) -> str:
    """The transcript's format from its first lines."""
    head = data[:65536]
    if b'"response_item"' in head or b'"session_meta"' in head or b'"turn_context"' in head:
        return "codex"
    if b'"sessionId"' in head and (b'"uuid"' in head or b'"parentUuid"' in head):
        return "claude-code"
    return "messages"


def _chunks(data: bytes, size: int = CHUNK) -> list[bytes]:
    out = []
    start = 0
    while start < len(data):
        end = min(len(data), start + size)
        if end < len(data):
            nl = data.rfind(b"\n", start, end)
            end = nl + 1 if nl > start else data.find(b"\n", end) + 1 or len(data)
        out.append(data[start:end])
        start = end
    return out


def ingest(
    source: Annotated[str, Arg(help="A transcript file, '-' for stdin, or 'git' "
                                          "for commits.")],
    range_: Annotated[str | None, Arg(metavar="[RANGE]", help="With 'git': the "
                                                 "commits to ingest (e.g. main~20..main).")]
    = None,
    fmt: Annotated[str, Opt("--format", "-f", choices=FORMATS,
                            help="claude-code, codex, gemini, messages (JSON lines or an "
                                 "array of {role, content}), or auto.")]
    = "auto",
    session_id: Annotated[str | None, Opt("--session-id", help="The agent session "
                                                   "the transcript belongs to (else read from "
                                                   "it, or the file's path).")] = None,
    cwd: Annotated[str | None, Opt("--cwd", help="The project directory it was "
                                            "recorded in.")] = None,
    json_: JsonOpt = False,
    user: UserOpt = None, agent: AgentOpt = None,
) -> int:
    """Ingest an agent transcript: its turns into a session, durable facts into memory.

    Running it twice stores nothing new.

    \b
    Examples:
      db0 ingest ~/.claude/projects/x/1234.jsonl
      db0 ingest git main~50..main
      cat chat.json | db0 ingest - --format messages
    """
    if source == "git":
        from db0.cli import gitcapture

        rc: int = gitcapture.ingest(range_, json_)
        return rc
    if range_ is not None:
        raise Db0Error("bad_request", f"unexpected argument {range_!r} (a RANGE goes with "
                       "'git')", "db0 ingest git main~20..main, or db0 ingest FILE")
    data = read_source(source)
    if source == "-":
        src = "stdin:" + hashlib.sha256(data[: 1 << 20]).hexdigest()[:16]
    else:
        src = os.path.abspath(source)
    if fmt == "auto":
        fmt = detect(data)
    doc = data.lstrip()[:1] == b"[" or (fmt == "messages" and data.lstrip()[:1] == b"{"
                                         and data.count(b"\n", 0, 1 << 20) < 2)
    if doc and len(data) > MAX_DOCUMENT:
        raise Db0Error("too_large", f"{source} is one JSON document of {len(data)} bytes",
                       "write it as JSON lines (one message a line) to ingest it in parts")
    params: dict[str, Any] = {"format": fmt, "source": src,
                              "context": context(user, agent, None, None)}
    if session_id:
        params["session_id"] = session_id
    if cwd:
        params["cwd"] = os.path.abspath(cwd)
    total: dict[str, Any] = {"format": fmt, "source": src, "turns": 0, "new_turns": 0,
                             "stored": 0, "facts": 0, "duplicate": 0, "skipped_lines": 0}
    c = client()
    parts = [data] if doc else _chunks(data)
    with output.progress("ingesting", len(parts)) as bar:
        for part in parts:
            res = c.call("ingest.transcript",
                         {**params, "text": part.decode("utf-8", "replace")}, timeout=600)
            for k in ("turns", "new_turns", "stored", "facts", "duplicate", "skipped_lines"):
                total[k] += int(res.get(k) or 0)
            for k in ("session", "redacted"):
                if res.get(k):
                    total[k] = res[k]
            bar.advance(1)
    if json_:
        output.emit_json(total)
    else:
        output.notice(f"db0: ingested {output.count(total['turns'], 'turn')} from {source} "
                      f"({output.count(total['stored'], 'memory', 'memories')} stored, "
                      f"{total['facts']} of them facts; "
                      f"{total['turns'] - total['new_turns']} seen before)")
    return 0


COMMANDS: list[Command] = [
    cmd("ingest", ingest),
]

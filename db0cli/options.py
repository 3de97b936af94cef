"""Option types shared by every command (sqlite-utils' output_options), and input helpers."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from db0.daemon.protocol import Db0Error

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
UserOpt = Annotated[str | None, typer.Option("--user", help="User id (else DB0_USER, config, "
                                             "your login name).", rich_help_panel="Context")]
AgentOpt = Annotated[str | None, typer.Option("--agent", help="Agent name (else DB0_AGENT, "
                                              "config, 'default').")]
SessionOpt = Annotated[str | None, typer.Option("--session", help="Session id (else "
                                                "DB0_SESSION).")]
TaskOpt = Annotated[str | None, typer.Option("--task", help="Task id (else DB0_TASK).")]
ScopeOpt = Annotated[str, typer.Option("--scope", "-s", help="user, agent, session or task.")]
ScopesOpt = Annotated[list[str] | None, typer.Option(
    "--scope", "-s", help="Only these scopes (repeat); default: every scope you can see.")]
TagsOpt = Annotated[list[str] | None, typer.Option("--tag", "-t", help="Tag (repeat).")]
MetaOpt = Annotated[list[str] | None, typer.Option(
    "--meta", "-m", help="Metadata KEY=VALUE (repeat); a JSON value is parsed.")]


def context(user: str | None, agent: str | None, session: str | None,
            task: str | None) -> dict[str, Any]:
    from db0.cli.context import build

    return build(user, agent, session, task)


def parse_meta(pairs: list[str] | None) -> dict[str, Any]:
    import json

    out: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise Db0Error("bad_request", f"--meta {pair!r} is not KEY=VALUE",
                           "write it like --meta project=db0")
        k, v = pair.split("=", 1)
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out


def read_stdin_text(limit: int = 64 * 1024 * 1024) -> str:
    data = sys.stdin.buffer.read(limit + 1)
    if len(data) > limit:
        raise Db0Error("too_large", f"stdin is over {limit} bytes", "send less")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Db0Error("invalid", f"stdin is not valid UTF-8 (byte {e.start})",
                       "convert it first, e.g. iconv -t UTF-8") from None


def text_arg(words: list[str] | None) -> str:
    """TEXT given as words, '-' for stdin, or nothing with stdin piped."""
    if words == ["-"] or (not words and not sys.stdin.isatty()):
        return read_stdin_text()
    if not words:
        raise Db0Error("bad_request", "no text given", "pass TEXT, or '-' to read stdin")
    return " ".join(words)


def read_source(path: str) -> bytes:
    """A file's bytes, or stdin's for '-'."""
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise Db0Error("invalid", f"cannot read {path}: {e.strerror}",
                       "check the path") from None

"""Option declarations shared by every command (sqlite-utils' output_options), and input helpers.

Declarations are `db0cli/params.py` specs, so importing this module costs no Typer.
"""

from __future__ import annotations

import sys

from db0.cli.params import Annotated, Opt
from db0.daemon.protocol import Db0Error

TYPE_CHECKING = False  # typing stays unloaded at run time: it is costly to import
if TYPE_CHECKING:
    from typing import Any

SCOPES = ("user", "agent", "session", "task")

JsonOpt = Annotated[bool, Opt("--json", help="Print one JSON document.")]
UserOpt = Annotated[str | None, Opt("--user", param="context.user",
                                    help="User id (else DB0_USER, config, your login name).")]
AgentOpt = Annotated[str | None, Opt("--agent", param="context.agent",
                                     help="Agent name (else DB0_AGENT, config, 'default').")]
SessionOpt = Annotated[str | None, Opt("--session", param="context.session",
                                       help="Session id (else DB0_SESSION).")]
TaskOpt = Annotated[str | None, Opt("--task", param="context.task",
                                    help="Task id (else DB0_TASK).")]
ScopeOpt = Annotated[str, Opt("--scope", "-s", choices=SCOPES, help="Who sees it.")]
ScopesOpt = Annotated[list[str] | None, Opt(
    "--scope", "-s", choices=SCOPES, param="scopes",
    help="Only these scopes (repeat); default: every scope you can see.")]
TagsOpt = Annotated[list[str] | None, Opt("--tag", "-t", param="tags", help="Tag (repeat).")]
MetaOpt = Annotated[list[str] | None, Opt(
    "--meta", "-m", param="metadata",
    help="Metadata KEY=VALUE (repeat); a JSON value is parsed.")]
LimitOpt = Annotated[int, Opt("--limit", "-n", help="How many.")]


def context(user: str | None, agent: str | None, session: str | None,
            task: str | None) -> dict[str, Any]:
    from db0.cli.context import build

    return build(user, agent, session, task)


def parse_meta(pairs: list[str] | None) -> dict[str, Any]:
    from db0.daemon import wirejson as json

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
        code = "not_found" if isinstance(e, FileNotFoundError) else "invalid"
        raise Db0Error(code, f"cannot read {path}: {e.strerror}", "check the path") from None

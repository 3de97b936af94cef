"""db0 pack QUERY --budget N: the most useful memories that fit, ready to pipe into an agent."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from db0.cli import output
from db0.cli.options import (
    AgentOpt,
    JsonOpt,
    ScopesOpt,
    SessionOpt,
    TagsOpt,
    TaskOpt,
    UserOpt,
    context,
    read_stdin_text,
)
from db0.cli.rpc import call


def pack(
    query: Annotated[str, typer.Argument(help="What the context is for; '-' reads stdin.")],
    budget: Annotated[int, typer.Option("--budget", "-b", help="At most this many tokens "
                                        "(counted by the tokenizer the answer names).")] = 2000,
    fmt: Annotated[str, typer.Option("--format", "-f", help="md (default), json or xml.")]
    = "md",
    scope: ScopesOpt = None, tag: TagsOpt = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="As things were at this time "
                                              "(ISO 8601).")] = None,
    json_: JsonOpt = False,
    user: UserOpt = None, agent: AgentOpt = None, session: SessionOpt = None,
    task: TaskOpt = None,
) -> int:
    """Pack the memories most worth their tokens for QUERY within --budget tokens.

    Pinned memories first, then by relevance; near-repeats left out; grouped by scope, each
    line with its age and id. --format json prints {text, tokens, budget, tokenizer, items}.
    """
    if json_:
        fmt = "json"
    if fmt not in ("md", "json", "xml"):
        raise typer.BadParameter("use md, json or xml", param_hint="--format")
    text = read_stdin_text() if query == "-" else query
    params = {"query": text, "budget": budget, "format": fmt, "scopes": scope or None,
              "tags": tag or [], "context": context(user, agent, session, task)}
    if as_of:
        params["as_of"] = as_of
    res = call("memory.pack", params)
    if fmt == "json":
        output.emit_json(res)
    else:
        sys.stdout.write(res["text"] + ("\n" if res["text"] else ""))
    return 0


def register(app: typer.Typer) -> None:
    app.command("pack")(pack)

"""db0 pack QUERY --budget N: the most useful memories that fit, ready to pipe into an agent."""

from __future__ import annotations

import sys

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
from db0.cli.params import Annotated, Arg, Command, Opt, cmd
from db0.cli.rpc import call


def pack(
    query: Annotated[str, Arg(help="What the context is for; '-' reads stdin.")],
    budget: Annotated[int, Opt("--budget", "-b", help="At most this many tokens "
                                        "(counted by the tokenizer the answer names).")] = 2000,
    fmt: Annotated[str, Opt("--format", "-f", choices=("md", "json", "xml"),
                            help="md (default), json or xml.")]
    = "md",
    scope: ScopesOpt = None, tag: TagsOpt = None,
    as_of: Annotated[str | None, Opt("--as-of", help="As things were at this time "
                                              "(ISO 8601).")] = None,
    json_: JsonOpt = False,
    user: UserOpt = None, agent: AgentOpt = None, session: SessionOpt = None,
    task: TaskOpt = None,
) -> int:
    """Pack the memories most worth their tokens for QUERY within --budget tokens.

    Pinned memories first, then by relevance; near-repeats left out; grouped by scope, each
    line with its age and id. --format json prints {text, tokens, budget, tokenizer, items}.

    \b
    Examples:
      db0 pack "$PROMPT" --budget 2000 | some-agent
      db0 pack deploy -b 500 --format xml
      echo "$PROMPT" | db0 pack - --json
    """
    if json_:
        fmt = "json"
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


COMMANDS: list[Command] = [
    cmd("pack", pack),
]

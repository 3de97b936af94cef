"""db0 mcp: serve db0's memory to MCP clients (Claude Code, Codex, Gemini CLI...) over stdio."""

from __future__ import annotations

from db0.cli.options import AgentOpt, SessionOpt, TaskOpt, UserOpt, context
from db0.cli.params import Annotated, Command, Opt, cmd
from db0.daemon.protocol import Db0Error


def mcp(
    user: UserOpt = None, agent: AgentOpt = None, session: SessionOpt = None,
    task: TaskOpt = None,
    print_tools: Annotated[bool, Opt("--list-tools", help="Print the tools, "
                                              "resources and prompts as JSON and exit.")]
    = False,
) -> int:
    """Run db0 as an MCP server on stdin/stdout (register: claude mcp add db0 -- db0 mcp).

    Tools: remember, recall, pack, forget, history, checkpoint; resources db0://memory/{id}
    and db0://pack/{query}; prompt prime. Context: these flags, then DB0_* in the server's
    environment. Logs go to stderr; stdout carries only the protocol.
    """
    try:
        import mcp.server

        from db0.cli import mcpserver
    except ImportError as e:  # the SDK missing or broken in this install
        raise Db0Error("unavailable", f"the MCP SDK cannot be imported ({e})",
                       "pip install 'mcp>=2,<3' into db0's environment") from None
    del mcp.server
    ctx = context(user, agent, session, task)
    if print_tools:
        mcpserver.print_tools(ctx)
        return 0
    mcpserver.serve(ctx)
    return 0


COMMANDS: list[Command] = [
    cmd("mcp", mcp),
]

"""`db0 hook` in the command list. The app hands `db0 hook …` to db0cli/hook.py before Typer is
built (agents run it at every prompt); this entry only makes it appear in `db0 --help`."""

from __future__ import annotations

from db0.cli.params import Annotated, Arg, Command, cmd


def hook(args: Annotated[list[str] | None, Arg(help="EVENT --agent AGENT",
                                               show_default=False)] = None) -> int:
    """Plumbing for agent hooks: db0 hook EVENT --agent claude-code|codex|gemini.

    Reads the hook's JSON on stdin, hands the event to the daemon, prints what the agent
    should see; always exits 0. Installed by `db0 integrate`.
    """
    from db0.cli.hook import main

    return main(list(args or []))


COMMANDS: list[Command] = [
    cmd("hook", hook, context_settings={"allow_extra_args": True,
                                        "ignore_unknown_options": True,
                                        "help_option_names": []}),
]

"""`db0 git capture`: the command the git hooks run (the app sends it to db0.cli.gitcapture
before Typer is built; this entry is here for `db0 --help` and `db0 git --help`)."""

from __future__ import annotations

from db0.cli.params import Annotated, Arg, Command, Opt, cmd


def capture(
    kind: Annotated[str | None, Arg(help="amend or rebase (post-rewrite); none for "
                                    "post-commit.", choices=("amend", "rebase"))] = None,
    background: Annotated[bool, Opt("--background", help="Return at once; capture "
                                             "in a child process.")] = False,
    json_: Annotated[bool, Opt("--json", help="Print what was captured as one JSON "
                                              "document.")] = False,
) -> int:
    """Capture HEAD, or the commits a rewrite made (pairs on stdin). Always exits 0."""
    from db0.cli.gitcapture import main

    return main([a for a in (kind, "--background" if background else None,
                             "--json" if json_ else None) if a])


COMMANDS: list[Command] = [
    cmd("git capture", capture),
]
GROUPS = {
    "git": "Git capture (installed with: db0 integrate git).",
}

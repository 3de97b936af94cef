"""`db0 git capture`: the command the git hooks run (the app sends it to db0.cli.gitcapture
before Typer is built; this entry is here for `db0 --help` and `db0 git --help`)."""

from __future__ import annotations

from typing import Annotated

import typer

git_app = typer.Typer(help="Git capture (installed with: db0 integrate git).",
                      no_args_is_help=True)


@git_app.command("capture")
def capture(
    kind: Annotated[str | None, typer.Argument(help="amend or rebase (post-rewrite); none for "
                                               "post-commit.")] = None,
    background: Annotated[bool, typer.Option("--background", help="Return at once; capture "
                                             "in a child process.")] = False,
) -> int:
    """Capture HEAD, or the commits a rewrite made (pairs on stdin). Always exits 0."""
    from db0.cli.gitcapture import main

    return main([a for a in (kind, "--background" if background else None) if a])


def register(app: typer.Typer) -> None:
    app.add_typer(git_app, name="git")

"""db0 link A B --type related|supports|contradicts|derived."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from db0.cli import output
from db0.cli.options import JsonOpt
from db0.cli.rpc import call


def link(
    a: Annotated[str, typer.Argument(help="The memory the link starts from.")],
    b: Annotated[str, typer.Argument(help="The memory it points to.")],
    type_: Annotated[str, typer.Option("--type", "-t", help="related, supports, contradicts "
                                       "or derived.")] = "related",
    json_: JsonOpt = False,
) -> int:
    """Link two memories; `show` lists links and `recall --expand` follows them."""
    res = call("memory.link", {"a": a, "b": b, "type": type_})
    if json_:
        output.emit_json(res)
    else:
        sys.stdout.write(f"{res['src']} -{res['type']}-> {res['dst']}\n")
    return 0


def register(app: typer.Typer) -> None:
    app.command("link")(link)

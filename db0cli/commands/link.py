"""db0 link A B --type related|supports|contradicts|derived."""

from __future__ import annotations

import sys

from db0.cli import output
from db0.cli.options import JsonOpt
from db0.cli.params import Annotated, Arg, Command, Opt, cmd
from db0.cli.rpc import call


def link(
    a: Annotated[str, Arg(help="The memory the link starts from.")],
    b: Annotated[str, Arg(help="The memory it points to.")],
    type_: Annotated[str, Opt("--type", "-t", help="related, supports, contradicts "
                                       "or derived.")] = "related",
    json_: JsonOpt = False,
) -> int:
    """Link two memories; `show` lists links and `recall --expand` follows them.

    \b
    Examples:
      db0 link 01m8v3kq5s 01m8v4aa2b --type supports
      db0 recall deploy --expand
    """
    res = call("memory.link", {"a": a, "b": b, "type": type_})
    if json_:
        output.emit_json(res)
    else:
        sys.stdout.write(f"{res['src']} -{res['type']}-> {res['dst']}\n")
    return 0


COMMANDS: list[Command] = [
    cmd("link", link),
]

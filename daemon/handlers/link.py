"""`memory.link`: connect two memories with a typed link."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from db0.daemon.handlers import rpc
from db0.daemon.protocol import Db0Error
from db0.store import links

if TYPE_CHECKING:
    from db0.daemon.server import Request, Server


@rpc("memory.link")
def link(srv: Server, req: Request) -> dict[str, Any]:
    a, b = req.params.get("a"), req.params.get("b")
    if not isinstance(a, str) or not isinstance(b, str) or not a or not b:
        raise Db0Error("bad_request", "two memory ids are required", "db0 link ID1 ID2")
    kind = str(req.params.get("type") or "related")
    return srv.write(lambda s: links.link(s, a, b, kind))

"""`memory.link`: connect two memories with a typed link."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from db0.daemon.core.shapes import P, Str
from db0.daemon.handlers import rpc
from db0.store import links

if TYPE_CHECKING:
    from db0.daemon.core.dispatch import Request
    from db0.daemon.core.runtime import Runtime

REF = Str(nonempty=True, max_len=200, strip=True)


@rpc("memory.link", {
    "a": P(REF, "a memory id", required=True),
    "b": P(REF, "another memory id", required=True),
    "type": P(Str(nonempty=True, max_len=64, strip=True), "the link's type", default="related"),
}, writes=True)
def link(rt: Runtime, req: Request) -> dict[str, Any]:
    """Link two memories (recall --expand follows links)."""
    a, b, kind = req.params["a"], req.params["b"], req.params["type"]
    return rt.write(lambda s: links.link(s, a, b, kind))

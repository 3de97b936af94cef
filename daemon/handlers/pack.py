"""`memory.pack`: context within a token budget (store/pack.py)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from db0.daemon.handlers import rpc
from db0.store import pack, search

if TYPE_CHECKING:
    from db0.daemon.server import Request, Server


@rpc("memory.pack")
def pack_(srv: Server, req: Request) -> dict[str, Any]:
    query = str(req.params.get("query") or "")
    budget = req.params.get("budget", 2000)
    fmt = str(req.params.get("format") or "md")
    filters = search.Filters.from_params(req.params)
    started = time.perf_counter()
    embedder = srv.components.get("embedder")
    qvec = embedder.query_vector(query) if embedder is not None and query.strip() else None
    with srv.reader() as store:
        out = pack.pack(store, req.ctx, query, budget, fmt, filters, qvec=qvec)
    out["took_ms"] = round((time.perf_counter() - started) * 1000, 3)
    return out

"""`memory.pack`: context within a token budget (store/pack.py)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from db0.daemon.core.shapes import Int, ListOf, OneOf, P, Str
from db0.daemon.handlers import rpc
from db0.daemon.handlers.memory import FILTERS, late, late_wanted
from db0.daemon.services.embedding import EmbeddingService
from db0.store import pack, search

if TYPE_CHECKING:
    from db0.daemon.core.dispatch import Request
    from db0.daemon.core.runtime import Runtime

MAX_BUDGET = 200_000


@rpc("memory.pack", {
    "query": P(Str(max_len=1 << 20), "what the context is for", default=""),
    "budget": P(Int(1, MAX_BUDGET), "tokens at most", default=2000),
    "format": P(OneOf(("md", "json", "xml")), "md, json or xml", default="md"),
    "exclude": P(ListOf(Str(nonempty=True, max_len=64), max_items=100_000),
                 "memory ids to leave out (already given)"),
    **FILTERS,
})
def pack_(rt: Runtime, req: Request) -> dict[str, Any]:
    """The memories most worth their tokens, within the budget."""
    p = req.params
    query = p["query"]
    filters = search.Filters.from_params(p)
    started = time.perf_counter()
    embedder = rt.service(EmbeddingService)
    use_late = bool(query.strip()) and late_wanted(rt, False)
    prelude = search.vector_prelude(req.ctx, filters, pack.first_k(use_late))
    qvec = (embedder.query_vector_soon(query, prelude)
            if embedder is not None and query.strip() else None)
    second: dict[str, Any] = {}

    def reorder(results: list[dict[str, Any]]) -> None:
        second.update(late(rt, query, results))

    with rt.reader() as store:
        out = pack.pack(store, req.ctx, query, p["budget"], p["format"], filters, qvec=qvec,
                        exclude=set(p.get("exclude") or ()),
                        reorder=reorder if use_late else None,
                        feedback=rt.config.recall.feedback)
    out.update(second)
    out["took_ms"] = round((time.perf_counter() - started) * 1000, 3)
    return out

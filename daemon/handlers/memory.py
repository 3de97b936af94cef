"""`memory.*`: remember, recall, get, list, forget, history, import, export."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from db0.daemon.handlers import rpc
from db0.daemon.protocol import Db0Error
from db0.store import memories, search, secrets
from db0.store.errors import InvalidError

if TYPE_CHECKING:
    from db0.daemon.server import Request, Server

MAX_K = 1000
MAX_BATCH = 10_000


def _ref(req: Request) -> str:
    ref = req.params.get("id")
    if not isinstance(ref, str) or not ref.strip():
        raise Db0Error("bad_request", "an id is required", "pass the memory's id")
    return ref


@rpc("memory.remember")
def remember(srv: Server, req: Request) -> dict[str, Any]:
    raw = dict(req.params)
    if isinstance(raw.get("metadata"), dict):
        raw["metadata"] = dict(raw["metadata"])
    redacted = secrets.scrub_item(raw, bool(req.params.get("allow_secrets")))
    item = memories.validate(raw)
    ctx = req.ctx
    supersedes = req.params.get("supersedes")
    result: dict[str, Any] = srv.write(lambda s: memories.remember(
        s, ctx, item, supersedes=supersedes, reason=req.params.get("reason")))
    if redacted:
        result["redacted"] = redacted
    if result.get("status") == "stored":
        near = _near_duplicates(srv, req, item["content"], result)
        if near:
            result["near_duplicates"] = near
    _wait_indexed(srv, req, [result["id"]])
    return result


NEAR_DISTANCE = 0.08  # cosine similarity of 0.92 and above: the same fact in other words


def _near_duplicates(srv: Server, req: Request, content: str, result: dict[str, Any]
                     ) -> list[dict[str, Any]]:
    """Visible memories whose meaning is nearly the same (reported; the caller decides)."""
    embedder = srv.components.get("embedder")
    qvec = embedder.query_vector(content) if embedder is not None else None
    if qvec is None:
        return []
    skip = {result["id"], result.get("superseded")}
    with srv.reader() as store:
        hits = [(rid, d) for rid, d in search.vector_candidates(
            store, req.ctx, qvec, search.Filters(), 5) if d <= NEAR_DISTANCE]
        states = search.load(store, [rid for rid, _ in hits])
    return [{"id": states[rid]["id"], "similarity": round(1 - d, 4),
             "content": states[rid]["content"][:200]}
            for rid, d in hits if rid in states and states[rid]["id"] not in skip]


@rpc("memory.import")
def import_batch(srv: Server, req: Request) -> dict[str, Any]:
    """One batch, all in or all out: every item is checked before anything is written."""
    raw = req.params.get("items")
    if not isinstance(raw, list):
        raise Db0Error("bad_request", "items must be a list")
    if len(raw) > MAX_BATCH:
        raise Db0Error("too_large", f"{len(raw)} items in one batch, over {MAX_BATCH}",
                       "send smaller batches")
    lines = req.params.get("lines") or list(range(1, len(raw) + 1))
    allow = bool(req.params.get("allow_secrets"))
    redacted: dict[str, int] = {}
    scrubbed = []
    for given in raw:
        it = dict(given) if isinstance(given, dict) else given
        if isinstance(it, dict):
            if isinstance(it.get("metadata"), dict):
                it["metadata"] = dict(it["metadata"])
            for kind, n in secrets.scrub_item(it, allow).items():
                redacted[kind] = redacted.get(kind, 0) + n
        scrubbed.append(it)
    items = [memories.validate(it, f"line {n}") for n, it in zip(lines, scrubbed, strict=False)]
    ctx = req.ctx
    for it in items:
        ctx.owner(it["scope"])  # a scope the context cannot own fails the whole batch now
    if req.params.get("dry_run"):
        return {"checked": len(items), "redacted": redacted}

    def job(s: Any) -> dict[str, Any]:
        out = memories.remember_many(s, ctx, items, kind="import")
        stored = [r["id"] for r in out if r["status"] == "stored"]
        return {"stored": len(stored), "duplicate": len(out) - len(stored),
                "ids": [r["id"] for r in out]}

    result: dict[str, Any] = srv.write(job)
    result["redacted"] = redacted
    _wait_indexed(srv, req, result["ids"])
    return result


def _wait_indexed(srv: Server, req: Request, ids: list[str], force: bool = False) -> None:
    """With `wait`, block until the embedder has indexed these memories (if one runs)."""
    embedder = srv.components.get("embedder")
    if (force or req.params.get("wait")) and embedder is not None and ids:
        embedder.wait_for(ids, timeout=float(req.params.get("wait_timeout") or 600))


@rpc("memory.wait")
def wait(srv: Server, req: Request) -> dict[str, Any]:
    ids = [str(i) for i in req.params.get("ids") or []]
    _wait_indexed(srv, req, ids, force=True)
    return {"indexed": len(ids)}


def _k(req: Request) -> int:
    k = req.params.get("k", 10)
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise InvalidError(f"k must be a whole number from 1 to {MAX_K}", "pass -k 10")
    return k


def _rerank_n(req: Request) -> int:
    from db0.store.rerank import MAX_RERANK

    n = req.params.get("rerank") or 0
    if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= MAX_RERANK:
        raise InvalidError(f"rerank must be a whole number from 0 to {MAX_RERANK}",
                           "pass --rerank 20")
    return n


PREVIOUS_CHARS = 600  # the reranker reads at most the last 600 characters of the turn before


def _rerank(srv: Server, req: Request, query: str, results: list[dict[str, Any]], n: int,
            filters: search.Filters) -> dict[str, Any]:
    """Rescore the top `n` results in place with the cross-encoder; what to add to the answer.
    Each memory is read after the one written just before it in the same conversation, so a
    reply ("Yes, last Tuesday!") is judged with what it answers (LoCoMo recall@10 0.795 ->
    0.810, store/rerank.py)."""
    from db0.store.rerank import blend

    service = srv.components.get("reranker")
    if service is None:
        raise Db0Error("unavailable", "this daemon has no reranker", "restart the daemon")
    started = time.perf_counter()
    head = results[:n]
    with srv.reader() as store:
        before = search.previous_turns(store, [r["id"] for r in head], filters, req.ctx)
    texts = [f"{before[r['id']][1][-PREVIOUS_CHARS:]}\n{r['content']}" if r["id"] in before
             else r["content"] for r in head]
    name, logits = service.score(query, texts)
    for r in head:
        if r["id"] in before:
            r.setdefault("score_parts", {})["read_after"] = before[r["id"]][0]
    results[:] = blend(results, logits)
    return {"reranked": len(logits), "rerank_model": name,
            "rerank_ms": round((time.perf_counter() - started) * 1000, 3)}


@rpc("memory.recall")
def recall(srv: Server, req: Request) -> dict[str, Any]:
    query = req.params.get("query")
    if not isinstance(query, str) or not query.strip():
        raise InvalidError("the query is empty", "give words to search for")
    filters = search.Filters.from_params(req.params)
    k = _k(req)
    n = _rerank_n(req)
    started = time.perf_counter()
    embedder = srv.components.get("embedder")
    qvec = embedder.query_vector(query) if embedder is not None else None
    with srv.reader() as store:
        out: dict[str, Any] = {"results": search.recall(store, req.ctx, query, max(k, n),
                                                        filters, qvec=qvec)}
    if n:
        out.update(_rerank(srv, req, query, out["results"], n, filters))
        out["results"] = out["results"][:k]
    if req.params.get("expand"):
        from db0.store import links

        where, args = filters.sql(req.ctx)
        with srv.reader() as store:
            out["results"] += links.expand(store, out["results"], where, args)
    out["took_ms"] = round((time.perf_counter() - started) * 1000, 3)  # query embedding too
    if qvec is not None:
        out["embed_ms"] = round(qvec.took_ms, 3)
    notices = embedder.notices() if embedder is not None else []
    if notices:
        out["notices"] = notices
    return out


@rpc("memory.get")
def get(srv: Server, req: Request) -> dict[str, Any]:
    from db0.store import links

    with srv.reader() as store:
        m = memories.get(store, _ref(req))
        m["links"] = links.links_of(store, m["id"])
        return m


@rpc("memory.list")
def list_(srv: Server, req: Request) -> dict[str, Any]:
    p = req.params
    with srv.reader() as store:
        items = memories.list_memories(
            store, req.ctx, scopes=p.get("scopes") or None, limit=int(p.get("limit") or 50),
            offset=int(p.get("offset") or 0), tags=p.get("tags") or None,
            include_superseded=bool(p.get("include_superseded")))
    return {"memories": items}


@rpc("memory.forget")
def forget(srv: Server, req: Request) -> dict[str, Any]:
    ref = _ref(req)
    return srv.write(lambda s: memories.forget(s, ref, req.params.get("reason")))


@rpc("memory.purge")
def purge(srv: Server, req: Request) -> dict[str, Any]:
    ref = _ref(req)
    return srv.write(lambda s: memories.purge(s, ref))


@rpc("memory.history")
def history(srv: Server, req: Request) -> dict[str, Any]:
    with srv.reader() as store:
        return memories.history(store, _ref(req))


@rpc("memory.export")
def export(srv: Server, req: Request) -> dict[str, Any]:
    p = req.params
    with srv.reader() as store:
        items, last = memories.export_page(
            store, None if p.get("everyone") else req.ctx, after=int(p.get("after") or 0),
            limit=min(int(p.get("limit") or 1000), MAX_BATCH),
            include_all=bool(p.get("all")))
    return {"items": items, "next": last if items else None}

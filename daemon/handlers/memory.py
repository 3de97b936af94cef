"""`memory.*`: remember, recall, get, list, forget, purge, history, import, export, wait."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from db0.daemon.core.runtime import give_back_memory
from db0.daemon.core.shapes import Bool, Either, Int, Json, ListOf, MapOf, Num, OneOf, P, Str
from db0.daemon.handlers import job_of, rpc
from db0.daemon.protocol import Db0Error
from db0.daemon.services.embedding import EmbeddingService
from db0.daemon.services.reranking import RerankService
from db0.store import memories, search, write
from db0.store.context import SCOPES
from db0.store.core import Store
from db0.store.rerank import MAX_RERANK

if TYPE_CHECKING:
    from db0.daemon.core.dispatch import Request
    from db0.daemon.core.runtime import Runtime

MAX_K = 1000
MAX_BATCH = 20_000
TRIM_AFTER = 50_000  # staged lines of an import whose commit gives its memory back
TEXT = Str(nonempty=True, max_len=1 << 20)
ID = P(Str(nonempty=True, max_len=200, strip=True), "a memory id or a unique prefix of 6+",
       required=True)
TIME = Either((Str(nonempty=True, max_len=64), Num()))
DURATION = Either((Str(nonempty=True, max_len=32), Num(lo=0)))
SCOPE_LIST = ListOf(OneOf(SCOPES), max_items=4, comma_string=True)
TAGS = ListOf(Str(nonempty=True, max_len=memories.MAX_TAG_CHARS), max_items=memories.MAX_TAGS,
              comma_string=True)
KEY = Str(nonempty=True, max_len=memories.MAX_KEY_CHARS)

MEMORY = {
    # Emptiness and the other rules of a memory are checked by the write path, which says so
    # in a memory's terms ("content is empty").
    "content": P(Str(max_len=1 << 20), "the text to remember", required=True),
    "scope": P(OneOf(SCOPES), "who sees it", default="user"),
    "key": P(KEY, "a stable key: a new fact with it supersedes"),
    "tags": P(TAGS, "tags"),
    "metadata": P(Json(object_only=True), "any JSON object"),
    "pinned": P(Bool(), "pack puts it first", default=False),
    "ttl": P(DURATION, "expire after this long (90s, 15m, 2h, 7d)"),
    "created_at": P(TIME, "when it was true (ISO 8601); default now"),
    "expires_at": P(TIME, "when it expires (ISO 8601)"),
    "id": P(Str(nonempty=True, max_len=64), "an id of its own (an import keeps ids)"),
}
WAIT = {
    "wait": P(Bool(), "answer once the memory is embedded", default=False),
    "wait_timeout": P(Num(lo=0, hi=86_400), "seconds to wait at most", default=600.0),
}
FILTERS = {
    "scopes": P(SCOPE_LIST, "only these scopes"),
    "tags": P(TAGS, "only memories with all these tags"),
    "metadata": P(MapOf(Either((Str(max_len=10_000), Num(), Bool()))),
                  "only memories whose metadata has these values"),
    "key": P(KEY, "only memories with this key"),
    "since": P(TIME, "made at or after (ISO 8601)"),
    "until": P(TIME, "made at or before (ISO 8601)"),
    "include_superseded": P(Bool(), "superseded memories too", default=False),
    "as_of": P(TIME, "as things were at this time (ISO 8601)"),
}


def _wait_indexed(rt: Runtime, ids: list[str], timeout: float) -> None:
    """Block until the embedder has indexed these memories (if one runs)."""
    embedder = rt.service(EmbeddingService)
    if embedder is not None and ids:
        embedder.wait_for(ids, timeout=timeout)


@rpc("memory.remember", {
    **MEMORY, **WAIT,
    "supersedes": P(Str(nonempty=True, max_len=200), "the id of the memory this replaces"),
    "reason": P(Str(max_len=500), "why it supersedes"),
    "current_only": P(Bool(), "with supersedes: refuse (conflict) unless that memory is still "
                      "the current version (an edit of what was read)", default=False),
    "allow_secrets": P(Bool(), "keep what looks like a secret, this once", default=False),
}, writes=True, gather=True)
def remember(rt: Runtime, req: Request) -> dict[str, Any]:
    """Store one memory (redacted, de-duplicated, superseding by key)."""
    p = req.params
    result: dict[str, Any] = rt.write(_remember(req), rerun=True)
    if p["wait"]:
        _wait_indexed(rt, [result["id"]], p["wait_timeout"])
        if result.get("status") == "stored":
            near = _near_duplicates(rt, req, result)
            if near:
                result["near_duplicates"] = near
    return result


def _remember(req: Request) -> Callable[[Store], dict[str, Any]]:
    """The write of a remember: prepared here (redaction, checks), run in the writer."""
    p = req.params
    prepared = write.prepare({k: p[k] for k in MEMORY if k in p},
                             allow_secrets=p["allow_secrets"])
    ctx = req.ctx
    return lambda s: write.remember(s, ctx, prepared, supersedes=p.get("supersedes"),
                                    reason=p.get("reason"), current_only=p["current_only"])


@job_of("memory.remember")
def remember_job(rt: Runtime, req: Request) -> Callable[[Store], dict[str, Any]] | None:
    """A remember that waits for nothing after its commit is its write alone."""
    return None if req.params["wait"] else _remember(req)


NEAR_DISTANCE = 0.08  # cosine similarity of 0.92 and above: the same fact in other words


def _near_duplicates(rt: Runtime, req: Request, result: dict[str, Any]
                     ) -> list[dict[str, Any]]:
    """Visible memories whose meaning is nearly the same, found with the memory's own stored
    vector (nothing is embedded for this)."""
    embedder = rt.service(EmbeddingService)
    qvec = embedder.vector_of(result["id"]) if embedder is not None else None
    if qvec is None:
        return []
    skip = {result["id"], result.get("superseded")}
    with rt.reader() as store:
        hits = [(rid, d) for rid, d in search.vector_candidates(
            store, req.ctx, qvec, search.Filters(), 6) if d <= NEAR_DISTANCE]
        states = search.load(store, [rid for rid, _ in hits])
    return [{"id": states[rid]["id"], "similarity": round(1 - d, 4),
             "content": states[rid]["content"][:200]}
            for rid, d in hits if rid in states and states[rid]["id"] not in skip]


_gc_lock = threading.Lock()
_gc_pausers = 0


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic collector paused while an import request runs: a batch makes thousands of
    objects and a commit hundreds of thousands, none of them garbage until it ends, and each
    collection the allocations would set off walks them all again (and the daemon's own
    long-lived objects). Garbage cycles made meanwhile wait for the next collection after.
    Nested and concurrent pauses count: the last to end turns it back on (if it was on)."""
    global _gc_pausers
    with _gc_lock:
        if _gc_pausers == 0 and not gc.isenabled():
            was_off = True
        else:
            was_off = False
            _gc_pausers += 1
            gc.disable()
    try:
        yield
    finally:
        if not was_off:
            with _gc_lock:
                _gc_pausers -= 1
                if _gc_pausers == 0:
                    gc.enable()


@rpc("memory.import", {
    "items": P(ListOf(Json(object_only=True), max_items=MAX_BATCH),
               "the memories, as `db0 export` writes them", required=True),
    "lines": P(ListOf(Int(lo=1)), "the line number of each item, for errors"),
    "import_id": P(Str(nonempty=True, max_len=64),
                   "stage this batch under an import id; nothing is visible until commit"),
    "commit": P(Bool(), "with import_id: this is the last batch, commit them all", default=True),
    "expect_lines": P(Int(lo=1), "with commit: how many lines the whole import has (a commit "
                      "that finds fewer staged, after a restart say, keeps none)"),
    "dry_run": P(Bool(), "check only", default=False),
    "allow_secrets": P(Bool(), "keep what looks like a secret", default=False),
    **WAIT,
}, writes=True)
def import_batch(rt: Runtime, req: Request) -> dict[str, Any]:
    """Import memories, all or nothing: every item is checked before anything is written; with
    `import_id`, batches are staged and made visible together by the one that commits."""
    with _gc_paused():
        result = _import_batch(rt, req)
    if req.params["wait"] and "ids" in result:
        _wait_indexed(rt, result["ids"], req.params["wait_timeout"])
    return result


def _import_batch(rt: Runtime, req: Request) -> dict[str, Any]:
    p = req.params
    raw = p["items"]
    lines = p.get("lines") or list(range(1, len(raw) + 1))
    if len(lines) != len(raw):
        raise Db0Error("bad_request", "lines must give one number per item")
    allow = p["allow_secrets"]
    prepared = [write.prepare(it, allow_secrets=allow, where=f"line {n}")
                for n, it in zip(lines, raw, strict=True)]
    ctx = req.ctx
    for scope in dict.fromkeys(it.item["scope"] for it in prepared):
        ctx.owner(scope)  # a scope the context cannot own fails the whole batch now
    if p["dry_run"]:
        return {"checked": len(prepared), "redacted": write.redacted_total(prepared)}
    import_id = p.get("import_id")
    if import_id and not p["commit"]:
        return {"import_id": import_id,
                "staged": rt.staging.stage(import_id, lines[0] if lines else 1, prepared),
                "redacted": write.redacted_total(prepared)}

    staged = rt.staging.take(import_id) if import_id else []
    trim = sum(b.lines for b in staged) >= TRIM_AFTER

    def job(s: Store) -> dict[str, Any]:
        if import_id:
            out, redacted = write.commit_import(s, ctx, import_id, staged, prepared,
                                                p.get("expect_lines"))
        else:
            out = [(r["id"], r["status"]) for r in write.remember_many(s, ctx, prepared)]
            redacted = write.redacted_total(prepared)
        stored = sum(st == "stored" for _, st in out)
        return {"stored": stored, "duplicate": len(out) - stored, "lines": len(out),
                "ids": [i for i, _ in out], "redacted": redacted}

    result: dict[str, Any] = rt.write(job)
    if trim:
        give_back_memory()  # the commit's rows and ops are gone by now
    return result


@rpc("memory.import_abort", {"import_id": P(Str(nonempty=True, max_len=64), required=True)},
     writes=True)
def import_abort(rt: Runtime, req: Request) -> dict[str, Any]:
    """Drop an import's staged batches (the client met a bad line or was interrupted)."""
    iid = req.params["import_id"]
    return {"import_id": iid, "dropped": rt.staging.drop(iid)}


@rpc("memory.import_status", {"import_id": P(Str(nonempty=True, max_len=64), required=True)})
def import_status(rt: Runtime, req: Request) -> dict[str, Any]:
    """Whether an import committed (for a client that lost the daemon during the commit)."""
    with rt.reader() as store:
        done = write.import_done(store, req.params["import_id"])
    return {"import_id": req.params["import_id"], "committed": done is not None,
            **(done or {})}


@rpc("memory.wait", {"ids": P(ListOf(Str(nonempty=True, max_len=64), max_items=MAX_BATCH),
                              "memory ids", required=True),
                     "wait_timeout": WAIT["wait_timeout"]})
def wait(rt: Runtime, req: Request) -> dict[str, Any]:
    """Block until these memories are embedded."""
    ids = req.params["ids"]
    _wait_indexed(rt, ids, req.params["wait_timeout"])
    return {"indexed": len(ids)}


PREVIOUS_CHARS = 600  # the reranker reads at most the last 600 characters of the turn before


def _rerank(rt: Runtime, req: Request, query: str, results: list[dict[str, Any]], n: int,
            filters: search.Filters) -> dict[str, Any]:
    """Rescore the top `n` results in place with the cross-encoder; what to add to the answer.
    Each memory is read after the one written just before it in the same conversation, so a
    reply ("Yes, last Tuesday!") is judged with what it answers."""
    from db0.store.rerank import blend

    service = rt.need(RerankService)
    started = time.perf_counter()
    head = results[:n]
    with rt.reader() as store:
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


def late_wanted(rt: Runtime, asked: bool) -> bool:
    from db0.daemon.services.lateinteraction import LateService

    service = rt.service(LateService)
    return service is not None and service.wanted(asked)


# store.lateint.LATE_TOP, said again here so that numpy loads only when the stage is used
# (tests/test_colbert.py checks that the two agree)
LATE_TOP = 100


def late(rt: Runtime, query: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    """Re-order the top results in place by late interaction with their stored token vectors
    (none are made here); what to add to the answer."""
    from db0.daemon.services.lateinteraction import LateService
    from db0.store import lateint

    service = rt.service(LateService)
    if service is None:
        return {}
    started = time.perf_counter()
    head = results[:lateint.LATE_TOP]
    got = service.scores(query, [r["id"] for r in head])
    if got is None:
        raise Db0Error("unavailable", "no late-interaction encoder is installed",
                       "run: db0 model install --late (or recall without --late)")
    name, scores = got
    results[:len(head)] = lateint.reorder(head, scores)
    return {"late_scored": len(scores), "late_model": name,
            "late_ms": round((time.perf_counter() - started) * 1000, 3)}


@rpc("memory.recall", {
    "query": P(TEXT, "what to look for", required=True),
    "k": P(Int(1, MAX_K), "how many results", default=10),
    "rerank": P(Int(0, MAX_RERANK), "rescore the top N with the cross-encoder", default=0),
    "expand": P(Bool(), "add the memories linked to the results", default=False),
    "late": P(Bool(), "re-order the top 100 by late interaction with their stored token "
              "vectors (db0 model install --late)", default=False),
    **FILTERS,
})
def recall(rt: Runtime, req: Request) -> dict[str, Any]:
    """The memories most relevant to a query, best first, each with its score parts."""
    p = req.params
    query, k, n = p["query"], p["k"], p["rerank"]
    filters = search.Filters.from_params(p)
    started = time.perf_counter()
    use_late = late_wanted(rt, p["late"])
    late_top = LATE_TOP if use_late else 0
    embedder = rt.service(EmbeddingService)
    want = max(k, n, late_top)
    pending = (embedder.query_vector_soon(query, search.vector_prelude(req.ctx, filters, want))
               if embedder is not None else None)
    with rt.reader() as store:
        out: dict[str, Any] = {"results": search.recall(
            store, req.ctx, query, want, filters,
            qvec=pending, feedback=rt.config.recall.feedback)}
    qvec = pending() if pending is not None else None
    if use_late:
        out.update(late(rt, query, out["results"]))
        out["results"] = out["results"][:max(k, n)]
    if n:
        out.update(_rerank(rt, req, query, out["results"], n, filters))
        out["results"] = out["results"][:k]
    if p["expand"]:
        from db0.store import links

        where, args = filters.sql(req.ctx)
        with rt.reader() as store:
            out["results"] += links.expand(store, out["results"], where, args)
    out["took_ms"] = round((time.perf_counter() - started) * 1000, 3)  # query embedding too
    if qvec is not None:
        out["embed_ms"] = round(qvec.took_ms, 3)
    notices = embedder.notices() if embedder is not None else []
    if notices:
        out["notices"] = notices
    return out


@rpc("memory.get", {"id": ID})
def get(rt: Runtime, req: Request) -> dict[str, Any]:
    """One memory, with its links."""
    from db0.store import links

    with rt.reader() as store:
        m = memories.get(store, req.params["id"])
        m["links"] = links.links_of(store, m["id"])
        return m


@rpc("memory.list", {
    "scopes": FILTERS["scopes"], "tags": FILTERS["tags"],
    "include_superseded": FILTERS["include_superseded"],
    "limit": P(Int(1, 10_000), "how many", default=50),
    "offset": P(Int(0, 10_000_000), "skip this many first", default=0),
})
def list_(rt: Runtime, req: Request) -> dict[str, Any]:
    """The newest memories this context can see."""
    p = req.params
    with rt.reader() as store:
        items = memories.list_memories(
            store, req.ctx, scopes=p.get("scopes") or None, limit=p["limit"],
            offset=p["offset"], tags=p.get("tags") or None,
            include_superseded=p["include_superseded"])
    return {"memories": items}


@rpc("memory.forget", {"id": ID, "reason": P(Str(max_len=500), "why")}, writes=True)
def forget(rt: Runtime, req: Request) -> dict[str, Any]:
    """Tombstone a memory (history keeps it; purge erases)."""
    ref, reason = req.params["id"], req.params.get("reason")
    return rt.write(lambda s: memories.forget(s, ref, reason))


@rpc("memory.purge", {"id": ID}, writes=True)
def purge(rt: Runtime, req: Request) -> dict[str, Any]:
    """Erase a memory for real: its row, index entries, the op payloads with its text and the
    copies hooks kept (injections, session prompts and summaries, set-aside spool files)."""
    from db0.daemon.services.spool import Spool
    from db0.store import db as dbmod

    ref = req.params["id"]
    with rt.reader() as s:
        text = dbmod.scalar(s.conn, "SELECT content FROM memories WHERE id=?",
                            (memories.resolve_id(s, ref),))
    out: dict[str, Any] = rt.write(lambda s: memories.purge(s, ref))
    spool = rt.service(Spool)
    if spool is not None and text:
        spool.erase_text(str(text))
    return out


@rpc("memory.history", {"id": ID})
def history(rt: Runtime, req: Request) -> dict[str, Any]:
    """Every version of a fact, oldest first, with its ops."""
    with rt.reader() as store:
        return memories.history(store, req.params["id"])


@rpc("memory.export", {
    "after": P(Int(0), "the `next` of the previous page", default=0),
    "limit": P(Int(1, MAX_BATCH), "memories per page", default=1000),
    "all": P(Bool(), "superseded, forgotten and expired too", default=False),
    "everyone": P(Bool(), "every user's and agent's memories, not only this context's",
                  default=False),
})
def export(rt: Runtime, req: Request) -> dict[str, Any]:
    """A page of memories in a stable order (row id)."""
    p = req.params
    with rt.reader() as store:
        items, last = memories.export_page(store, None if p["everyone"] else req.ctx,
                                           after=p["after"], limit=p["limit"],
                                           include_all=p["all"])
    return {"items": items, "next": last if items else None}

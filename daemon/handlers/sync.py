"""`remote.*` and `sync.*`: the remotes file, sync runs, their status, and remote search."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from db0.daemon.core.shapes import Bool, Int, Json, ListOf, Num, OneOf, P, Str
from db0.daemon.handlers import rpc
from db0.daemon.protocol import Db0Error
from db0.daemon.services.embedding import EmbeddingService
from db0.daemon.services.sync import Syncer
from db0.store import pgsync, remotes
from db0.store.context import SCOPES
from db0.store.errors import InvalidError, StoreError

if TYPE_CHECKING:
    from db0.daemon.core.dispatch import Request
    from db0.daemon.core.runtime import Runtime

NAME = P(Str(nonempty=True, max_len=64, strip=True), "the remote's name", required=True)
ENV = P(Json(object_only=True), "environment variables for env:NAME passwords")


def _name(req: Request) -> str | None:
    name = req.params.get("name")
    return remotes.check_name(name) if name else None


def _env(req: Request) -> dict[str, str]:
    return {str(k): str(v) for k, v in (req.params.get("env") or {}).items()}


@rpc("remote.add", {
    "name": NAME,
    "dsn": P(Str(nonempty=True, max_len=4096), "postgresql://user@host/db", required=True),
    "scopes": P(ListOf(OneOf(SCOPES), max_items=4), "the scopes synced with it"),
    "replace": P(Bool(), "replace a remote of that name", default=False),
}, writes=True)
def remote_add(rt: Runtime, req: Request) -> dict[str, Any]:
    """Add a Postgres remote to sync with."""
    name = _name(req)
    assert name is not None
    remote = remotes.add(rt.need(Syncer).path, name, req.params["dsn"],
                         req.params.get("scopes") or None, replace=req.params["replace"])
    out = remote.public()
    if remotes.mask(remote.dsn) != remote.dsn:
        out["notices"] = ["the DSN holds a password (kept in a 0600 file); to keep it out of "
                          "the file, use ?password_env=NAME or env:NAME"]
    return out


@rpc("remote.list")
def remote_list(rt: Runtime, req: Request) -> dict[str, Any]:
    """The remotes, with their DSNs masked."""
    syncer = rt.need(Syncer)
    items = []
    for r in remotes.load(syncer.path).values():
        items.append({**r.public(), "scopes": syncer.scopes_for(r)})
    return {"remotes": items}


@rpc("remote.remove", {"name": NAME}, writes=True)
def remote_remove(rt: Runtime, req: Request) -> dict[str, Any]:
    """Remove a remote (what was synced stays on both sides)."""
    name = _name(req)
    assert name is not None
    gone = remotes.remove(rt.need(Syncer).path, name)
    rt.write(lambda s: pgsync.forget_remote(s, name))
    return {"removed": gone.name}


@rpc("sync.run", {
    "name": P(NAME.shape, "one remote (default: all)"),
    "budget_s": P(Num(lo=0.01, hi=86_400), "stop after about this many seconds"),
    "env": ENV,
}, writes=True)
def sync_run(rt: Runtime, req: Request) -> dict[str, Any]:
    """Sync one remote (or all). With `budget_s`, stop after about that long; `done` says
    whether everything was pushed and pulled (the CLI calls again to show progress)."""
    syncer = rt.need(Syncer)
    name = _name(req)
    budget = req.params.get("budget_s")
    names = [name] if name else list(remotes.load(syncer.path))
    if not names:
        raise InvalidError("no remotes to sync with",
                           "add one: db0 remote add NAME postgresql://me@host/db")
    results: list[dict[str, Any]] = []
    errors: list[StoreError] = []
    for n in names:
        try:
            results.append(syncer.run_one(n, _env(req), budget))
        except StoreError as e:
            errors.append(e)
            results.append({"name": n, "error": {"code": e.code, "message": e.message,
                                                  "hint": e.hint}})
    if errors and (name or len(errors) == len(names)):
        first = errors[0]
        raise Db0Error(first.code, f"sync with {names[0] if name else 'every remote'} failed: "
                       f"{first.message}", first.hint)
    return {"results": results, "done": all(r.get("done") for r in results)}


@rpc("sync.status", {"name": P(NAME.shape, "one remote (default: all)")})
def sync_status(rt: Runtime, req: Request) -> dict[str, Any]:
    """Each remote's sync state: pending pushes, marks, the last error."""
    syncer = rt.need(Syncer)
    name = _name(req)
    names = [name] if name else list(remotes.load(syncer.path))
    return {"remotes": [syncer.local_status(n) for n in names],
            "interval_s": syncer.interval, "scopes": syncer.scopes}


@rpc("sync.recall", {
    "name": NAME,
    "query": P(Str(nonempty=True, max_len=1 << 16), "what to look for", required=True),
    "k": P(Int(1, 1000), "how many results", default=10),
    "scopes": P(ListOf(OneOf(SCOPES), max_items=4), "only these scopes"),
    "env": ENV,
})
def sync_recall(rt: Runtime, req: Request) -> dict[str, Any]:
    """Search a remote's searchable copy within the context's scopes."""
    name = _name(req)
    assert name is not None
    query, k = req.params["query"], req.params["k"]
    scopes = req.params.get("scopes") or None
    remote = remotes.get(rt.need(Syncer).path, name)
    ctx = req.ctx
    owners = {"user": ctx.user, "agent": ctx.agent, "session": ctx.session, "task": ctx.task}
    qvec = None
    embedder = rt.service(EmbeddingService)
    active = embedder.active if embedder is not None else None
    if embedder is not None and active is not None:
        qv = embedder.query_vector(query.strip())
        if qv is not None:
            qvec = (active.name, active.sha256, int(active.dim),
                    [float(x) for x in qv.vector.tolist()])
    results, used = pgsync.search(remotes.resolve(remote.dsn, _env(req)), query.strip(), k,
                                  owners, scopes, qvec)
    notices = []
    if not used:
        notices.append("remote search used keywords only: " + (
            "no local embedding model" if qvec is None else
            "the server has no vectors from this machine's model yet"))
    return {"results": results, "remote": name, "vectors": used, "notices": notices}

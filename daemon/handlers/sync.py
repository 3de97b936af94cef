"""`remote.*` and `sync.*`: the remotes file, sync runs, their status, and remote search."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from db0.daemon.handlers import rpc
from db0.daemon.protocol import Db0Error
from db0.store import pgsync, remotes
from db0.store.errors import InvalidError, StoreError

if TYPE_CHECKING:
    from db0.daemon.server import Request, Server
    from db0.daemon.syncer import Syncer


def _syncer(srv: Server) -> Syncer:
    comp = srv.components.get("sync")
    if comp is None:
        raise Db0Error("unavailable", "sync is not running in this daemon",
                       "restart it: db0 daemon restart")
    return comp  # type: ignore[no-any-return]


def _name(req: Request, required: bool = True) -> str | None:
    name = req.params.get("name")
    if name is None and not required:
        return None
    if not isinstance(name, str) or not name.strip():
        raise Db0Error("bad_request", "a remote name is required", "db0 remote list")
    return remotes.check_name(name.strip())


def _env(req: Request) -> dict[str, str]:
    env = req.params.get("env") or {}
    if not isinstance(env, dict):
        raise Db0Error("bad_request", "env must be an object of NAME: value")
    return {str(k): str(v) for k, v in env.items()}


@rpc("remote.add")
def remote_add(srv: Server, req: Request) -> dict[str, Any]:
    name = _name(req)
    assert name is not None
    dsn = req.params.get("dsn")
    if not isinstance(dsn, str):
        raise Db0Error("bad_request", "a DSN is required",
                       "db0 remote add NAME postgresql://me@host/db")
    scopes = req.params.get("scopes") or None
    remote = remotes.add(_syncer(srv).path, name, dsn, scopes,
                         replace=bool(req.params.get("replace")))
    out = remote.public()
    if remotes.mask(remote.dsn) != remote.dsn:
        out["notices"] = ["the DSN holds a password (kept in a 0600 file); to keep it out of "
                          "the file, use ?password_env=NAME or env:NAME"]
    return out


@rpc("remote.list")
def remote_list(srv: Server, req: Request) -> dict[str, Any]:
    syncer = _syncer(srv)
    items = []
    for r in remotes.load(syncer.path).values():
        items.append({**r.public(), "scopes": syncer.scopes_for(r)})
    return {"remotes": items}


@rpc("remote.remove")
def remote_remove(srv: Server, req: Request) -> dict[str, Any]:
    name = _name(req)
    assert name is not None
    gone = remotes.remove(_syncer(srv).path, name)
    srv.write(lambda s: pgsync.forget_remote(s, name))
    return {"removed": gone.name}


@rpc("sync.run")
def sync_run(srv: Server, req: Request) -> dict[str, Any]:
    """Sync one remote (or all). With `budget_s`, stop after about that long; `done` says
    whether everything was pushed and pulled (the CLI calls again to show progress)."""
    syncer = _syncer(srv)
    name = _name(req, required=False)
    budget = req.params.get("budget_s")
    if budget is not None and (not isinstance(budget, int | float) or budget <= 0):
        raise InvalidError("budget_s must be a positive number of seconds")
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


@rpc("sync.status")
def sync_status(srv: Server, req: Request) -> dict[str, Any]:
    syncer = _syncer(srv)
    name = _name(req, required=False)
    names = [name] if name else list(remotes.load(syncer.path))
    return {"remotes": [syncer.local_status(n) for n in names],
            "interval_s": syncer.interval, "scopes": syncer.scopes}


@rpc("sync.recall")
def sync_recall(srv: Server, req: Request) -> dict[str, Any]:
    """Search a remote's searchable copy (full text) within the context's scopes."""
    name = _name(req)
    assert name is not None
    query = req.params.get("query")
    if not isinstance(query, str) or not query.strip():
        raise InvalidError("the query is empty", "give words to search for")
    k = req.params.get("k", 10)
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= 1000:
        raise InvalidError("k must be a whole number from 1 to 1000", "pass -k 10")
    scopes = req.params.get("scopes") or None
    if scopes:
        remotes.check_scopes(scopes)
    remote = remotes.get(_syncer(srv).path, name)
    ctx = req.ctx
    owners = {"user": ctx.user, "agent": ctx.agent, "session": ctx.session, "task": ctx.task}
    qvec = None
    embedder = srv.components.get("embedder")
    active = getattr(embedder, "active", None)
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

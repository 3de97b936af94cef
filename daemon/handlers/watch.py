"""`watch.*`: add, list, remove and status of the folders the daemon keeps in step
(daemon/watcher.py does the watching; store/watch.py keeps the list and the index)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from db0.daemon.handlers import rpc
from db0.daemon.protocol import Db0Error
from db0.daemon.watchparse import DEFAULT_GLOBS
from db0.store.context import SCOPES

if TYPE_CHECKING:
    from db0.daemon.server import Request, Server
    from db0.daemon.watcher import Watcher

MAX_GLOBS = 32


def _watcher(srv: Server) -> Watcher:
    w = srv.components.get("watcher")
    if w is None:
        raise Db0Error("unavailable", "this daemon runs no folder watcher",
                       "restart it: db0 daemon restart")
    return w  # type: ignore[no-any-return]


def _path(req: Request) -> str:
    path = req.params.get("path")
    if not isinstance(path, str) or not path.strip():
        raise Db0Error("bad_request", "a folder is required", "pass the folder: db0 watch add DIR")
    if "\0" in path:
        raise Db0Error("bad_request", "the folder's path holds a NUL byte", "check the path")
    return path


@rpc("watch.add")
def add(srv: Server, req: Request) -> dict[str, Any]:
    globs = req.params.get("globs") or list(DEFAULT_GLOBS)
    if not isinstance(globs, list) or not globs or len(globs) > MAX_GLOBS or not all(
            isinstance(g, str) and g.strip() and "\0" not in g for g in globs):
        raise Db0Error("bad_request", f"globs must be 1 to {MAX_GLOBS} patterns",
                       "write them like --glob '*.md'")
    scope = str(req.params.get("scope") or "user")
    if scope not in SCOPES:
        raise Db0Error("bad_request", f"unknown scope {scope!r}", "one of: " + ", ".join(SCOPES))
    wait = req.params.get("wait", 600)
    if not isinstance(wait, int | float) or isinstance(wait, bool) or wait < 0:
        raise Db0Error("bad_request", "wait must be a number of seconds")
    return _watcher(srv).add(_path(req), [g.strip() for g in globs], scope, req.ctx,
                             float(min(wait, 3600)))


@rpc("watch.list")
def list_(srv: Server, req: Request) -> dict[str, Any]:
    return {"watches": _watcher(srv).watches()}


@rpc("watch.remove")
def remove(srv: Server, req: Request) -> dict[str, Any]:
    return _watcher(srv).remove(_path(req), bool(req.params.get("forget")))


@rpc("watch.status")
def status(srv: Server, req: Request) -> dict[str, Any]:
    w = _watcher(srv)
    return {**w.status(), "folders": w.watches()}

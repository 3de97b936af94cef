"""`watch.*`: add, list, remove and status of the folders the daemon keeps in step
(daemon/watcher.py does the watching; store/watch.py keeps the list and the index)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from db0.daemon.core.shapes import Bool, ListOf, Num, OneOf, P, Str
from db0.daemon.handlers import rpc
from db0.daemon.services.watcher import Watcher
from db0.daemon.services.watchparse import DEFAULT_GLOBS
from db0.store.context import SCOPES

if TYPE_CHECKING:
    from db0.daemon.core.dispatch import Request
    from db0.daemon.core.runtime import Runtime

MAX_GLOBS = 32
PATH = P(Str(nonempty=True, max_len=4096), "the folder", required=True)


@rpc("watch.add", {
    "path": PATH,
    "globs": P(ListOf(Str(nonempty=True, max_len=500, strip=True), max_items=MAX_GLOBS),
               "the files to take (default *.md, *.markdown, *.txt)"),
    "scope": P(OneOf(SCOPES), "the scope of its memories", default="user"),
    "wait": P(Num(lo=0, hi=3600), "seconds to wait for the first indexing", default=600.0),
}, writes=True)
def add(rt: Runtime, req: Request) -> dict[str, Any]:
    """Keep a folder's notes in step with memory, one memory per heading section."""
    p = req.params
    globs = p.get("globs") or list(DEFAULT_GLOBS)
    return rt.need(Watcher).add(p["path"], globs, p["scope"], req.ctx, p["wait"])


@rpc("watch.list")
def list_(rt: Runtime, req: Request) -> dict[str, Any]:
    """The watched folders."""
    return {"watches": rt.need(Watcher).watches()}


@rpc("watch.remove", {"path": PATH, "forget": P(Bool(), "forget its memories too",
                                                default=False)}, writes=True)
def remove(rt: Runtime, req: Request) -> dict[str, Any]:
    """Stop watching a folder."""
    return rt.need(Watcher).remove(req.params["path"], req.params["forget"])


@rpc("watch.status")
def status(rt: Runtime, req: Request) -> dict[str, Any]:
    """The watcher's state and each folder's skipped files and errors."""
    w = rt.need(Watcher)
    return {**w.status(), "folders": w.watches()}

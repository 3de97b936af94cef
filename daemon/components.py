"""The daemon's long-lived parts beside the socket server (embedder, jobs, watcher, sync).

Each is registered under a name on `srv.components` and may have start(), stop(),
status() -> dict and apply_config(cfg). Heavy imports stay inside the factories.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from db0.daemon.server import Server


def install(srv: Server) -> None:
    """Create the components, in start order (they stop in reverse)."""
    # Each feature adds its component here, one line each.
    __import__("db0.daemon.syncer", fromlist=["install"]).install(srv)
    __import__("db0.daemon.embedding", fromlist=["install"]).install(srv)
    __import__("db0.daemon.reranking", fromlist=["install"]).install(srv)
    __import__("db0.daemon.expiry", fromlist=["install"]).install(srv)
    __import__("db0.daemon.spool", fromlist=["install"]).install(srv)
    __import__("db0.daemon.watcher", fromlist=["install"]).install(srv)

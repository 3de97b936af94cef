"""The daemon's services beside the socket server, created in start order (they stop in
reverse). Each is a `runtime.Component`, registered on the runtime by its class."""

from __future__ import annotations

from db0.daemon.core.runtime import Runtime


def install(rt: Runtime) -> None:
    from db0.daemon.services.embedding import EmbeddingService
    from db0.daemon.services.expiry import Expiry
    from db0.daemon.services.lateinteraction import LateService
    from db0.daemon.services.reranking import RerankService
    from db0.daemon.services.spool import Spool
    from db0.daemon.services.sync import Syncer
    from db0.daemon.services.watcher import Watcher
    from db0.daemon.ui.server import UiServer

    for cls in (Syncer, EmbeddingService, RerankService, LateService, Expiry, Spool, Watcher,
                UiServer):
        rt.add(cls(rt))

"""`ui.*`: serve the web inspector (daemon/ui/), and stop serving it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from db0.daemon.core.shapes import Int, Num, P
from db0.daemon.handlers import rpc
from db0.daemon.ui.server import UiServer

if TYPE_CHECKING:
    from db0.daemon.core.dispatch import Request
    from db0.daemon.core.runtime import Runtime


@rpc("ui.start", {
    "port": P(Int(1024, 65535), "listen on this port of 127.0.0.1 (default: the last one, "
              "else a free one)"),
    "idle_timeout": P(Num(lo=1, hi=7 * 86_400), "close after this many seconds without "
                      "requests (default: [ui] idle_timeout, 30 minutes)"),
})
def start(rt: Runtime, req: Request) -> dict[str, Any]:
    """Serve the web inspector on 127.0.0.1 (or keep serving it): its url, port and the
    launch's secret token."""
    p = req.params
    return rt.need(UiServer).open(p.get("port"), p.get("idle_timeout"))


@rpc("ui.stop")
def stop(rt: Runtime, req: Request) -> dict[str, Any]:
    """Stop serving the web inspector (its port closes; open pages are told)."""
    return {"closed": rt.need(UiServer).close("asked")}

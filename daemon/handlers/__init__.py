"""RPC methods, one module per noun (`memory.py` serves `memory.*`), registered by name;
every module in this package is loaded at start.

A handler takes the server and the request and returns a JSON-able result; it raises
`Db0Error` or a store error for the client to see.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from db0.daemon.server import Request, Server

Handler = Callable[["Server", "Request"], Any]
METHODS: dict[str, Handler] = {}


def rpc(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        METHODS[name] = fn
        return fn
    return register


def load_all() -> dict[str, Handler]:
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    return METHODS

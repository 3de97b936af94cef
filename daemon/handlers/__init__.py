"""RPC methods, one module per noun (`memory.py` serves `memory.*`), registered by name with
their declared parameters; every module in this package is loaded at start.

A handler takes the runtime and the request (its params already checked against the declared
shape, defaults filled in) and returns a JSON-able result; it raises `Db0Error` or a store
error for the client to see.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from db0.daemon.core.shapes import Method, P

if TYPE_CHECKING:
    from db0.daemon.core.dispatch import Request
    from db0.daemon.core.runtime import Runtime

Handler = Callable[["Runtime", "Request"], Any]
METHODS: dict[str, Method] = {}


def rpc(name: str, params: dict[str, P] | None = None, *, writes: bool = False,
        gather: bool = False) -> Callable[[Handler], Handler]:
    """Register a handler as method `name` taking `params` (the declared shape). `gather`:
    a quick write, announced to the writer as the request arrives, so a commit under way
    can wait for it (`daemon/core/writer.py`)."""
    def register(fn: Handler) -> Handler:
        METHODS[name] = Method(name, fn, dict(params or {}), (fn.__doc__ or "").strip(), writes,
                               gather)
        return fn
    return register


def job_of(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register `fn(rt, req)` as method `name`'s write job: the whole of the request as one
    rerunnable job (run in the selector thread's round, `Writer.open_round`), or None when
    this request needs the handler (it waits for something after its write, say).
    Registered after the method itself."""
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        METHODS[name].job = fn
        return fn
    return register


def load_all() -> dict[str, Method]:
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    return METHODS

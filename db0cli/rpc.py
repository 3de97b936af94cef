"""The CLI process's one daemon client (`daemon/client.py`), connected on first use."""

from __future__ import annotations

import atexit

from db0.daemon.client import Client

TYPE_CHECKING = False  # typing stays unloaded at run time: it is costly to import
if TYPE_CHECKING:
    from typing import Any

_client: Client | None = None


def client() -> Client:
    global _client
    if _client is None:
        _client = Client()
        atexit.register(_client.close)
    return _client


def call(method: str, params: dict[str, Any] | None = None, timeout: float | None = 300.0) -> Any:
    return client().call(method, params or {}, timeout=timeout)

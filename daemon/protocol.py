"""The wire contract between db0 clients and the daemon.

A frame is a 4-byte big-endian length and a UTF-8 JSON object. Requests are
`{v, id, method, params}`, responses `{v, id, ok, result}` or `{v, id, ok: false, error}` with
`error = {code, message, hint}`. The frame size is checked before the body is read.

Imported by the CLI: standard library only.
"""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

PROTOCOL = 1
MAX_FRAME = 32 * 1024 * 1024
_HEADER = struct.Struct(">I")

# Error codes and the CLI exit status each maps to (STYLE.md: one place maps errors to codes).
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_RUNNING, EXIT_NOT_FOUND, EXIT_UNAVAILABLE = range(6)
EXIT_INTERRUPTED = 130
ERROR_EXIT = {
    "invalid": EXIT_FAILED,
    "too_large": EXIT_FAILED,
    "bad_request": EXIT_USAGE,
    "unknown_method": EXIT_UNAVAILABLE,
    "not_found": EXIT_NOT_FOUND,
    "unavailable": EXIT_UNAVAILABLE,
    "incompatible": EXIT_UNAVAILABLE,
    "conflict": EXIT_FAILED,
    "internal": EXIT_FAILED,
    "shutting_down": EXIT_UNAVAILABLE,
}


class Db0Error(Exception):
    """An error with a stable code, a one-line message and a hint saying how to fix it."""

    def __init__(self, code: str, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message, "hint": self.hint}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Db0Error:
        return cls(str(d.get("code", "internal")), str(d.get("message", "")),
                   str(d.get("hint", "")))

    @property
    def exit_code(self) -> int:
        return ERROR_EXIT.get(self.code, EXIT_FAILED)


class FrameError(Exception):
    """The peer sent something that is not a frame (closed early, too large, not JSON)."""


def encode(obj: dict[str, Any]) -> bytes:
    body = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if len(body) > MAX_FRAME:
        raise Db0Error(
            "too_large",
            f"message of {len(body)} bytes is over the {MAX_FRAME}-byte frame limit",
            "send less at once (import in smaller batches)",
        )
    return _HEADER.pack(len(body)) + body


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise FrameError("connection closed")
        buf += chunk
    return bytes(buf)


def read_frame(sock: socket.socket, max_frame: int = MAX_FRAME) -> dict[str, Any] | None:
    """Read one frame; None on a clean close before a header."""
    first = sock.recv(_HEADER.size)
    if not first:
        return None
    header = first if len(first) == _HEADER.size else first + _recv_exact(
        sock, _HEADER.size - len(first))
    (length,) = _HEADER.unpack(header)
    if length > max_frame:
        raise FrameError(f"frame of {length} bytes is over the {max_frame}-byte limit")
    try:
        obj = json.loads(_recv_exact(sock, length))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FrameError(f"frame is not JSON: {e}") from e
    if not isinstance(obj, dict):
        raise FrameError("frame is not a JSON object")
    return obj


def request(req_id: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"v": PROTOCOL, "id": req_id, "method": method, "params": params}


def ok(req_id: Any, result: Any) -> dict[str, Any]:
    return {"v": PROTOCOL, "id": req_id, "ok": True, "result": result}


def err(req_id: Any, error: Db0Error) -> dict[str, Any]:
    return {"v": PROTOCOL, "id": req_id, "ok": False, "error": error.to_dict()}

"""The wire contract between db0 clients and the daemon.

A frame is a 4-byte big-endian length and a UTF-8 JSON object. Requests are
`{v, id, method, params}`, responses `{v, id, ok, result}` or `{v, id, ok: false, error}` with
`error = {code, message, hint}`. The frame size is checked before the body is read.

Imported by the CLI: standard library only.
"""

from __future__ import annotations

from db0.daemon import wirejson as json

TYPE_CHECKING = False  # typing stays unloaded at run time: it is costly to import
if TYPE_CHECKING:
    import _socket
    from typing import Any

PROTOCOL = 1
MAX_FRAME = 32 * 1024 * 1024
HEADER_BYTES = 4  # a frame's length, big-endian (int.to_bytes: no `struct` on the CLI's path)

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
    "shutting_down": EXIT_UNAVAILABLE,
    "busy": EXIT_UNAVAILABLE,          # too many connections, or the database locked too long
    "disk_full": EXIT_FAILED,
    "read_only": EXIT_FAILED,          # the database or its directory cannot be written
    "no_model": EXIT_UNAVAILABLE,
    "internal": EXIT_FAILED,           # a bug in db0: nothing a caller sent should reach it
}
# Codes a client may retry later with the same request (the spool replays them).
RETRYABLE = frozenset({"unavailable", "shutting_down", "busy", "unknown_method"})
MAX_DEPTH = 64  # JSON nesting a frame may have (deeper is refused, never a RecursionError)


class Db0Error(Exception):
    """An error with a stable code, a one-line message and a hint saying how to fix it."""

    def __init__(self, code: str, message: str, hint: str = "", field: str = "") -> None:
        """`field`: the parameter that is wrong, as its path in the request (`k`,
        `context.user`, `items[3].tags`), when a parameter is what is wrong; the message then
        reads `METHOD: FIELD must be ...`, and a client that took the value from an option
        of its own can say it in the option's name (db0cli.params.explain)."""
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint
        self.field = field

    def to_dict(self) -> dict[str, str]:
        out = {"code": self.code, "message": self.message, "hint": self.hint}
        if self.field:
            out["field"] = self.field
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Db0Error:
        return cls(str(d.get("code", "internal")), str(d.get("message", "")),
                   str(d.get("hint", "")), str(d.get("field") or ""))

    @property
    def exit_code(self) -> int:
        return ERROR_EXIT.get(self.code, EXIT_FAILED)

    def line(self) -> str:
        """The message and, when there is one, how to fix it: the one-line form."""
        return self.message + (f" (to fix: {self.hint})" if self.hint else "")


def describe(e: BaseException) -> str:
    """An exception as a status field shows it: a Db0Error as its line (with its fix), any
    other with its type."""
    return e.line() if isinstance(e, Db0Error) else f"{type(e).__name__}: {e}"


class FrameError(Exception):
    """The peer sent something that is not a frame (closed early, too large, not JSON)."""


class BadFrame(FrameError):
    """A whole frame was read but its body is not a usable JSON object: the stream is still
    in step, so the connection can answer and go on."""


def encode(obj: dict[str, Any]) -> bytes:
    try:
        body = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate cannot be UTF-8: escaped as \udXXX it is still valid JSON.
        body = json.dumps(obj, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    if len(body) > MAX_FRAME:
        raise Db0Error(
            "too_large",
            f"message of {len(body)} bytes is over the {MAX_FRAME}-byte frame limit",
            "send less at once (import in smaller batches)",
        )
    return len(body).to_bytes(HEADER_BYTES, "big") + body


def _recv_exact(sock: _socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise FrameError("connection closed")
        buf += chunk
    return bytes(buf)


def body_length(header: bytes | bytearray, max_frame: int = MAX_FRAME) -> int:
    """The length a frame's header announces; FrameError past `max_frame`."""
    length = int.from_bytes(header[:HEADER_BYTES], "big")
    if length > max_frame:
        raise FrameError(f"frame of {length} bytes is over the {max_frame}-byte limit")
    return length


def read_frame(sock: _socket.socket, max_frame: int = MAX_FRAME) -> dict[str, Any] | None:
    """Read one frame; None on a clean close before a header."""
    first = sock.recv(HEADER_BYTES)
    if not first:
        return None
    header = first if len(first) == HEADER_BYTES else first + _recv_exact(
        sock, HEADER_BYTES - len(first))
    return decode(_recv_exact(sock, body_length(header, max_frame)))


def decode(body: bytes) -> dict[str, Any]:
    """A frame's body as a JSON object; BadFrame (the connection stays usable) otherwise."""
    try:
        obj = json.loads(body)
    except UnicodeDecodeError as e:
        raise BadFrame(f"frame is not UTF-8 (byte {e.start})") from None
    except json.DecodeError as e:
        raise BadFrame(f"frame is not JSON: {e.msg} at char {e.pos}") from None
    except RecursionError:  # the parser's own limit (~1,000 levels); shapes allow MAX_DEPTH
        raise BadFrame("frame nests too deeply") from None
    if not isinstance(obj, dict):
        raise BadFrame("frame is not a JSON object")
    return obj


def request(req_id: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"v": PROTOCOL, "id": req_id, "method": method, "params": params}


def ok(req_id: Any, result: Any) -> dict[str, Any]:
    return {"v": PROTOCOL, "id": req_id, "ok": True, "result": result}


def err(req_id: Any, error: Db0Error) -> dict[str, Any]:
    return {"v": PROTOCOL, "id": req_id, "ok": False, "error": error.to_dict()}

"""JSON for the hot paths, without importing the `json` package.

`import json` compiles the regular expressions of json.decoder and json.encoder (and imports
`re` to do it): about as many instructions as starting Python itself, paid by every `db0` run.
The work is done by the same C accelerator `json` uses (`_json`): `loads` is the scanner
behind `json.loads`, `dumps` the encoder behind `json.dumps` when `indent` is None, with the
same defaults, so both give exactly what `json` gives (tests/test_wirejson.py checks them
against it). Errors are ValueError with `msg` and `pos`, as json.JSONDecodeError's (which
they are, when the C scanner raises them).
"""

from __future__ import annotations

import _json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_WS = " \t\n\r"
_CONSTANTS = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}


class DecodeError(ValueError):
    """Not JSON: `msg` says why, at character `pos`."""

    def __init__(self, msg: str, doc: str, pos: int) -> None:
        super().__init__(f"{msg}: char {pos}")
        self.msg = msg
        self.doc = doc
        self.pos = pos


class _Context:
    """What the C scanner reads from a json.JSONDecoder: json.loads' defaults."""
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__
    memo: dict[str, str] = {}


# The scanner reads only these attributes of its argument (a JSONDecoder in json's own use).
_scan = _json.make_scanner(_Context())  # type: ignore[arg-type]


def loads(s: str | bytes | bytearray) -> Any:
    """As json.loads for a UTF-8 (or str) document; UnicodeDecodeError for bad UTF-8."""
    if not isinstance(s, str):
        s = bytes(s).decode("utf-8")
    start = len(s) - len(s.lstrip(_WS))
    try:
        obj, end = _scan(s, start)
    except StopIteration as e:
        raise DecodeError("Expecting value", s, e.value) from None
    except ValueError as e:  # json.JSONDecodeError, raised by the C scanner
        raise DecodeError(str(getattr(e, "msg", e)), s, int(getattr(e, "pos", 0))) from None
    rest = len(s) - len(s[end:].lstrip(_WS))
    if rest != len(s):
        raise DecodeError("Extra data", s, rest)
    return obj


def _default(o: Any) -> Any:
    raise TypeError(f"Object of type {o.__class__.__name__} is not JSON serializable")


_ENCODERS: dict[tuple[bool, str, str], Any] = {}


def dumps(obj: Any, *, ensure_ascii: bool = True,
          separators: tuple[str, str] | None = None) -> str:
    """As json.dumps(obj, ensure_ascii=..., separators=...) with its other defaults."""
    item_sep, key_sep = separators if separators is not None else (", ", ": ")
    key = (ensure_ascii, item_sep, key_sep)
    enc = _ENCODERS.get(key)
    if enc is None:
        basestring = _json.encode_basestring_ascii if ensure_ascii else _json.encode_basestring
        enc = _ENCODERS[key] = (basestring, lambda: _json.make_encoder(
            {}, _default, basestring, None, key_sep, item_sep, False, False, True))
    basestring, make = enc
    if isinstance(obj, str):
        return str(basestring(obj))
    # A new encoder each call: its `markers` (the circular-reference check) are per call.
    return "".join(make()(obj, 0))

"""Declared parameter shapes: what each RPC method accepts, checked once at the edge.

Every method registers a `Params` table (name -> `P(shape, ...)`); the dispatcher checks a
request against it before the handler runs, so a handler only ever sees values of the declared
types, with defaults filled in. A value that does not fit is a `bad_request` naming the
parameter and what it expects; an unknown parameter is refused the same way (a typo is not
silently ignored). The same tables generate docs/protocol.md and the property test's inputs.

Strings never hold lone surrogates or NUL bytes (SQLite, logs and UTF-8 replies cannot carry
them faithfully), and free-form JSON (metadata, checkpoint state) nests at most MAX_DEPTH deep.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from db0.daemon.protocol import MAX_DEPTH, Db0Error

MISSING: Any = object()


class ShapeError(Exception):
    """A value that does not fit its shape; `path` is where inside it (e.g. `items[3].tags`)."""

    def __init__(self, expects: str, path: str = "", got: str = "") -> None:
        super().__init__(expects)
        self.expects = expects
        self.path = path
        self.got = got


def _shown(text: str, limit: int = 60) -> str:
    """A refused text as an error quotes it: whole when short, else its start (an error is
    one line, whatever was sent)."""
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text)} characters)"


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true/false"
    if isinstance(v, int | float):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__


def clean_text(v: str, path: str = "") -> str:
    """Refuse what cannot be stored faithfully: lone surrogates and NUL bytes."""
    if "\x00" in v:
        raise ShapeError("text without NUL bytes (strip them first)", path, "a NUL byte")
    try:
        v.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ShapeError("valid Unicode text", path, f"a lone surrogate at character {e.start}"
                         ) from None
    return v


class Shape:
    doc = "any value"

    def check(self, v: Any, path: str) -> Any:
        return v

    def fail(self, v: Any, path: str) -> ShapeError:
        return ShapeError(self.doc, path, _kind(v))


@dataclass
class Str(Shape):
    nonempty: bool = False
    max_len: int | None = None
    strip: bool = False

    @property
    def doc(self) -> str:  # type: ignore[override]
        return "a non-empty string" if self.nonempty else "a string"

    def check(self, v: Any, path: str) -> Any:
        if not isinstance(v, str):
            raise self.fail(v, path)
        clean_text(v, path)
        if self.strip:
            v = v.strip()
        if self.nonempty and not v.strip():
            raise ShapeError(self.doc, path, "an empty string")
        if self.max_len is not None and len(v) > self.max_len:
            raise ShapeError(f"at most {self.max_len} characters", path, f"{len(v)}")
        return v


@dataclass
class Int(Shape):
    lo: int | None = None
    hi: int | None = None

    @property
    def doc(self) -> str:  # type: ignore[override]
        if self.lo is not None and self.hi is not None:
            return f"a whole number from {self.lo} to {self.hi}"
        if self.lo is not None:
            return f"a whole number, at least {self.lo}"
        if self.hi is not None:
            return f"a whole number, at most {self.hi}"
        return "a whole number"

    def check(self, v: Any, path: str) -> Any:
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if not isinstance(v, int) or isinstance(v, bool):
            raise self.fail(v, path)
        if (self.lo is not None and v < self.lo) or (self.hi is not None and v > self.hi):
            raise ShapeError(self.doc, path, str(v))
        return v


@dataclass
class Num(Shape):
    lo: float | None = None
    hi: float | None = None

    @property
    def doc(self) -> str:  # type: ignore[override]
        if self.lo is not None and self.hi is not None:
            return f"a number from {self.lo:g} to {self.hi:g}"
        if self.lo is not None:
            return f"a number, at least {self.lo:g}"
        if self.hi is not None:
            return f"a number, at most {self.hi:g}"
        return "a number"

    def check(self, v: Any, path: str) -> Any:
        if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
            raise self.fail(v, path)
        if (self.lo is not None and v < self.lo) or (self.hi is not None and v > self.hi):
            raise ShapeError(self.doc, path, f"{v:g}")
        return float(v)


class Bool(Shape):
    doc = "true or false"

    def check(self, v: Any, path: str) -> Any:
        if not isinstance(v, bool):
            raise self.fail(v, path)
        return v


@dataclass
class OneOf(Shape):
    values: tuple[str, ...] = ()

    @property
    def doc(self) -> str:  # type: ignore[override]
        return "one of " + ", ".join(self.values)

    def check(self, v: Any, path: str) -> Any:
        if not isinstance(v, str) or v not in self.values:
            raise ShapeError(self.doc, path, _shown(v) if isinstance(v, str) else _kind(v))
        return v


@dataclass
class ListOf(Shape):
    item: Shape = field(default_factory=Shape)
    max_items: int | None = None
    # A comma-separated string is accepted for lists of strings (CLI-style `tags: "a,b"`).
    comma_string: bool = False

    @property
    def doc(self) -> str:  # type: ignore[override]
        return f"a list of {self.item.doc.removeprefix('a ').removeprefix('an ')}s" \
            if self.item.doc.startswith(("a ", "an ")) else f"a list ({self.item.doc})"

    def check(self, v: Any, path: str) -> Any:
        if self.comma_string and isinstance(v, str):
            v = [p for p in (s.strip() for s in v.split(",")) if p]
        if not isinstance(v, list):
            raise self.fail(v, path)
        if self.max_items is not None and len(v) > self.max_items:
            raise ShapeError(f"at most {self.max_items} items", path, f"{len(v)}")
        item = self.item
        try:  # an item's path is only made for its error, on the second pass
            return [item.check(x, path) for x in v]
        except ShapeError:
            pass
        return [item.check(x, f"{path}[{i}]") for i, x in enumerate(v)]


@dataclass
class Either(Shape):
    """The first of several shapes that fits (e.g. a duration as text or seconds)."""

    options: tuple[Shape, ...] = ()

    @property
    def doc(self) -> str:  # type: ignore[override]
        return " or ".join(o.doc for o in self.options)

    def check(self, v: Any, path: str) -> Any:
        """The first option's value that fits; else the error of the first option that took
        the value's kind and refused the value itself (text too long: "at most 32
        characters"), which says more than the list of kinds it could have been."""
        refused: ShapeError | None = None
        for o in self.options:
            try:
                return o.check(v, path)
            except ShapeError as e:
                if refused is None and e.got != _kind(v):
                    refused = e
        raise refused or ShapeError(self.doc, path, _kind(v))


@dataclass
class Json(Shape):
    """Free-form JSON (metadata, a state document): any value, nested at most MAX_DEPTH, its
    strings clean. `object_only` asks for a JSON object at the top."""

    object_only: bool = False

    @property
    def doc(self) -> str:  # type: ignore[override]
        return "a JSON object" if self.object_only else "any JSON value"

    def check(self, v: Any, path: str) -> Any:
        if self.object_only and not isinstance(v, dict):
            raise self.fail(v, path)
        if _clean_json(v):
            return v
        # Iterative, so depth is bounded here and never by Python's stack.
        stack: list[tuple[Any, int, str]] = [(v, 1, path)]
        while stack:
            x, depth, where = stack.pop()
            if depth > MAX_DEPTH:
                raise ShapeError(f"JSON nested at most {MAX_DEPTH} deep", path, "deeper")
            if isinstance(x, str):
                clean_text(x, where)
            elif isinstance(x, float) and not math.isfinite(x):
                raise ShapeError("finite numbers", where, str(x))
            elif isinstance(x, list):
                stack.extend((y, depth + 1, f"{where}[{i}]") for i, y in enumerate(x))
            elif isinstance(x, dict):
                for k, y in x.items():
                    clean_text(k, f"{where}.{k!r}")
                    stack.append((y, depth + 1, f"{where}.{k}"))
        return v


def _clean_text(x: str) -> bool:
    if "\x00" in x:
        return False
    if x.isascii():
        return True
    try:
        x.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _clean_json(v: Any) -> bool:
    """Whether `Json.check` passes `v` as it is, found without the paths its errors name
    (a batch of imported lines is thousands of objects); False for anything it would refuse
    or that is not plain JSON, which then takes its whole check."""
    stack: list[tuple[Any, int]] = [(v, 1)]
    while stack:
        x, depth = stack.pop()
        if depth > MAX_DEPTH:
            return False
        t = type(x)
        if t is str:
            if not _clean_text(x):
                return False
        elif t is dict:
            for k, y in x.items():
                if type(k) is not str or not _clean_text(k):
                    return False
                stack.append((y, depth + 1))
        elif t is list:
            stack.extend((y, depth + 1) for y in x)
        elif t is float:
            if not math.isfinite(x):
                return False
        elif t not in (int, bool, type(None)):
            return False
    return True


@dataclass
class MapOf(Shape):
    """A JSON object of any keys, each value of one shape (metadata filters, say)."""

    value: Shape = field(default_factory=Shape)
    max_items: int = 64

    @property
    def doc(self) -> str:  # type: ignore[override]
        return f"a JSON object of {self.value.doc} values"

    def check(self, v: Any, path: str) -> Any:
        if not isinstance(v, dict):
            raise self.fail(v, path)
        if len(v) > self.max_items:
            raise ShapeError(f"at most {self.max_items} keys", path, f"{len(v)}")
        return {clean_text(k, path): self.value.check(x, f"{path}.{k}") for k, x in v.items()}


@dataclass
class Obj(Shape):
    """A JSON object with declared fields (unknown ones refused)."""

    fields: Mapping[str, P] = field(default_factory=dict)

    doc = "a JSON object"

    def check(self, v: Any, path: str) -> Any:
        if not isinstance(v, dict):
            raise self.fail(v, path)
        return check_fields(self.fields, v, path)


@dataclass
class P:
    """One parameter: its shape, whether it is required, its default, and what it means."""

    shape: Shape
    doc: str = ""
    required: bool = False
    default: Any = MISSING
    nullable: bool = True  # null means "not given" (the CLI sends null for unset options)


def check_fields(fields: Mapping[str, P], given: Mapping[str, Any], path: str = ""
                 ) -> dict[str, Any]:
    out: dict[str, Any] = {}
    unknown = [k for k in given if k not in fields]
    if unknown:
        takes = ", ".join(sorted(fields)) or "nothing"
        raise ShapeError(f"one of the known parameters ({takes})", _join(path, unknown[0]),
                         "an unknown parameter")
    for name, p in fields.items():
        v = given.get(name, MISSING)
        if v is None and p.nullable:
            v = MISSING
        if v is MISSING:
            if p.required:
                raise ShapeError(p.shape.doc, _join(path, name), "nothing")
            if p.default is not MISSING:
                out[name] = p.default() if callable(p.default) else p.default
            continue
        out[name] = p.shape.check(v, _join(path, name))
    return out


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


CONTEXT = Obj({
    "user": P(Str(max_len=200), "user id"),
    "agent": P(Str(max_len=200), "agent name"),
    "session": P(Str(max_len=200), "session id"),
    "task": P(Str(max_len=200), "task id"),
})
COMMON: dict[str, P] = {"context": P(CONTEXT, "who is asking: user, agent, session, task")}


@dataclass
class Method:
    """One RPC method: its name, handler, declared parameters and whether it writes."""

    name: str
    fn: Callable[..., Any]
    params: dict[str, P]
    doc: str
    writes: bool
    gather: bool = False  # announced to the writer at once (its commit may wait for it)
    # The request as one rerunnable write job and nothing else (None: this request needs the
    # whole handler): the server runs such requests from many connections in one commit.
    job: Callable[..., Any] | None = None
    fields: dict[str, P] = field(init=False, repr=False)  # COMMON, then params

    def __post_init__(self) -> None:
        self.fields = {**COMMON, **self.params}

    def check(self, params: Any) -> dict[str, Any]:
        if not isinstance(params, dict):
            raise Db0Error("bad_request", f"{self.name}: params must be a JSON object",
                           "send {\"params\": {...}}")
        try:
            return check_fields(self.fields, params)
        except ShapeError as e:
            got = f", got {e.got}" if e.got else ""
            raise Db0Error("bad_request", f"{self.name}: {e.path} must be {e.expects}{got}",
                           f"docs/protocol.md gives the parameters of {self.name}",
                           field=e.path) from None


def markdown(methods: dict[str, Method]) -> str:
    """docs/protocol.md: the wire format, then every method with its parameters."""
    from db0.daemon.protocol import ERROR_EXIT, MAX_FRAME, PROTOCOL

    out = [
        "# The db0 wire protocol",
        "",
        "Generated from the daemon's method registry (`make docs`); a test keeps it current.",
        "",
        f"Protocol version {PROTOCOL}. A frame is a 4-byte big-endian length and a UTF-8 JSON "
        f"object of at most {MAX_FRAME} bytes. A request is `{{v, id, method, params}}`; the "
        "answer is `{v, id, ok: true, result}` or `{v, id, ok: false, error: {code, message, "
        "hint, field?}}` (`field`: the parameter that is wrong, as its path in the request, "
        "when one is). Clients connect to the Unix socket in the runtime directory (0700, the "
        "socket 0600, the peer's uid checked).",
        "",
        "Every method also takes `context`: `{user, agent, session, task}` (each a string, each "
        "optional; the daemon fills in the rest from its config). A parameter that does not fit "
        "its shape, or one the method does not take, is `bad_request` naming it.",
        "",
        "## Error codes",
        "",
        "| code | CLI exit status |",
        "|---|---|",
        *[f"| `{c}` | {n} |" for c, n in ERROR_EXIT.items()],
        "",
        "## Methods",
        "",
    ]
    for name in sorted(methods):
        m = methods[name]
        out += [f"### `{name}`" + (" (writes)" if m.writes else ""), ""]
        if m.doc:
            out += [" ".join(m.doc.split()), ""]
        if m.params:
            out += ["| parameter | shape | default | meaning |", "|---|---|---|---|"]
            for pname, p in m.params.items():
                default = ("**required**" if p.required else
                           "" if p.default is MISSING or callable(p.default) else
                           f"`{p.default!r}`")
                out.append(f"| `{pname}` | {p.shape.doc} | {default} | {p.doc} |")
            out.append("")
        else:
            out += ["No parameters.", ""]
    return "\n".join(out)

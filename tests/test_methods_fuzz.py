"""Every registered daemon method, fed values made from its own declared shape and arbitrary
JSON, through a real socket: never `internal`, always an answer, the daemon alive after, and
the database's integrity check clean. A new method is covered without editing this file.
"""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest
from conftest import Db0
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from db0.daemon.core import shapes
from db0.daemon.handlers import load_all

METHODS = load_all()
# Never fuzzed: stopping the daemon ends the test; a model install converts for a minute and a
# pull goes to the network; watch.add with an arbitrary folder could watch the whole disk.
SKIP = {"daemon.stop", "model.install", "model.pull", "watch.add"}


def _text() -> st.SearchStrategy[str]:
    return st.text(max_size=40)


def valid(shape: shapes.Shape) -> st.SearchStrategy[Any]:
    """Values that fit a shape (mostly: the edges of what fits are the interesting part)."""
    if isinstance(shape, shapes.Str):
        s = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
                    min_size=1 if shape.nonempty else 0,
                    max_size=min(shape.max_len or 60, 60))
        return s.filter(lambda x: x.strip()) if shape.nonempty else s
    if isinstance(shape, shapes.Int):
        return st.integers(shape.lo if shape.lo is not None else -10**6,
                           min(shape.hi if shape.hi is not None else 10**6, 10**6))
    if isinstance(shape, shapes.Num):
        return st.floats(shape.lo if shape.lo is not None else -1e6,
                         min(shape.hi if shape.hi is not None else 1e6, 1e6),
                         allow_nan=False, allow_infinity=False)
    if isinstance(shape, shapes.Bool):
        return st.booleans()
    if isinstance(shape, shapes.OneOf):
        return st.sampled_from(shape.values)
    if isinstance(shape, shapes.ListOf):
        return st.lists(valid(shape.item), max_size=4)
    if isinstance(shape, shapes.Either):
        return st.one_of([valid(o) for o in shape.options])
    if isinstance(shape, shapes.MapOf):
        return st.dictionaries(_text(), valid(shape.value), max_size=3)
    if isinstance(shape, shapes.Obj):
        return params_for(dict(shape.fields))
    if isinstance(shape, shapes.Json):
        leaves = st.none() | st.booleans() | st.integers() | _text()
        tree = st.recursive(leaves, lambda c: st.lists(c, max_size=3)
                            | st.dictionaries(_text(), c, max_size=3), max_leaves=8)
        return st.dictionaries(_text(), tree, max_size=3) if shape.object_only else tree
    return st.none()


def params_for(fields: dict[str, shapes.P]) -> st.SearchStrategy[dict[str, Any]]:
    required = {k: valid(p.shape) for k, p in fields.items() if p.required}
    optional = {k: valid(p.shape) for k, p in fields.items() if not p.required}
    return st.fixed_dictionaries(required, optional=optional)


ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
    max_leaves=12)


class Raw:
    """A socket to the daemon that sends exactly what it is given."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = self._open()

    def _open(self) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(60)
        s.connect(str(self.path))
        return s

    def send(self, body: bytes) -> dict[str, Any]:
        try:
            self.sock.sendall(struct.pack(">I", len(body)) + body)
            head = self._recv(4)
        except OSError:
            self.sock.close()
            self.sock = self._open()
            raise
        (n,) = struct.unpack(">I", head)
        out = json.loads(self._recv(n))
        assert isinstance(out, dict)
        return out

    def _recv(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            assert chunk, "the daemon closed the connection instead of answering"
            buf += chunk
        return buf


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Db0, Raw]]:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="db0f", dir="/tmp") as d:
        db0 = Db0(Path(d), env={"HOME": str(tmp_path_factory.mktemp("home"))})
        db0.run("remember", "a memory to find", "--key", "k")
        raw = Raw(Path(d) / "run" / "daemon.sock")
        yield db0, raw
        raw.sock.close()
        pid = db0.daemon_pid()
        db0.stop()
        assert pid is not None
        conn = apsw.Connection(str(Path(d) / "data" / "db0.sqlite3"))
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.close()


def _check(raw: Raw, frame: Any) -> None:
    body = json.dumps(frame, ensure_ascii=True).encode()
    resp = raw.send(body)
    assert "ok" in resp, resp
    if not resp["ok"]:
        error = resp["error"]
        assert error["code"] != "internal", (frame, resp)
        if "field" in error:  # the CLI says it in the option's name (db0cli.params.explain)
            assert error["code"] == "bad_request", resp
            assert error["message"].startswith(f"{frame['method']}: {error['field']} must be "
                                               ), resp


@pytest.mark.parametrize("name", sorted(set(METHODS) - SKIP))
def test_method_never_fails_inside(daemon: tuple[Db0, Raw], name: str) -> None:
    _db0, raw = daemon
    method = METHODS[name]

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck),
              database=None)
    @given(st.one_of(params_for(method.params), st.dictionaries(st.text(max_size=12), ANY_JSON,
                                                                max_size=4), ANY_JSON))
    def run(params: Any) -> None:
        _check(raw, {"v": 1, "id": 1, "method": name, "params": params})

    run()


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck),
          database=None)
@given(st.binary(max_size=200) | ANY_JSON.map(lambda v: json.dumps(v).encode()))
def test_any_frame_gets_an_answer(daemon: tuple[Db0, Raw], body: bytes) -> None:
    _db0, raw = daemon
    resp = raw.send(body)
    assert "ok" in resp
    if not resp["ok"]:
        assert resp["error"]["code"] != "internal"


def test_hostile_frames(daemon: tuple[Db0, Raw]) -> None:
    """Deep nesting, lone surrogates in ids and in what would be answered back."""
    _db0, raw = daemon
    deep = b"[" * 5000 + b"]" * 5000
    assert raw.send(b'{"v":1,"id":1,"method":"memory.get","params":{"id":' + deep + b"}}")[
        "error"]["code"] == "bad_request"
    echoed = raw.send(b'{"v":1,"id":"\\udc00","method":"daemon.hello","params":{}}')
    assert echoed["ok"] and echoed["id"] == "\udc00"
    for frame in (
        b'{"v":1,"id":1,"method":"memory.get","params":{"id":"\\ud800abcdef"}}',
        b'{"v":1,"id":1,"method":"memory.remember","params":{"content":"a\\u0000b"}}',
        b'{"v":1,"id":1,"method":"memory.remember","params":{"content":"x",'
        b'"metadata":{"a":' + b'{"b":' * 80 + b"1" + b"}" * 80 + b"}}}",
    ):
        resp = raw.send(frame)
        assert not resp["ok"] and resp["error"]["code"] == "bad_request", resp
    # The daemon is still there and answers normally.
    assert raw.send(b'{"v":1,"id":2,"method":"daemon.hello","params":{}}')["ok"]


_LEAF = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True)
         | st.text(alphabet=st.sampled_from("ab\u00e9\x00 \ud800"), max_size=6))
_JSONISH = st.recursive(_LEAF, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(
    st.text(alphabet=st.sampled_from("k\x00\ud800\u00e9"), max_size=3), kids, max_size=3),
    max_leaves=12)


@settings(max_examples=400, deadline=None)
@given(st.lists(_JSONISH, max_size=6))
def test_a_list_of_json_checks_as_item_by_item_with_paths(items: list[Any]) -> None:
    """ListOf(Json) first checks without building each value's path, and only for an error
    with them: the result, or the error and its path, is the whole check's."""
    shape = shapes.ListOf(shapes.Json(object_only=True))

    def outcome(fn: Any) -> Any:
        try:
            return ("ok", fn())
        except shapes.ShapeError as e:
            return ("error", str(e), e.__dict__)

    got = outcome(lambda: shape.check(items, "items"))
    fast, shapes._clean_json = shapes._clean_json, lambda v: False  # type: ignore[assignment]
    try:
        want = outcome(lambda: [shape.item.check(x, f"items[{i}]")
                                for i, x in enumerate(items)])
    finally:
        shapes._clean_json = fast  # type: ignore[assignment]
    assert got == want


def test_a_refused_value_is_told_by_what_refused_it() -> None:
    """Either names the limit a value of the right kind broke, not the kinds it could have
    been; Num and Int name their one bound; a long text is quoted by its start; a method's
    refusal names the parameter (Db0Error.field), nested ones by their path."""
    ttl = shapes.Either((shapes.Str(nonempty=True, max_len=32), shapes.Num(lo=1)))
    for value, expects, got in (("y" * 40, "at most 32 characters", "40"),
                                (" ", "a non-empty string", "an empty string"),
                                (0, "a number, at least 1", "0"),
                                ([1], ttl.doc, "a list")):
        with pytest.raises(shapes.ShapeError) as e:
            ttl.check(value, "ttl")
        assert (e.value.expects, e.value.got) == (expects, got)
    assert shapes.Int(hi=9).doc == "a whole number, at most 9"
    with pytest.raises(shapes.ShapeError) as e:
        shapes.OneOf(("a", "b")).check("z" * 20_000, "scope")
    assert len(e.value.got) < 100 and "20000 characters" in e.value.got
    from db0.daemon.protocol import Db0Error

    method = METHODS["memory.recall"]
    for params, field in (({"query": "x", "k": 0}, "k"),
                          ({"query": "x", "context": {"user": "u" * 300}}, "context.user"),
                          ({"query": "x", "tags": ["t" * 300]}, "tags[0]")):
        with pytest.raises(Db0Error) as d:
            method.check(params)
        assert d.value.field == field
        assert d.value.message.startswith(f"memory.recall: {field} must be ")
        assert Db0Error.from_dict(d.value.to_dict()).field == field

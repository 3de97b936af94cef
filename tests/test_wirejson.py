"""daemon/wirejson.py gives exactly what the json package gives, on any document (that the
hot commands import neither json nor re is tests/test_imports.py's)."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from db0.daemon import wirejson

scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True)
           | st.text() | st.text(alphabet=st.characters(min_codepoint=0xD800,
                                                        max_codepoint=0xDFFF), max_size=3))
documents = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner,
                                                                         max_size=4),
    max_leaves=25)


def same_value(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@settings(max_examples=400, deadline=None)
@given(documents, st.booleans(), st.sampled_from([None, (",", ":"), (", ", ": ")]))
def test_dumps_and_loads_match_json(doc: object, ascii_only: bool,
                                    seps: tuple[str, str] | None) -> None:
    text = json.dumps(doc, ensure_ascii=ascii_only, separators=seps)
    assert wirejson.dumps(doc, ensure_ascii=ascii_only, separators=seps) == text
    assert same_value(wirejson.loads(text), json.loads(text))


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=40) | st.binary(max_size=40).map(lambda b: b.decode("latin-1")))
def test_malformed_documents_fail_alike(text: str) -> None:
    try:
        want = json.loads(text)
    except json.JSONDecodeError as e:
        with pytest.raises(wirejson.DecodeError) as got:
            wirejson.loads(text)
        assert (got.value.msg, got.value.pos) == (e.msg, e.pos)
    else:
        assert same_value(wirejson.loads(text), want)


def test_edges() -> None:
    assert wirejson.loads(b' {"a": [1, 2.5, "\\u00e9"]} \n') == {"a": [1, 2.5, "é"]}
    with pytest.raises(UnicodeDecodeError):
        wirejson.loads(b'"\xff"')
    with pytest.raises(RecursionError):
        wirejson.loads("[" * 100_000 + "]" * 100_000)
    with pytest.raises(TypeError, match="not JSON serializable"):
        wirejson.dumps({"a": {1, 2}})
    with pytest.raises(ValueError, match="Circular"):
        loop: list[object] = []
        loop.append(loop)
        wirejson.dumps(loop)
    for bad in ("", "   ", "[1,]", '{"a" 1}', "[1] [2]", "nul"):
        with pytest.raises(ValueError):
            wirejson.loads(bad)


"""settingsfile and settingsio: random JSON documents in random layouts (2/4 spaces, tabs, one
line, CRLF, with and without a final newline, JSONC comments) keep every byte through an
insertion and its removal; the parser agrees with json.loads; malformed and very deep input
is refused with a position; the transaction keeps one backup and deletes what db0 created."""

from __future__ import annotations

import json
import os
import stat
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from db0.cli.settingsfile import (
    MAX_DEPTH,
    ParseError,
    add_block,
    cut_block,
    newline_of,
    parse,
)
from db0.cli.settingsio import CreatedFiles, SettingsFile
from db0.daemon.protocol import Db0Error

FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

scalars = (st.none() | st.booleans() | st.integers(-10**12, 10**12)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8))
values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=4)
                      | st.dictionaries(st.text(max_size=6), kids, max_size=4), max_leaves=25)
objects = st.dictionaries(st.text(max_size=6), values, max_size=5)

# (indent for json.dumps or None for one line, separators)
LAYOUTS: list[tuple[int | str | None, tuple[str, str]]] = [
    (2, (",", ": ")), (4, (",", ": ")), ("\t", (",", ": ")), (0, (",", ": ")),
    (None, (", ", ": ")), (None, (",", ":")), (3, (",", " : "))]


@st.composite
def styled(draw: st.DrawFn, value: st.SearchStrategy[Any] = objects,
           comments: bool = False) -> tuple[str, Any, tuple[Any, ...]]:
    """(text, its value, (indent, separators, newline, final newline)) with json.dumps'
    layout; with `comments`, JSONC comments on and between lines."""
    v = draw(value)
    indent: int | str | None
    indent, seps = draw(st.sampled_from(LAYOUTS[:4] if comments else LAYOUTS))
    nl, final, ascii_ = draw(st.sampled_from(["\n", "\r\n"])), draw(st.booleans()), \
        draw(st.booleans())
    text = json.dumps(v, indent=indent, separators=seps, ensure_ascii=ascii_)
    if comments:  # every line break is outside a string: comments can go at any line's end
        lines = []
        for plain in text.split("\n"):
            pad = plain[:len(plain) - len(plain.lstrip())]
            line = plain
            if draw(st.integers(0, 5)) == 0:
                lines.append(pad + "// a comment line, with \"quotes\" and { brackets")
            if draw(st.integers(0, 5)) == 0:
                line = pad + "/* block */ " + line.lstrip()
            if draw(st.integers(0, 4)) == 0:
                line += " // trailing: ], }"
            lines.append(line)
        text = "\n".join(lines)
    text = text.replace("\n", nl) + (nl if final else "")
    return text, v, (indent, seps, nl, final, ascii_)


def dumps_like(v: Any, style: tuple[Any, ...]) -> str:
    indent, seps, nl, final, _ = style
    return json.dumps(v, indent=indent, separators=seps, ensure_ascii=False).replace(
        "\n", nl) + (nl if final else "")


def shows_style(v: Any, style: tuple[Any, ...]) -> bool:
    """Whether a file written in `style` shows all of it: an object with a key (the colon),
    and on one line a container with two entries (the separator); not escaping non-ASCII."""
    nodes = [at(v, p) for p in containers(v)]
    return not style[4] and any(isinstance(n, dict) and n for n in nodes) and (
        style[0] is not None or any(len(n) > 1 for n in nodes))


def containers(v: Any, path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    out, stack = [], [(v, path)]
    while stack:
        x, p = stack.pop()
        if isinstance(x, dict | list):
            out.append(p)
            items = x.items() if isinstance(x, dict) else enumerate(x)
            stack.extend((c, (*p, k)) for k, c in items)
    return out


def at(v: Any, path: tuple[str | int, ...]) -> Any:
    for step in path:
        v = v[step]
    return v


def canon(v: Any) -> str:
    return json.dumps(v, sort_keys=True)


# -- reading ---------------------------------------------------------------------------------

@FAST
@given(styled(values))
def test_round_trip_and_value_agree_with_json(doc: tuple[str, Any, Any]) -> None:
    text, v, _ = doc
    d = parse(text)
    assert d.dumps() == text
    assert canon(d.value) == canon(json.loads(text)) == canon(v)


@FAST
@given(styled(comments=True))
def test_jsonc_round_trip(doc: tuple[str, Any, Any]) -> None:
    text, v, _ = doc
    d = parse(text, comments=True)
    assert d.dumps() == text and canon(d.value) == canon(v)
    if "//" in text or "/*" in text:
        with pytest.raises(ParseError, match="comment"):
            parse(text)


@FAST
@given(st.text(alphabet='{}[],:" \n\t0123456789.eE+-truefalsn\\/x', max_size=30))
def test_accepts_exactly_what_json_loads_accepts(text: str) -> None:
    if not text.strip(" \t\n\r"):  # the one difference: a blank settings file holds nothing
        assert parse(text).root is None and parse(text).dumps() == text
        return
    try:
        want = json.loads(text)
    except ValueError:
        with pytest.raises(ParseError) as e:
            parse(text)
        err = e.value
        assert 0 <= err.pos <= len(text)
        assert err.line == text.count("\n", 0, err.pos) + 1 and err.col >= 1
        assert f"line {err.line}, column {err.col}" in str(err)
        return
    d = parse(text)
    assert canon(d.value) == canon(want) and d.dumps() == text


@FAST
@given(styled(), st.data())
def test_corrupted_documents_refused_with_position(doc: tuple[str, Any, Any],
                                                    data: st.DataObject) -> None:
    text = doc[0]
    i = data.draw(st.integers(0, len(text)))
    bad = text[:i] + data.draw(st.sampled_from(list('{}[],:"x/'))) + text[i:]
    try:
        json.loads(bad)
        accepted = True
    except ValueError:
        accepted = False
    if accepted:
        assert canon(parse(bad).value) == canon(json.loads(bad))
    else:
        with pytest.raises(ParseError):
            parse(bad)


def test_errors_say_what_and_where() -> None:
    cases = {'{"a": 1,}': "trailing comma", '{"a" 1}': "expected ':'", '[1 2]': "expected ','",
             '{"a": "x': "never closed", '{"a": tru}': "expected a value", '{}x': "end",
             '{"a": NaN}': "expected a value", '{"a":\n  /* x */ 1}': "comment",
             '"\x01"': "control character", '{a: 1}': "key in double quotes"}
    for text, what in cases.items():
        with pytest.raises(ParseError, match=what):
            parse(text)
    with pytest.raises(ParseError) as e:
        parse('{\n  "a": 1\n  "b": 2\n}')
    assert (e.value.line, e.value.col) == (3, 3)
    assert parse('{"a": 1,}', trailing_commas=True).value == {"a": 1}
    with pytest.raises(ParseError, match="never closed"):
        parse('{"a": 1 /* x', comments=True)


def test_deep_and_huge_documents() -> None:
    deep = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    d = parse(deep)
    assert d.dumps() == deep and canon(d.value) == canon(json.loads(deep))
    path = (0,) * (MAX_DEPTH - 1)
    d.append(path, {"k": 1})
    assert d.get((*path, 0, "k")) == 1
    d.remove((*path, 0))
    assert d.dumps() == deep
    for n in (MAX_DEPTH + 1, 200_000):  # json.loads raises RecursionError on the second
        with pytest.raises(ParseError, match="nesting deeper"):
            parse("[" * n + "]" * n)
        with pytest.raises(ParseError, match="nesting deeper"):
            parse('{"a":' * n + "1" + "}" * n)
    # ~/.claude.json grows with every project: a few MB parse and edit in well under a second.
    big = {"numStartups": 1, "projects": {f"/home/u/p{i}": {
        "allowedTools": [], "history": [{"display": "x" * 40, "pastedContents": {}}] * 3,
        "lastCost": i / 7} for i in range(6000)}}
    text = json.dumps(big, indent=2)
    t0 = time.perf_counter()
    d = parse(text)
    d.update({**big, "mcpServers": {"db0": {"command": "db0", "args": ["mcp"]}}})
    out = d.dumps()
    took = time.perf_counter() - t0
    assert out.startswith(text[:-2]) and json.loads(out)["mcpServers"]["db0"]["args"] == ["mcp"]
    assert len(text) > 2_000_000 and took < 10, took


# -- editing ---------------------------------------------------------------------------------

def _insert_somewhere(d: Any, v: Any, data: st.DataObject) -> tuple[tuple[str | int, ...],
                                                                     Any]:
    """Insert a random value at a random place; (its path, the new whole value)."""
    where = data.draw(st.sampled_from(containers(v)))
    cont = at(v, where)
    new = data.draw(values)
    if isinstance(cont, dict):
        key = data.draw(st.text(max_size=6).filter(lambda k: k not in cont))
        index = data.draw(st.integers(0, len(cont)))
        d.insert(where, index, new, key=key)
        items = list(cont.items())
        items.insert(index, (key, new))
        path: tuple[str | int, ...] = (*where, key)
        replaced: Any = dict(items)
    else:
        index = data.draw(st.integers(0, len(cont)))
        d.insert(where, index, new)
        path, replaced = (*where, index), [*cont[:index], new, *cont[index:]]
    if not where:
        return path, replaced
    whole = json.loads(json.dumps(v))
    at(whole, where[:-1])[where[-1]] = replaced
    return path, whole


@FAST
@given(styled(), st.data())
def test_insert_then_remove_is_byte_identical(doc: tuple[str, Any, Any],
                                              data: st.DataObject) -> None:
    text, v, style = doc
    d = parse(text)
    path, whole = _insert_somewhere(d, v, data)
    edited = d.dumps()
    assert canon(json.loads(edited)) == canon(whole)
    # The layout is the file's own: what json.dumps in the same style writes.
    if shows_style(v, style):
        assert edited == dumps_like(whole, style)
    d2 = parse(edited)  # --remove runs later, on the file as written
    d2.remove(path)
    assert d2.dumps() == text


@FAST
@given(styled(comments=True), st.data())
def test_jsonc_insert_then_remove_is_byte_identical(doc: tuple[str, Any, Any],
                                                    data: st.DataObject) -> None:
    text, v, _ = doc
    d = parse(text, comments=True)
    path, whole = _insert_somewhere(d, v, data)
    edited = d.dumps()
    d2 = parse(edited, comments=True)
    assert canon(d2.value) == canon(whole)
    for comment in ("// a comment line", "/* block */", "// trailing"):
        assert edited.count(comment) == text.count(comment)
    d2.remove(path)
    assert d2.dumps() == text


@FAST
@given(styled(), st.data())
def test_update_and_back_is_byte_identical(doc: tuple[str, Any, Any],
                                           data: st.DataObject) -> None:
    """update() as integrate uses it: the new whole value in, the fewest edits made."""
    text, v, _style = doc
    d = parse(text)
    _, whole = _insert_somewhere(parse(text), v, data)
    d.update(whole)
    assert canon(parse(d.dumps()).value) == canon(whole)
    d.update(v)
    assert d.dumps() == text


def test_edits_in_a_commented_file() -> None:
    text = ('{\n  // the theme\n  "theme": "GitHub", // dark later\n  "hooks": {\n'
            '    /* mine */\n    "BeforeTool": []\n  }\n}\n')
    d = parse(text, comments=True)
    d.set(("hooks", "AfterAgent"), [{"hooks": [{"command": "db0 hook turn-end"}]}])
    d.set(("mcpServers", "db0"), {"command": "db0", "args": ["mcp"]})
    out = d.dumps()
    assert out.startswith('{\n  // the theme\n  "theme": "GitHub", // dark later\n')
    assert '    "BeforeTool": [],\n    "AfterAgent": [\n      {\n' in out
    assert out.endswith('  "mcpServers": {\n    "db0": {\n      "command": "db0",\n'
                        '      "args": [\n        "mcp"\n      ]\n    }\n  }\n}\n')
    d = parse(out, comments=True)
    d.remove(("mcpServers",))
    d.remove(("hooks", "AfterAgent"))
    assert d.dumps() == text
    d.remove(("theme",))  # a user's entry goes with its line and its trailing comment
    assert d.dumps() == ('{\n  // the theme\n  "hooks": {\n    /* mine */\n'
                         '    "BeforeTool": []\n  }\n}\n')


def test_get_set_append_remove() -> None:
    d = parse('{"a": {"b": [1, 2]}, "a": {"b": [3]}}')  # the last duplicate wins
    assert d.get(("a", "b", 0)) == 3
    d.append(("a", "b"), 4)
    d.set(("a", "c"), True)
    assert d.dumps() == '{"a": {"b": [1, 2]}, "a": {"b": [3, 4], "c": true}}'
    d.remove(("a",))
    assert d.dumps() == "{}" and d.is_empty()
    with pytest.raises(KeyError):
        d.get(("nope",))
    with pytest.raises(IndexError):
        parse("[1]").remove((3,))
    with pytest.raises(TypeError):
        parse("[1]").insert((), 0, 1, key="k")


# -- TOML ------------------------------------------------------------------------------------

BLOCK = '# >>> db0 >>>\n[mcp_servers.db0]\ncommand = "db0"\nargs = ["mcp"]\n# <<< db0 <<<\n'
toml_lines = st.lists(st.sampled_from(['model = "x"', "# a comment", "", "[t]", "k = 1",
                                       '[mcp_servers.gh]', 'args = []   # keep']), max_size=6)


@FAST
@given(toml_lines, st.sampled_from(["\n", "\r\n"]), st.booleans())
def test_toml_block_add_then_cut_is_byte_identical(lines: list[str], nl: str,
                                                   final: bool) -> None:
    text = nl.join(lines) + (nl if final and lines else "")
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        assume(False)
    added = add_block(text, BLOCK)
    assert tomllib.loads(added)["mcp_servers"]["db0"]["args"] == ["mcp"]
    assert added.startswith(text) and added.count("\n") == added.count(newline_of(text))
    assert cut_block(added, "# >>> db0 >>>", "# <<< db0 <<<") == text


# -- the transaction -------------------------------------------------------------------------

def test_one_backup_atomic_mode_and_symlink(tmp_path: Path) -> None:
    created = CreatedFiles(tmp_path / "record.json")
    real = tmp_path / "dotfiles" / "settings.json"
    real.parent.mkdir()
    real.write_bytes(b'{\n    "a": 1\n}')
    real.chmod(0o600)
    link = tmp_path / "settings.json"
    link.symlink_to(real)
    for n in range(3):
        f = SettingsFile.read(link, "json", created)
        f.update({**f.value, f"k{n}": n})
        before = link.read_bytes()
        backup, deleted = f.commit()
        assert backup == tmp_path / "settings.json.db0-backup" and not deleted
        assert backup.read_bytes() == before  # what was there just before this write
    assert link.is_symlink() and real.read_bytes() == (
        b'{\n    "a": 1,\n    "k0": 0,\n    "k1": 1,\n    "k2": 2\n}')
    assert stat.S_IMODE(real.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "dotfiles", "settings.json", "settings.json.db0-backup"]  # one backup, no temp file
    f = SettingsFile.read(link, "json", created)
    f.update(f.value)
    assert f.commit() == (None, False)  # nothing changed: no write, no new backup


def test_created_file_deleted_when_nothing_else_is_in_it(tmp_path: Path) -> None:
    created = CreatedFiles(tmp_path / "data" / "record.json")
    p = tmp_path / "home" / ".claude.json"
    f = SettingsFile.read(p, "json", created)
    f.update({"mcpServers": {"db0": {"command": "db0"}}})
    assert f.commit() == (None, False) and p in created
    assert p.read_text() == ('{\n  "mcpServers": {\n    "db0": {\n      "command": "db0"\n'
                             '    }\n  }\n}\n')
    f = SettingsFile.read(p, "json", created)
    f.update({})
    assert f.commit() == (None, True)
    assert not p.exists() and not (p.parent / ".claude.json.db0-backup").exists()
    assert p not in created
    # Created by db0, then the agent wrote into it: --remove keeps the file.
    f = SettingsFile.read(p, "json", created)
    f.update({"mcpServers": {"db0": {"command": "db0"}}})
    f.commit()
    f = SettingsFile.read(p, "json", created)
    f.update({**f.value, "numStartups": 3})
    f.commit()
    f = SettingsFile.read(p, "json", created)
    f.update({"numStartups": 3})
    assert f.commit()[1] is False and json.loads(p.read_text()) == {"numStartups": 3}
    # A user's own empty file is never deleted.
    mine = tmp_path / "home" / "mine.json"
    mine.write_text("{}\n")
    f = SettingsFile.read(mine, "json", created)
    f.update({"x": 1})
    f.commit()
    f = SettingsFile.read(mine, "json", created)
    f.update({})
    f.commit()
    assert mine.read_text() == "{}\n"


def test_refusals_are_one_line_with_a_position(tmp_path: Path) -> None:
    created = CreatedFiles(tmp_path / "record.json")
    cases = {"a.json": ('{\n  "a": 1,\n}\n', "json", "line 2, column 9"),
             "b.json": ('{\n  // hi\n  "a": 1\n}\n', "json", "line 2, column 3"),
             "c.json": ('{"a": 1,}', "jsonc", "line 1, column 8"),
             "d.toml": ("x = = 1\n", "toml", "line 1, column 5"),
             "e.json": ("[1]", "json", "not a JSON object")}
    for name, (text, syntax, where) in cases.items():
        p = tmp_path / name
        p.write_text(text)
        with pytest.raises(Db0Error) as e:
            SettingsFile.read(p, syntax, created)
        assert where in e.value.message and "\n" not in e.value.message + e.value.hint
        assert str(p) in e.value.message and "fix" in e.value.hint
    (tmp_path / "f.json").write_bytes(b'{"a": "\xff"}')
    with pytest.raises(Db0Error, match="not UTF-8"):
        SettingsFile.read(tmp_path / "f.json", "json", created)
    ok = tmp_path / "g.json"
    ok.write_text('{\n  // Gemini strips comments\n  "theme": "x"\n}\n')
    assert SettingsFile.read(ok, "jsonc", created).value == {"theme": "x"}


def test_failed_or_raced_write_leaves_the_file(tmp_path: Path) -> None:
    created = CreatedFiles(tmp_path / "record.json")
    p = tmp_path / "settings.json"
    p.write_text('{"a": 1}')
    f = SettingsFile.read(p, "json", created)
    f.update({"a": 2})
    (tmp_path / "settings.json.db0-backup").mkdir()  # the backup cannot be written
    with pytest.raises(OSError):
        f.commit()
    assert p.read_text() == '{"a": 1}'
    assert sorted(os.listdir(tmp_path)) == ["settings.json", "settings.json.db0-backup"]
    (tmp_path / "settings.json.db0-backup").rmdir()
    f = SettingsFile.read(p, "json", created)
    f.update({"a": 3})
    p.write_text('{"a": 1, "b": 0}')  # the agent wrote meanwhile: its change is not lost
    with pytest.raises(Db0Error, match="changed while db0 was editing it"):
        f.commit()
    assert p.read_text() == '{"a": 1, "b": 0}'
    f = SettingsFile.read(tmp_path / "new.json", "json", created)
    f.update({"x": 1})
    (tmp_path / "new.json").write_text("{}")
    with pytest.raises(Db0Error, match="changed while"):
        f.commit()

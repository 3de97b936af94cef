"""Format-preserving edits of other tools' settings: JSON, JSONC and a TOML block.

A `Document` is a JSON (or JSONC: `//` and `/* */` comments, trailing commas when allowed)
text parsed into a tree that keeps every character: each entry holds the whitespace and
comments before it, its key, its colon, its value and whether a comma follows; each container
holds what is left before its closing bracket. Serialising concatenates them, so what an edit
does not touch comes back byte-identical (indentation, CRLF, key order, final newline or not).

Rules the edits keep (tests/test_settingsfile.py checks them on random documents):
- an entry inserted takes the layout of its siblings (their line break and indentation), or,
  in an empty container, the indentation detected from the file;
- removing an entry takes out its own line (or, on one line, its separator) and its comma, and
  leaves the comments around it where they were;
- an insertion followed by the removal of what it inserted restores the original text exactly
  (`db0 integrate --remove` relies on this), with one exception: an empty container written
  with blanks inside (`{ }`) comes back as `{}`.
The parser is iterative and refuses nesting deeper than MAX_DEPTH with a position, so no input
can raise RecursionError. Standard library only: the CLI imports this.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Iterator
from json.decoder import scanstring  # type: ignore[attr-defined]
from typing import Any

MAX_DEPTH = 500  # deeper than any settings file; below Python's recursion limit for json.dumps
WS = " \t\n\r"
CLOSE = {"{": "}", "[": "]"}
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?")
_BLANKS = re.compile(r"[ \t\n\r]*")
_TRIVIA = re.compile(r"(?:[ \t\n\r]+|//[^\n]*|/\*.*?\*/)*", re.DOTALL)
_LITERALS = (("true", True), ("false", False), ("null", None))
Path_ = tuple[str | int, ...]


class ParseError(ValueError):
    """Not valid JSON (or JSONC): what was expected, and where (1-based line and column)."""

    def __init__(self, what: str, text: str, pos: int) -> None:
        self.what, self.pos = what, pos
        self.line = text.count("\n", 0, pos) + 1
        self.col = pos - text.rfind("\n", 0, pos)
        super().__init__(f"{what} at line {self.line}, column {self.col}")


class Scalar:
    __slots__ = ("raw", "value")

    def __init__(self, raw: str, value: Any) -> None:
        self.raw, self.value = raw, value


class Entry:
    """One member of an object (key set) or item of an array (key None). `before` is the
    trivia before it, `colon` the text from its key to its value, `after` the trivia between
    its value and its comma (empty when no comma follows: that trivia is the container's tail).
    """

    __slots__ = ("after", "before", "colon", "comma", "key", "key_raw", "value")

    def __init__(self, before: str, key_raw: str | None = None, key: str | None = None,
                 colon: str = "") -> None:
        self.before, self.key_raw, self.key, self.colon = before, key_raw, key, colon
        self.value: Node = Scalar("null", None)
        self.after, self.comma = "", False


class Container:
    __slots__ = ("entries", "kind", "tail")

    def __init__(self, kind: str) -> None:
        self.kind = kind  # "{" or "["
        self.entries: list[Entry] = []
        self.tail = ""  # trivia before the closing bracket (after the last comma, if any)


Node = Scalar | Container


# -- parsing ---------------------------------------------------------------------------------

def _fail(what: str, text: str, pos: int, comments: bool) -> ParseError:
    if text.startswith("/*", pos) and comments:
        return ParseError("a /* comment that is never closed", text, pos)
    if text.startswith(("//", "/*"), pos):
        return ParseError("a comment, which this file may not hold (plain JSON)", text, pos)
    if pos >= len(text):
        return ParseError(what + " before the end of the file", text, pos)
    return ParseError(f"{what}, found {text[pos]!r}", text, pos)


def _string(text: str, pos: int) -> tuple[str, int]:
    """The string starting with the quote at `pos`, decoded as json.loads does, and its end."""
    try:
        value, end = scanstring(text, pos + 1, True)
    except json.JSONDecodeError as e:
        what = ("a string that is never closed" if e.msg.startswith("Unterminated") else
                "a control character in a string (write it as \\n, \\t or \\u00XX)"
                if e.msg.startswith("Invalid control") else
                "an invalid \\ escape in a string" if "escape" in e.msg else e.msg)
        raise ParseError(what, text, e.pos) from None
    return value, end


def parse(text: str, *, comments: bool = False, trailing_commas: bool = False) -> Document:
    """The tree of `text`; ParseError where it is not JSON (JSONC with `comments`)."""
    match = (_TRIVIA if comments else _BLANKS).match

    def skip(at: int) -> int:  # past the whitespace (and comments) at `at`
        m = match(text, at)
        return m.end() if m else at

    n = len(text)
    pos = 1 if text.startswith("\ufeff") else 0
    p = skip(pos)
    lead = text[:p]
    if p == n:
        return Document(lead, None, "", comments, trailing_commas)
    pos = p
    root: Node | None = None
    stack: list[Container] = []
    entry: Entry | None = None  # the entry whose value comes next (None: the root)
    while True:
        # A value.
        c = text[pos] if pos < n else ""
        node: Node
        if c in CLOSE:
            if len(stack) >= MAX_DEPTH:
                raise ParseError(f"nesting deeper than {MAX_DEPTH} levels", text, pos)
            node = Container(c)
            p = skip(pos + 1)
            if text.startswith(CLOSE[c], p):
                node.tail, pos = text[pos + 1:p], p + 1
            else:
                stack.append(node)
                pos = pos + 1
        elif c == '"':
            s, end = _string(text, pos)
            node, pos = Scalar(text[pos:end], s), end
        else:
            m = _NUMBER.match(text, pos)
            if m:
                raw = m.group()
                try:
                    num = float(raw) if m.group(1) or m.group(2) else int(raw)
                except ValueError:  # more digits than int() reads (sys.int_info)
                    raise ParseError("a number too long to read", text, pos) from None
                node, pos = Scalar(raw, num), m.end()
            else:
                for word, val in _LITERALS:
                    if text.startswith(word, pos):
                        node, pos = Scalar(word, val), pos + len(word)
                        break
                else:
                    raise _fail("expected a value", text, pos, comments)
        if entry is None:
            root = node
        else:
            entry.value = node
        # After a value: a comma, a closing bracket, or the next entry of a new container.
        opened = bool(stack) and node is stack[-1]
        while True:
            if opened:
                cont, before_end = stack[-1], pos
                opened = False
            else:
                if not stack:
                    p = skip(pos)
                    if p != n:
                        raise _fail("expected the end of the file", text, p, comments)
                    assert root is not None
                    return Document(lead, root, text[pos:], comments, trailing_commas)
                cont = stack[-1]
                last = cont.entries[-1]
                p = skip(pos)
                close = CLOSE[cont.kind]
                if text.startswith(close, p):
                    cont.tail, pos = text[pos:p], p + 1
                    stack.pop()
                    continue
                if not text.startswith(",", p):
                    raise _fail(f"expected ',' or '{close}'", text, p, comments)
                last.after, last.comma = text[pos:p], True
                before_end = p + 1
                q = skip(before_end)
                if text.startswith(close, q):
                    if not trailing_commas:
                        raise ParseError("a trailing comma, which this file may not hold",
                                         text, p)
                    cont.tail, pos = text[before_end:q], q + 1
                    stack.pop()
                    continue
            # The next entry of `cont`, its trivia starting at before_end.
            q = skip(before_end)
            before = text[before_end:q]
            if cont.kind == "[":
                entry = Entry(before)
                pos = q
            else:
                if not text.startswith('"', q):
                    raise _fail("expected a key in double quotes", text, q, comments)
                key, kend = _string(text, q)
                r = skip(kend)
                if not text.startswith(":", r):
                    raise _fail("expected ':'", text, r, comments)
                v = skip(r + 1)
                entry = Entry(before, text[q:kend], key, text[kend:v])
                pos = v
            cont.entries.append(entry)
            break


# -- the document ----------------------------------------------------------------------------

def _own_line(before: str) -> int:
    """Where the entry's own line starts in its `before` (the last line break), or -1."""
    i = before.rfind("\n")
    if i > 0 and before[i - 1] == "\r":
        i -= 1
    return i


def _indent_of(before: str) -> str | None:
    """The indentation of the line an entry starts on, if it starts a line."""
    i = before.rfind("\n")
    if i < 0:
        return None
    rest = before[i + 1:]
    return rest[:len(rest) - len(rest.lstrip(" \t"))]


def _split_tail(tail: str) -> tuple[str, str]:
    """(what stays on the last entry's line, the rest from the first line break on)."""
    i = tail.find("\n")
    if i < 0:
        return "", tail
    if i > 0 and tail[i - 1] == "\r":
        i -= 1
    return tail[:i], tail[i:]


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


class Document:
    """A parsed JSON/JSONC text that can be read, edited and written back (see the module)."""

    def __init__(self, lead: str, root: Node | None, trail: str, comments: bool = False,
                 trailing_commas: bool = False) -> None:
        self.lead, self.root, self.trail = lead, root, trail
        self.comments, self.trailing_commas = comments, trailing_commas
        self._cached_style: Style | None = None  # the file's own, found at the first edit

    # -- reading --

    def dumps(self) -> str:
        out = [self.lead]
        stack: list[Node | str] = [self.trail]
        if self.root is not None:
            stack.append(self.root)
        while stack:
            x = stack.pop()
            if isinstance(x, str):
                out.append(x)
            elif isinstance(x, Scalar):
                out.append(x.raw)
            else:
                out.append(x.kind)
                stack.append(CLOSE[x.kind])
                stack.append(x.tail)
                for e in reversed(x.entries):
                    stack.append("," if e.comma else "")
                    stack.append(e.after)
                    stack.append(e.value)
                    stack.append(e.colon)
                    stack.append(e.key_raw or "")
                    stack.append(e.before)
        return "".join(out)

    @property
    def value(self) -> Any:
        """The document as json.loads would give it (the last of duplicate keys wins)."""
        return None if self.root is None else _to_python(self.root)

    def get(self, path: Path_) -> Any:
        """The value at `path` (keys and indexes); KeyError or IndexError if it is not there."""
        return _to_python(self._locate(path)[-1][1])

    def is_empty(self) -> bool:
        """Nothing but blanks, or `{}` with blanks around it: nothing anyone wrote is here."""
        r = self.root
        return (self.lead + self.trail).strip(WS + "\ufeff") == "" and (
            r is None or (isinstance(r, Container) and r.kind == "{" and not r.entries
                          and r.tail.strip(WS) == ""))

    # -- editing --

    def set(self, path: Path_, value: Any) -> None:
        """Put `value` at `path`: replaced in place if there, else inserted at the end of its
        object; objects missing on the way are created."""
        if not path:
            self._set_root(value)
            return
        chain = self._walk(path)
        if len(chain) == len(path) + 1:
            self._replace(chain, value)
            return
        parent = chain[-1][1]
        first, *rest = path[len(chain) - 1:]
        if not (isinstance(parent, Container) and parent.kind == "{" and isinstance(first, str)):
            raise (IndexError if isinstance(first, int) else KeyError)(first)
        for key in reversed(rest):
            value = {key: value}
        self._insert(chain, len(parent.entries), first, value)

    def insert(self, path: Path_, index: int, value: Any, key: str | None = None) -> None:
        """Insert into the container at `path` before position `index` (len: at the end); an
        object needs `key`, which must not be there yet."""
        chain = self._locate(path)
        cont = chain[-1][1]
        if not isinstance(cont, Container) or (cont.kind == "{") != (key is not None):
            raise TypeError(f"{path}: not an {'object' if key is not None else 'array'}")
        if key is not None and any(e.key == key for e in cont.entries):
            raise KeyError(f"{key!r} is there already")
        if not 0 <= index <= len(cont.entries):
            raise IndexError(index)
        self._insert(chain, index, key, value)

    def append(self, path: Path_, value: Any) -> None:
        """Append `value` to the array at `path`."""
        cont = self._locate(path)[-1][1]
        if not isinstance(cont, Container) or cont.kind != "[":
            raise TypeError(f"{path}: not an array")
        self.insert(path, len(cont.entries), value)

    def remove(self, path: Path_) -> None:
        """Take out the key (every duplicate of it) or the array element at `path`."""
        if not path:
            raise KeyError("the root cannot be removed")
        chain = self._locate(path)
        cont = chain[-2][1]
        assert isinstance(cont, Container)
        if cont.kind == "{":
            for i in reversed(range(len(cont.entries))):
                if cont.entries[i].key == path[-1]:
                    _remove(cont, i)
        else:
            _remove(cont, cont.entries.index(chain[-1][0]))  # type: ignore[arg-type]

    def update(self, value: Any) -> None:
        """Make the document hold `value` with the fewest edits: keys and elements that stay
        keep their bytes; new keys go after the key they follow in `value`; arrays are
        diffed element by element."""
        if self.root is None or not isinstance(value, dict | list):
            self._set_root(value)
        else:
            self._reconcile([(None, self.root)], value)
        got = self.value
        if _canon(got) != _canon(value):  # an invariant: a bug here must not reach a file
            raise AssertionError("settingsfile: the edited document does not hold the value")

    # -- internals --

    def _walk(self, path: Path_) -> list[tuple[Entry | None, Node]]:
        """The chain (entry, node) from the root along `path`, as far as it exists."""
        if self.root is None:
            raise KeyError("the document is empty")
        chain: list[tuple[Entry | None, Node]] = [(None, self.root)]
        for step in path:
            node = chain[-1][1]
            found: Entry | None = None
            if isinstance(node, Container) and node.kind == "{" and isinstance(step, str):
                for e in node.entries:
                    if e.key == step:
                        found = e  # the last duplicate wins, as in json.loads
            elif (isinstance(node, Container) and node.kind == "[" and isinstance(step, int)
                  and -len(node.entries) <= step < len(node.entries)):
                found = node.entries[step]
            if found is None:
                break
            chain.append((found, found.value))
        return chain

    def _locate(self, path: Path_) -> list[tuple[Entry | None, Node]]:
        chain = self._walk(path)
        if len(chain) != len(path) + 1:
            step = path[len(chain) - 1]
            raise (IndexError if isinstance(step, int) else KeyError)(step)
        return chain

    def _style(self) -> Style:
        if self._cached_style is None:
            self._cached_style = Style.detect(self)
        return self._cached_style

    def _set_root(self, value: Any) -> None:
        style = self._style()
        if self.root is None:  # an empty file: the value alone, and a final line break
            self.lead, self.trail = self.lead[:1] if self.lead[:1] == "\ufeff" else "", \
                style.newline
        self.root = style.build(value, _indent_of(self.lead) or "")

    def _line_indent(self, chain: list[tuple[Entry | None, Node]]) -> str:
        for e, _ in reversed(chain):
            if e is not None:
                ind = _indent_of(e.before)
                if ind is not None:
                    return ind
        return _indent_of(self.lead) or ""

    def _replace(self, chain: list[tuple[Entry | None, Node]], value: Any) -> None:
        e = chain[-1][0]
        if e is None:
            self._set_root(value)
            return
        e.value = self._style().build(value, self._line_indent(chain))

    def _insert(self, chain: list[tuple[Entry | None, Node]], index: int, key: str | None,
                value: Any) -> None:
        cont = chain[-1][1]
        assert isinstance(cont, Container)
        style = self._style()
        entries = cont.entries
        new = Entry("")
        if key is not None:
            new.key_raw, new.key, new.colon = json.dumps(key, ensure_ascii=False), key, \
                self._colon(cont)
        if not entries:
            ind = self._line_indent(chain)
            own = "" if style.indent is None else style.newline + ind + style.indent
            head, rest = _split_tail(cont.tail)
            if cont.tail.strip(WS) == "":  # blanks only: lay it out afresh
                head, rest = "", "" if style.indent is None else style.newline + ind
            new.value = style.build(value, _indent_of(own) or ind)
            new.before, cont.tail = head + own, rest
            entries.append(new)
            return
        # Laid out as its siblings are: the one it follows, or the first.
        sib = entries[index - 1] if index else entries[0]
        k = _own_line(sib.before)
        if k >= 0:  # one entry a line
            own = ("\r\n" if sib.before[k] == "\r" else "\n") + (_indent_of(sib.before) or "")
            new.value = style.build(value, _indent_of(own) or "")
        else:  # entries on one line, separated by blanks
            own = next((e.before for e in entries[1:]
                        if "\n" not in e.before and e.before.strip(WS) == ""), style.sep)
            new.value = style.build(value, self._line_indent(chain))
        if index == len(entries):
            last = entries[-1]
            head, rest = _split_tail(cont.tail) if k >= 0 else ("", cont.tail)
            new.before, cont.tail = head + own, rest
            if last.comma:  # a trailing comma: the new last entry has one too
                new.comma = True
            else:
                last.comma = True
            entries.append(new)
            return
        nxt = entries[index]
        new.comma = True
        if k >= 0:  # what ends the line before stays there (a comment after the comma)
            head = _split_tail(nxt.before)[0] if "\n" in nxt.before else ""
            new.before, nxt.before = head + own, nxt.before[len(head):]
        elif index == 0:
            new.before, nxt.before = nxt.before, own
        else:
            new.before = own
        entries.insert(index, new)

    def _colon(self, cont: Container) -> str:
        for e in cont.entries:
            if e.colon.strip(WS) == ":":
                return e.colon
        return self._style().colon

    def _reconcile(self, chain: list[tuple[Entry | None, Node]], value: Any) -> None:
        node = chain[-1][1]
        if _canon(_to_python(node)) == _canon(value):
            return
        if isinstance(node, Container) and node.kind == "{" and isinstance(value, dict):
            for i in reversed(range(len(node.entries))):
                if node.entries[i].key not in value:
                    _remove(node, i)
            at = {e.key: i for i, e in enumerate(node.entries)}  # the last duplicate wins
            prev = -1  # the entry the next new key goes after
            for key, val in value.items():
                if key in at:
                    e = node.entries[at[key]]
                    self._reconcile([*chain, (e, e.value)], val)
                    prev = at[key]
                else:
                    prev += 1
                    self._insert(chain, prev, key, val)
                    at = {e.key: i for i, e in enumerate(node.entries)}
        elif isinstance(node, Container) and node.kind == "[" and isinstance(value, list):
            from difflib import SequenceMatcher

            old = [_canon(_to_python(e.value)) for e in node.entries]
            new = [_canon(v) for v in value]
            ops = SequenceMatcher(None, old, new, autojunk=False).get_opcodes()
            for tag, i1, i2, j1, j2 in reversed(ops):
                if tag == "equal":
                    continue
                paired = min(i2 - i1, j2 - j1) if tag == "replace" else 0
                for i in reversed(range(i1 + paired, i2)):
                    _remove(node, i)
                for j in range(j1 + paired, j2):
                    self._insert(chain, i1 + j - j1, None, value[j])
                for k in range(paired):
                    e = node.entries[i1 + k]
                    self._reconcile([*chain, (e, e.value)], value[j1 + k])
        else:
            self._replace(chain, value)


def _remove(cont: Container, i: int) -> None:
    """Take entry i out with its comma and its own line (see the module's rules)."""
    entries = cont.entries
    e = entries.pop(i)
    follower = entries[i] if e.comma and i < len(entries) else None
    k = _own_line(e.before)
    if k >= 0:  # on a line of its own: the line goes, with what ends it after the comma
        keep = e.before[:k]  # comments above it and the end of the line before stay
        if follower is not None:
            if "\n" not in follower.before:  # it was on e's line: it takes e's place
                follower.before = e.before
            else:
                follower.before = keep + follower.before[len(_split_tail(follower.before)[0]):]
        else:
            cont.tail = keep + cont.tail[len(_split_tail(cont.tail)[0]):]
    else:  # on one line with others: its separator goes
        keep = e.before if i == 0 else e.before.lstrip(WS)
        if follower is not None:
            follower.before = keep + (follower.before.lstrip(WS) if i == 0 else follower.before)
        else:
            cont.tail = keep + cont.tail
    if not e.comma and entries:  # it was last: the one before it loses its comma
        prev = entries[-1]
        cont.tail = prev.after + cont.tail
        prev.after, prev.comma = "", False
    if not entries and cont.tail.strip(WS) == "":
        cont.tail = ""


def _to_python(node: Node) -> Any:
    if isinstance(node, Scalar):
        return node.value
    out: Any = {} if node.kind == "{" else []
    stack: list[tuple[Container, Any]] = [(node, out)]
    while stack:
        cont, target = stack.pop()
        for e in cont.entries:
            v = e.value
            if isinstance(v, Scalar):
                x = v.value
            else:
                x = {} if v.kind == "{" else []
                stack.append((v, x))
            if cont.kind == "{":
                target[e.key] = x
            else:
                target.append(x)
    return out


class Style:
    """How a file lays out what db0 adds: line break, indentation unit (None: all on one
    line), the colon and the separator after a comma on one line."""

    def __init__(self, newline: str = "\n", indent: str | None = "  ", colon: str = ": ",
                 sep: str = " ") -> None:
        self.newline, self.indent, self.colon, self.sep = newline, indent, colon, sep

    @classmethod
    def detect(cls, doc: Document) -> Style:
        style = cls()
        text_has_crlf = False
        indent: str | None = None
        multiline = False
        colon = sep = None
        for cont, parent_indent in _containers(doc):
            for n, e in enumerate(cont.entries):
                if "\n" in e.before:
                    multiline = True
                    text_has_crlf = text_has_crlf or "\r\n" in e.before
                    child = _indent_of(e.before) or ""
                    if indent is None and child.startswith(parent_indent) and n == 0:
                        indent = child[len(parent_indent):]
                elif n and sep is None and e.before.strip(WS) == "":
                    sep = e.before
                if colon is None and e.key is not None and e.colon.strip(WS) == ":":
                    colon = e.colon
            if "\n" in cont.tail:
                multiline = True
                text_has_crlf = text_has_crlf or "\r\n" in cont.tail
            if indent is not None and colon is not None:
                break
        if "\r\n" in doc.trail or "\r\n" in doc.lead:
            text_has_crlf = True
        style.newline = "\r\n" if text_has_crlf else "\n"
        root = doc.root
        if indent is not None:
            style.indent = indent
        elif not multiline and isinstance(root, Container) and root.entries:
            style.indent = None  # a one-line file stays on one line
        # Unseen, the colon and the separator follow each other (json.dumps' compact pairs).
        style.colon = colon if colon is not None else ":" if sep == "" else ": "
        style.sep = sep if sep is not None else "" if style.colon == ":" else " "
        return style

    def build(self, value: Any, indent: str) -> Node:
        """`value` as a node laid out in this style, its lines indented by `indent`."""
        if self.indent is None:
            text = json.dumps(value, ensure_ascii=False, separators=("," + self.sep,
                                                                     self.colon))
        else:
            text = json.dumps(value, ensure_ascii=False, indent=self.indent,
                              separators=(",", self.colon))
            text = text.replace("\n", self.newline + indent)  # strings escape their "\n"
        root = parse(text).root
        assert root is not None
        return root


def _containers(doc: Document) -> Iterator[tuple[Container, str]]:
    """Every container with the indentation of the line it opens on, outermost first."""
    if not isinstance(doc.root, Container):
        return
    queue = deque([(doc.root, _indent_of(doc.lead) or "")])
    while queue:
        cont, ind = queue.popleft()
        yield cont, ind
        for e in cont.entries:
            if isinstance(e.value, Container):
                own = _indent_of(e.before)
                queue.append((e.value, ind if own is None else own))


# -- TOML: db0's table as one marked block -----------------------------------------------------

def newline_of(text: str) -> str:
    """The file's line break: CRLF if its first line ends so, else LF."""
    i = text.find("\n")
    return "\r\n" if i > 0 and text[i - 1] == "\r" else "\n"


def add_block(text: str, block: str) -> str:
    """`text` with `block` (its first and last lines are markers) after a blank line, in the
    file's line breaks. A file without a final line break still ends without one, so that
    cut_block can give back the very same text."""
    nl = newline_of(text)
    body = block.rstrip("\n").replace("\n", nl)
    if not text:
        return body + nl
    if text.endswith("\n"):
        return text + nl + body + nl
    return text + nl + nl + body


def cut_block(text: str, begin: str, end: str) -> str:
    """`text` without the block from the line `begin` to the line `end` (add_block's inverse);
    unchanged if there is no such block."""
    start = text.find(begin)
    if start < 0:
        return text
    stop = text.find(end, start)
    stop = len(text) if stop < 0 else stop + len(end)
    nl = newline_of(text)
    head, after = text[:start], text[stop:]
    ended = after.startswith(nl)
    if ended:
        after = after[len(nl):]
    if head.endswith(nl + nl):  # the blank line add_block put before it
        head = head[:-len(nl)]
    if not after and not ended and head.endswith(nl):  # the file had no final line break
        head = head[:-len(nl)]
    return head + after

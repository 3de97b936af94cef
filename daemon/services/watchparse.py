"""What a watched folder's files become: which files count, how one is read, how it is split.

- A file counts when its name (or its path relative to the folder, for a pattern with a `/`)
  matches one of the watch's globs (default `*.md`, `*.markdown`, `*.txt`). Skipped, each with
  a reason shown in `db0 watch status`: `.git` and every other dot-folder and dotfile, symlinks
  (never followed: no loops, nothing outside the folder), db0's own data, files over the size
  limit, binaries (a NUL byte in the first 8 KiB) and files that are not UTF-8.
- A Markdown file is read by a CommonMark parser (markdown-it-py, block level) and splits at
  its headings, ATX (`## Setup`) and setext (`Setup` over `===` or `---`), at the top level or
  flush with a list item (as before the parser); never inside code, quotes or HTML blocks.
  Each section is its heading line and body, under the heading lines of its parents (a setext
  heading written in its ATX form), so a memory says where it sits. Its anchor is the heading
  trail (`Setup > Linux`), the title taken from the source line exactly as before the parser,
  so keys do not change; a repeated trail gets ` [2]`, ` [3]`. Text before the first heading
  is the anchor "" section; sections with no body are left out. Other files are one section.
  A section over 16 KiB is cut at line ends into parts (` [part 2]`, …).
- Not text: YAML front matter (`---` first line, `---` or `...` closing it, a mapping between)
  is returned apart, parsed when simple (see Parsed), for the memories' metadata; MyST target
  lines (`(label)=`) and HTML comments are dropped. Code, fenced or indented, stays verbatim.
  Body lines are kept as written, so a section's text is what the file says.

No database here; markdown-it is imported on the first Markdown file.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from markdown_it import MarkdownIt
    from markdown_it.token import Token

DEFAULT_GLOBS = ("*.md", "*.markdown", "*.txt")
MARKDOWN = (".md", ".markdown", ".mdx")
MAX_SECTION_BYTES = 16 * 1024
SNIFF_BYTES = 8192

_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*$")
_TARGET = re.compile(r"^ {0,3}\([^()\s][^()]*\)=[ \t]*$")  # a MyST target line: (label)=
_COMMENT = re.compile(r"<!--(?:-?>|[\s\S]*?-->)")
_FM_KEY = re.compile(r"^([A-Za-z0-9_][^:#]*?|'[^']*'|\"[^\"]*\"):(?:[ \t]+(.*))?$")


@dataclass(frozen=True)
class Note:
    text: str
    sha256: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Skip:
    reason: str


class Gone:
    """The file vanished (deleted, or renamed away) before or while it was read."""


GONE = Gone()


def matches(rel: str, globs: tuple[str, ...]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(rel if "/" in g else name, g) for g in globs)


def hidden_part(rel: str) -> str | None:
    """The first dot-named part of a relative path, if any (`.git`, `.obsidian`, `.draft.md`)."""
    for part in rel.split("/"):
        if part.startswith("."):
            return part
    return None


def hidden_reason(part: str, is_dir: bool) -> str:
    if part == ".git":
        return "version-control folder"
    return "hidden folder" if is_dir else "dotfile"


def size_reason(size: int, limit: int) -> str | None:
    return f"too large ({size} bytes, limit {limit})" if size > limit else None


def classify(st: os.stat_result, limit: int) -> str | None:
    """Why a matching path that lstat gave `st` is skipped (None: it is a note to read)."""
    if stat.S_ISLNK(st.st_mode):
        return "symlink (not followed)"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    return size_reason(st.st_size, limit)


def read(path: str, limit: int) -> Note | Skip | Gone:
    """Read one file as a note. Never raises for what a folder may hold."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return GONE
    except PermissionError:
        return Skip("cannot be read (permission denied)")
    except OSError as e:
        if e.errno == 40:  # ELOOP: O_NOFOLLOW met a symlink swapped in since lstat
            return Skip("symlink (not followed)")
        return Skip(f"cannot be read ({e.strerror})")
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return Skip("not a regular file")
        why = size_reason(st.st_size, limit)
        if why:
            return Skip(why)
        chunks = []
        left = limit + 1
        while left > 0:
            b = os.read(fd, min(left, 1 << 20))
            if not b:
                break
            chunks.append(b)
            left -= len(b)
        data = b"".join(chunks)
    except FileNotFoundError:
        return GONE
    except OSError as e:
        return Skip(f"cannot be read ({e.strerror})")
    finally:
        os.close(fd)
    if len(data) > limit:
        return Skip(f"too large (over {limit} bytes)")
    if b"\0" in data[:SNIFF_BYTES]:
        return Skip("binary (a NUL byte in its first 8 KiB)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        return Skip(f"not UTF-8 (invalid byte at offset {e.start}; to fix: re-encode it as "
                    "UTF-8)")
    if text.startswith("\ufeff"):
        text = text[1:]
    return Note(text, hashlib.sha256(data).hexdigest(), st.st_size, st.st_mtime_ns)


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Parsed:
    """A file's sections and its front matter: a dict when every line is a `key: value`, a
    `key: [a, b]` or a `key:` followed by `- item` lines (values stay strings, unquoted), else
    the raw text between the `---` lines; None when the file has none (and for every non-Markdown
    file)."""

    sections: list[tuple[str, str]]
    front_matter: dict[str, str | list[str]] | str | None = None


def sections(rel: str, text: str) -> list[tuple[str, str]]:
    """(anchor, content) for each section of a file, in order."""
    return parse(rel, text).sections


def parse(rel: str, text: str) -> Parsed:
    """A file's sections (anchor, content) in order, and its front matter."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if not rel.lower().endswith(MARKDOWN):
        plain = "\n".join(lines).strip()
        return Parsed(_unique(_parts("", [], plain.split("\n"))) if plain else [])
    front, skip = _front_matter(lines)
    # What stays of each line in the sections' text (None: dropped); heading lines are not body.
    kept: list[str | None] = [None] * skip + lines[skip:]
    heads = _blocks(lines, skip, kept)
    out: list[tuple[str, str]] = []
    trail: list[tuple[int, str, str]] = []  # (level, title, heading line) of the open headings
    anchor, start = "", 0
    head: list[str] = []
    for first, end, level, title, line in heads:
        _close(out, anchor, head, kept[start:first])
        trail = [t for t in trail if t[0] < level]
        head = [t[2] for t in trail] + [line]
        trail.append((level, title, line))
        anchor = " > ".join(t[1] for t in trail)
        start = end
    _close(out, anchor, head, kept[start:])
    return Parsed(_unique(out), front)


def section_hash(content: str, front_matter: dict[str, str | list[str]] | str | None) -> str:
    """What tells a stored section from its new version when the front matter goes into its
    metadata: an edit to the front matter alone must rewrite the file's sections too. Without
    front matter it is text_hash(content), so files without any keep their stored hashes."""
    if not front_matter:
        return text_hash(content)
    return text_hash(content + "\0" + json.dumps(front_matter, sort_keys=True,
                                                  ensure_ascii=False))


def _close(out: list[tuple[str, str]], anchor: str, head: list[str],
           kept: list[str | None]) -> None:
    """Add a section unless its body is blank. Where lines were dropped, the blank lines that
    followed them are dropped too, so a removed comment leaves one paragraph break, not two."""
    body: list[str] = []
    dropped = False
    for line in kept:
        if line is None:
            dropped = True
            continue
        if dropped and not line.strip() and (not body or not body[-1].strip()):
            continue
        dropped = False
        body.append(line)
    if any(line.strip() for line in body):
        out.extend(_parts(anchor, head, body))


@functools.cache
def _md() -> MarkdownIt:
    from markdown_it import MarkdownIt

    # Block structure only: titles come from the source lines, and inline parsing runs on the
    # few paragraphs that hold a comment.
    md = MarkdownIt("commonmark")
    md.disable(["inline", "text_join"])
    return md


def _blocks(lines: list[str], skip: int, kept: list[str | None]
            ) -> list[tuple[int, int, int, str, str]]:
    """The top-level headings as (first line, line after, level, title, heading line), and in
    `kept` the MyST target lines and HTML comments dropped. Code (fenced or indented) is never
    touched; headings inside quotes, HTML blocks or code do not start sections."""
    md = _md()
    tokens = md.parse("\n" * skip + "\n".join(lines[skip:]))
    heads = []
    quotes = 0  # blockquotes open around the token
    for i, tok in enumerate(tokens):
        quotes += {"blockquote_open": 1, "blockquote_close": -1}.get(tok.type, 0)
        if tok.map is None:
            continue
        first, end = tok.map
        if tok.type == "html_block":
            _drop_comments(kept, first, end, None)
        elif tok.type == "paragraph_open":
            for j in range(first, end):
                if _TARGET.match(lines[j]):
                    kept[j] = None
            content = tokens[i + 1].content
            if "<!--" in content:
                children: list[Token] = []
                md.inline.parse(content, md, {}, children)
                _drop_comments(kept, first, end, [c.content for c in children if c.type ==
                                                  "html_inline" and c.content.startswith("<!--")])
        elif tok.type == "heading_open" and (tok.level == 0 or (
                not quotes and tok.markup.startswith("#") and _HEADING.match(lines[first]))):
            # An ATX heading inside a list item, flush with it (`- item` then `  ## Heading`),
            # started a section before markdown-it, so it still does: its key must not change.
            level = int(tok.tag[1])
            if tok.markup.startswith("#"):
                h = _HEADING.match(lines[first])
                title = (_atx_title(h.group(2)) if h else tokens[i + 1].content.strip())
                heads.append((first, end, level, title, lines[first].rstrip()))
            else:  # setext: its text lines (a MyST target line above it is not part of it)
                words = [lines[j].strip() for j in range(first, end - 1)
                         if not _TARGET.match(lines[j])]
                title = " ".join(w for w in words if w)
                heads.append((first, end, level, title, f"{'#' * level} {title}".rstrip()))
    return heads


def _atx_title(raw: str | None) -> str:
    # Exactly as before markdown-it: anchors (memory keys) of ATX headings must not change.
    return re.sub(r"[ \t]+#+$", "", (raw or "")).strip().strip("#").strip()


def _drop_comments(kept: list[str | None], first: int, end: int, want: list[str] | None) -> None:
    """Cut HTML comments out of lines first..end (`want`: only these, in order, as the inline
    parser found them, so a comment shown in a code span stays). A line left blank by a cut is
    dropped; a comment never closed stays as text."""
    idx = [j for j in range(first, end) if kept[j] is not None]
    text = "\n".join(str(kept[j]) for j in idx)
    mark = next(c for c in map(chr, range(0xE000, 0xF900)) if c not in text)
    pieces: list[str] = []
    pos = 0
    if want is None:
        for m in _COMMENT.finditer(text):
            pieces += [text[pos:m.start()], mark]
            pos = m.end()
    else:
        for c in want:
            at = text.find(c, pos)
            if at < 0:
                break
            pieces += [text[pos:at], mark]
            pos = at + len(c)
    if not pieces:
        return
    new = ("".join(pieces) + text[pos:]).split("\n")
    for k, j in enumerate(idx):  # a comment over n lines leaves n - 1 fewer at the end
        line = new[k] if k < len(new) else None
        if line is not None and mark in line:  # "a <!-- x --> b" leaves "a b"
            line = re.sub(f"[ \\t]+{mark}(?=[ \\t])", "", line).replace(mark, "").rstrip()
            line = line if line.strip() else None
        kept[j] = line


def _front_matter(lines: list[str]) -> tuple[dict[str, str | list[str]] | str | None, int]:
    """The front matter at the top of a Markdown file and how many lines it takes (0: none).
    It is a `---` first line, a `---` or `...` closing line, and between them nothing or a
    mapping (the first line that is not blank or a comment is `key:`); anything else is a
    thematic break and text, as CommonMark reads it."""
    if not lines or lines[0].rstrip() != "---":
        return None, 0
    end = next((i for i in range(1, len(lines)) if lines[i].rstrip() in ("---", "...")), 0)
    if not end:
        return None, 0
    body = lines[1:end]
    first = next((x for x in body if x.strip() and not x.lstrip().startswith("#")), None)
    if first is not None and not _FM_KEY.match(first):
        return None, 0
    parsed = _simple_yaml(body)
    return (parsed if parsed is not None else "\n".join(body).strip()), end + 1


def _simple_yaml(body: list[str]) -> dict[str, str | list[str]] | None:
    """`key: value`, `key: [a, b]` and `key:` + `- item` lines, values as strings; None for
    anything else (nested maps, block scalars, anchors, tags, flow maps): no YAML library."""
    out: dict[str, str | list[str]] = {}
    key = None  # the last key whose value was empty: `- item` lines go under it
    for line in body:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _FM_KEY.match(line)
        if m:
            key, raw = m.group(1).strip(), (m.group(2) or "").strip()
            key = key[1:-1] if key[:1] in ("'", '"') else key
            if key in out:
                return None
            if raw.startswith("[") and raw.endswith("]"):
                items = [_scalar(x) for x in raw[1:-1].split(",")] if raw[1:-1].strip() else []
                if any(x is None for x in items):
                    return None
                out[key] = [str(x) for x in items]
                key = None
                continue
            value = _scalar(raw)
            if value is None:
                return None
            out[key] = value
            key = key if raw == "" else None
            continue
        item = re.match(r"^[ \t]*-(?:[ \t]+(.*))?$", line)
        if item is None or key is None:
            return None
        value = _scalar((item.group(1) or "").strip())
        if value is None or re.match(r"^[^'\"]\S*:(\s|$)", value):
            return None  # a mapping inside the list
        prev = out[key]
        out[key] = [*prev, value] if isinstance(prev, list) else [value]
    return out


def _scalar(raw: str) -> str | None:
    """One plain, single- or double-quoted YAML scalar as a string (None: not that simple)."""
    raw = raw.strip()
    if raw.startswith("'"):
        m = re.match(r"^'((?:[^']|'')*)'(?:\s+#.*)?$", raw)
        return m.group(1).replace("''", "'") if m else None
    if raw.startswith('"'):
        m = re.match(r'^"((?:[^"\\]|\\["\\/nt])*)"(?:\s+#.*)?$', raw)
        if m is None:
            return None
        return re.sub(r"\\(.)", lambda e: {"n": "\n", "t": "\t"}.get(e.group(1), e.group(1)),
                      m.group(1))
    if raw[:1] in ("[", "{", "|", ">", "&", "*", "!", "%", "@", "`"):
        return None
    return re.sub(r"\s+#.*$", "", raw)


def _parts(anchor: str, head: list[str], body: list[str]) -> list[tuple[str, str]]:
    """A section's content, cut into parts of at most MAX_SECTION_BYTES at line ends."""
    prefix = "\n".join(head)
    room = MAX_SECTION_BYTES - len(prefix.encode("utf-8", "surrogatepass")) - 1
    lines: list[str] = []
    for whole in body:  # a line longer than a part is cut (4 bytes a character at most)
        line = whole
        while len(line.encode("utf-8", "surrogatepass")) > room:
            lines.append(line[:room // 4])
            line = line[room // 4:]
        lines.append(line)
    chunks: list[list[str]] = [[]]
    size = 0
    for line in lines:
        n = len(line.encode("utf-8", "surrogatepass")) + 1
        if size + n > room and chunks[-1]:
            chunks.append([])
            size = 0
        chunks[-1].append(line)
        size += n
    out = []
    for i, chunk in enumerate(c for c in chunks if any(x.strip() for x in c)):
        content = "\n".join([*head, *chunk]).strip()
        out.append((anchor if i == 0 else f"{anchor} [part {i + 1}]", content))
    return out


def _unique(found: list[tuple[str, str]]) -> list[tuple[str, str]]:
    taken: set[str] = set()
    last: dict[str, int] = {}  # anchor -> the last n tried: linear with many equal headings
    out = []
    for anchor, content in found:
        name, n = anchor, last.get(anchor, 1)
        while name in taken:  # a heading that is literally "Notes [2]" is skipped over too
            n += 1
            name = f"{anchor} [{n}]"
        taken.add(name)
        last[anchor] = n
        out.append((name, content))
    return out

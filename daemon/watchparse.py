"""What a watched folder's files become: which files count, how one is read, how it is split.

- A file counts when its name (or its path relative to the folder, for a pattern with a `/`)
  matches one of the watch's globs (default `*.md`, `*.markdown`, `*.txt`). Skipped, each with
  a reason shown in `db0 watch status`: `.git` and every other dot-folder and dotfile, symlinks
  (never followed: no loops, nothing outside the folder), db0's own data, files over the size
  limit, binaries (a NUL byte in the first 8 KiB) and files that are not UTF-8.
- A Markdown file splits at its ATX headings (`#` to `######`, outside fenced code): each
  section is its heading line and body, under the heading lines of its parents, so a memory
  says where it sits. Its anchor is the heading trail (`Setup > Linux`); a repeated trail gets
  ` [2]`, ` [3]`. Text before the first heading is the anchor "" section; sections with no
  body are left out. Other files are one section. A section over 16 KiB is cut at line ends
  into parts (` [part 2]`, …). Setext (underlined) headings are body text.

Standard library only; no database here.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import stat
from dataclasses import dataclass

DEFAULT_GLOBS = ("*.md", "*.markdown", "*.txt")
MARKDOWN = (".md", ".markdown", ".mdx")
MAX_SECTION_BYTES = 16 * 1024
SNIFF_BYTES = 8192

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*$")


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


def sections(rel: str, text: str) -> list[tuple[str, str]]:
    """(anchor, content) for each section of a file, in order."""
    if not rel.lower().endswith(MARKDOWN):
        plain = text.replace("\r\n", "\n").replace("\r", "\n").strip()
        return _unique(_parts("", [], plain.split("\n"))) if plain else []
    out: list[tuple[str, str]] = []
    trail: list[tuple[int, str, str]] = []  # (level, title, heading line) of the open headings
    anchor = ""
    head: list[str] = []
    body: list[str] = []
    fence = ""

    def close() -> None:
        if any(line.strip() for line in body):
            out.extend(_parts(anchor, head, body))

    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if fence:
            if line.lstrip().startswith(fence):
                fence = ""
            body.append(line)
            continue
        m = _FENCE.match(line)
        if m:
            fence = m.group(1)[0] * len(m.group(1))
            body.append(line)
            continue
        h = _HEADING.match(line)
        if h is None:
            body.append(line)
            continue
        close()
        level = len(h.group(1))
        title = re.sub(r"[ \t]+#+$", "", (h.group(2) or "")).strip().strip("#").strip()
        trail = [t for t in trail if t[0] < level]
        head = [t[2] for t in trail] + [line.rstrip()]
        trail.append((level, title, line.rstrip()))
        anchor = " > ".join(t[1] for t in trail)
        body = []
    close()
    return _unique(out)


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
    out = []
    for anchor, content in found:
        name, n = anchor, 1
        while name in taken:  # a heading that is literally "Notes [2]" is skipped over too
            n += 1
            name = f"{anchor} [{n}]"
        taken.add(name)
        out.append((name, content))
    return out

"""Reading and writing another tool's settings file for db0 integrate, as one transaction.

A `SettingsFile` is read once (refused, with line and column, if it does not parse), edited in
memory through settingsfile's format-preserving Document (JSON, JSONC) or as text (TOML), and
committed at most once:
- written atomically: a temporary file beside it, fsync, rename, the file's mode kept; a
  symlink (a dotfiles repository) is written through, not replaced;
- one backup per file, `<file>.db0-backup`, replaced by each write that changes the file and
  never made for a file that did not exist;
- a file db0 creates is recorded (CreatedFiles, in db0's data directory); a later commit that
  leaves such a file with nothing in it (`{}`, or blanks) deletes it and its backup instead.
Standard library only, plus db0's paths and error type: the CLI imports this.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from db0.cli.settingsfile import Document, ParseError, parse
from db0.daemon.protocol import Db0Error

SYNTAXES = ("json", "jsonc", "toml")  # jsonc: comments allowed (Gemini CLI strips them)
AGAIN = "fix it there or move the file aside, then run db0 integrate again"


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Replace `path` with `data` in one rename; readers see the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.db0-tmp-{os.getpid()}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(tmp, flags, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # the rename itself survives a crash
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


class CreatedFiles:
    """The settings files db0 created, so that taking db0 out can delete them again."""

    def __init__(self, record: Path | None = None) -> None:
        if record is None:
            from db0.daemon.paths import get_paths

            record = get_paths().data_dir / "integrate-created.json"
        self.record = record

    def _load(self) -> set[str]:
        try:
            got = json.loads(self.record.read_text("utf-8")).get("created", [])
        except (OSError, ValueError, AttributeError):
            return set()
        return {p for p in got if isinstance(p, str)}

    def _save(self, paths: set[str]) -> None:
        text = json.dumps({"created": sorted(paths)}, indent=2) + "\n"
        self.record.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # db0's data dir
        write_atomic(self.record, text.encode(), 0o600)

    def __contains__(self, path: Path) -> bool:
        return str(path.absolute()) in self._load()

    def add(self, path: Path) -> None:
        self._save(self._load() | {str(path.absolute())})

    def discard(self, path: Path) -> None:
        paths = self._load()
        if str(path.absolute()) in paths:
            self._save(paths - {str(path.absolute())})


class SettingsFile:
    """One settings file, read once, edited in memory, committed at most once."""

    def __init__(self, path: Path, syntax: str, raw: bytes | None,
                 created: CreatedFiles | None = None) -> None:
        if syntax not in SYNTAXES:
            raise ValueError(syntax)
        self.path, self.syntax, self.raw = path, syntax, raw
        self.existed = raw is not None
        self._created = created
        self.original = self._decode(raw or b"")
        self.doc: Document | None = None
        self._text = self.original
        if syntax == "toml":
            _check_toml(path, self.original)
            return
        try:
            self.doc = parse(self.original, comments=syntax == "jsonc")
        except ParseError as e:
            raise Db0Error("invalid", f"{path} is not valid JSON at line {e.line}, column "
                           f"{e.col}: {e.what}; nothing was changed", AGAIN) from None
        if self.doc.root is not None and not isinstance(self.doc.value, dict):
            raise Db0Error("invalid", f"{path} is not a JSON object; nothing was changed",
                           AGAIN)

    @classmethod
    def read(cls, path: Path, syntax: str, created: CreatedFiles | None = None
             ) -> SettingsFile:
        try:
            raw: bytes | None = path.read_bytes()
        except FileNotFoundError:
            raw = None
        except OSError as e:
            raise Db0Error("invalid", f"cannot read {path}: {e.strerror}; nothing was changed",
                           "check its permissions") from None
        return cls(path, syntax, raw, created)

    def _decode(self, raw: bytes) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise Db0Error("invalid", f"{self.path} is not UTF-8 text (byte {e.start}); "
                           "nothing was changed", AGAIN) from None

    # -- contents --

    @property
    def value(self) -> dict[str, Any]:
        """The JSON object (empty for a missing or blank file)."""
        assert self.doc is not None, "a TOML file has text, not a value"
        got = self.doc.value
        return {} if got is None else got

    def update(self, value: dict[str, Any]) -> None:
        """Make the JSON file hold `value`, touching only what differs."""
        assert self.doc is not None, "a TOML file has text, not a value"
        self.doc.update(value)

    @property
    def text(self) -> str:
        return self.doc.dumps() if self.doc is not None else self._text

    @text.setter
    def text(self, text: str) -> None:
        assert self.doc is None, "a JSON file is edited through update()"
        _check_toml(self.path, text)
        self._text = text

    @property
    def changed(self) -> bool:
        return self.text != self.original

    def is_empty(self) -> bool:
        """Nothing anyone wrote is left: blanks only, or an empty JSON object."""
        return self.doc.is_empty() if self.doc is not None else not self.text.strip()

    @property
    def backup_path(self) -> Path:
        return self.path.with_name(self.path.name + ".db0-backup")

    # -- the one write --

    def deletes(self) -> bool:
        """Whether commit() will delete the file: db0 created it and nothing else is in it."""
        return (self.changed and self.existed and self.is_empty()
                and not self.path.is_symlink() and self.path in self._record())

    def _record(self) -> CreatedFiles:
        if self._created is None:
            self._created = CreatedFiles()
        return self._created

    def commit(self) -> tuple[Path | None, bool]:
        """Write the file if it changed: (the backup made or None, whether it was deleted)."""
        if not self.changed or (self.is_empty() and not self.existed):
            return None, False
        created = self._record()
        self.check_unchanged()
        if self.deletes():
            self.path.unlink(missing_ok=True)
            self.backup_path.unlink(missing_ok=True)
            created.discard(self.path)
            return None, True
        target = self.path.resolve() if self.path.is_symlink() else self.path
        data = self.text.encode("utf-8")
        if self.existed:
            mode = target.stat().st_mode & 0o7777
            assert self.raw is not None
            write_atomic(self.backup_path, self.raw, mode)
            write_atomic(target, data, mode)
            return self.backup_path, False
        write_atomic(target, data, 0o644)
        created.add(self.path)
        return None, False


    def check_unchanged(self) -> None:
        """Db0Error if the file changed since it was read: agents rewrite their settings while
        they run (Claude Code updates ~/.claude.json often), and their change must not be
        lost. commit() checks it again just before it writes."""
        try:
            now: bytes | None = self.path.read_bytes()
        except FileNotFoundError:
            now = None
        if now != self.raw:
            raise Db0Error("conflict", f"{self.path} changed while db0 was editing it; "
                           "nothing was written to it", "run the command again")


def _check_toml(path: Path, text: str) -> None:
    import tomllib

    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        raise Db0Error("invalid", f"{path} is not valid TOML: {msg[:1].lower()}{msg[1:]}; "
                       "nothing was changed", AGAIN) from None

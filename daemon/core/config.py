"""The daemon's config file (TOML): one typed `Config`, validated once when read.

Every section and key the daemon reads is declared here with its type, bounds and default;
components receive the typed object and never look values up by string. A file that does not
parse, or holds a value of the wrong type, is refused as a whole with every problem named, and
the previous config stays in force (at start: the defaults). Unknown keys are reported (a typo
is not silently ignored) but do not refuse the file. The watcher reloads on change.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("db0.config")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
SCOPES = ("user", "agent", "session", "task")


def duration(value: Any) -> float:
    """'90s', '15m', '2h', '7d', '1w' or a number of seconds (0 allowed: "off")."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ValueError(f"{value!r} is not a duration (write it like 90s, 15m, 2h, 7d)")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds < 0:
        raise ValueError(f"{value!r} must not be negative")
    return seconds


@dataclass(frozen=True)
class ContextConfig:
    user: str = ""
    agent: str = "default"


@dataclass(frozen=True)
class DaemonConfig:
    log_level: str = "INFO"
    max_frame_mb: int = 32
    max_connections: int = 4096  # open connections; past it a client is told "busy"
    idle_timeout: float = 600.0  # a connection idle this long between requests is closed
    frame_timeout: float = 10.0  # a frame started must arrive whole within this


@dataclass(frozen=True)
class StoreConfig:
    # "normal": a commit survives a killed process (WAL); "full": also a power cut, at an
    # fsync per group commit.
    durability: str = "normal"


@dataclass(frozen=True)
class EmbedConfig:
    model: str = ""
    threads: int = 2
    batch: int = 64
    group_chars: int = 160


@dataclass(frozen=True)
class RecallConfig:
    # true: recall (its top 100) and pack (its candidates) re-order by late interaction
    # whenever a late encoder is installed (db0 model install --late), as `recall --late` does
    late: bool = False
    # a second keyword pass for the rare words of the first hits (pseudo-relevance feedback,
    # store/search.py): true, false, or None for "auto" (in a store of at most
    # search.FEEDBACK_AUTO_ROWS memories: its cost grows with the store)
    feedback: bool | None = None


@dataclass(frozen=True)
class SessionConfig:
    idle_ttl: float = 24 * 3600.0
    expiry_interval: float = 30.0


@dataclass(frozen=True)
class SyncConfig:
    interval: float = 0.0  # 0: no timer
    scopes: tuple[str, ...] = ("user", "agent")
    batch: int = 5000


@dataclass(frozen=True)
class HooksConfig:
    session_budget: int = 1500
    prompt_budget: int = 600
    min_prompt_words: int = 2


@dataclass(frozen=True)
class GitConfig:
    scope: str = "agent"


@dataclass(frozen=True)
class WatchConfig:
    debounce: float = 0.5
    rescan_interval: float = 300.0
    max_file_size: int = 1 << 20


@dataclass(frozen=True)
class UiConfig:
    idle_timeout: float = 1800.0  # the inspector's port closes after this long without requests


@dataclass(frozen=True)
class Config:
    context: ContextConfig = field(default_factory=ContextConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    recall: RecallConfig = field(default_factory=RecallConfig)
    session: SessionConfig = field(default_factory=SessionConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    hooks: HooksConfig = field(default_factory=HooksConfig)
    git: GitConfig = field(default_factory=GitConfig)
    watch: WatchConfig = field(default_factory=WatchConfig)
    ui: UiConfig = field(default_factory=UiConfig)


def _text(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError("must be text")
    return v


def _whole(lo: int, hi: int | None = None) -> Callable[[Any], int]:
    def check(v: Any) -> int:
        if not isinstance(v, int) or isinstance(v, bool) or v < lo or (hi is not None
                                                                       and v > hi):
            raise ValueError(f"must be a whole number from {lo}" + (f" to {hi}" if hi else " up"))
        return v
    return check


def _dur(lo: float = 0.0) -> Callable[[Any], float]:
    def check(v: Any) -> float:
        s = duration(v)
        if s < lo:
            raise ValueError(f"must be at least {lo:g}s")
        return s
    return check


def _choice(*values: str) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if not isinstance(v, str) or v.lower() not in values:
            raise ValueError("must be one of " + ", ".join(values))
        return v.lower()
    return check


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError("must be true or false")
    return v


def _bool_or_auto(v: Any) -> bool | None:
    """true, false, or "auto" (None: the code decides)."""
    if isinstance(v, str) and v.lower() == "auto":
        return None
    if not isinstance(v, bool):
        raise ValueError('must be true, false or "auto"')
    return v


def _scopes(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list) or not v or any(s not in SCOPES for s in v):
        raise ValueError("must be a list of scopes: " + ", ".join(SCOPES))
    return tuple(dict.fromkeys(v))


def _log_level(v: Any) -> str:
    return _choice("debug", "info", "warning", "error")(v).upper()


# How each key is read: a checker that returns the typed value or raises ValueError.
_CHECKS: dict[str, dict[str, Callable[[Any], Any]]] = {
    "context": {"user": _text, "agent": _text},
    "daemon": {"log_level": _log_level, "max_frame_mb": _whole(1, 1024),
               "max_connections": _whole(4, 100_000), "idle_timeout": _dur(1.0),
               "frame_timeout": _dur(0.1)},
    "store": {"durability": _choice("normal", "full")},
    "embed": {"model": _text, "threads": _whole(1, 64), "batch": _whole(1, 512),
              "group_chars": _whole(1)},
    "recall": {"late": _bool, "feedback": _bool_or_auto},
    "session": {"idle_ttl": _dur(1.0), "expiry_interval": _dur(0.2)},
    "sync": {"interval": _dur(), "scopes": _scopes, "batch": _whole(100, 1_000_000)},
    "hooks": {"session_budget": _whole(0, 100_000), "prompt_budget": _whole(0, 100_000),
              "min_prompt_words": _whole(0, 1000)},
    "git": {"scope": _choice(*SCOPES)},
    "watch": {"debounce": _dur(0.0), "rescan_interval": _dur(1.0),
              "max_file_size": _whole(1)},
    "ui": {"idle_timeout": _dur(1.0)},
}


def parse(data: dict[str, Any]) -> tuple[Config, list[str]]:
    """A Config from parsed TOML, and the unknown keys; ValueError naming every bad value."""
    errors: list[str] = []
    unknown: list[str] = []
    sections: dict[str, Any] = {}
    for name, checks in _CHECKS.items():
        raw = data.get(name, {})
        base = getattr(Config(), name)
        if not isinstance(raw, dict):
            errors.append(f"[{name}] must be a table")
            sections[name] = base
            continue
        values: dict[str, Any] = {}
        for key, v in raw.items():
            if key not in checks:
                unknown.append(f"[{name}] {key}")
                continue
            try:
                values[key] = checks[key](v)
            except ValueError as e:
                errors.append(f"[{name}] {key} {e}")
        sections[name] = dataclasses.replace(base, **values)
    unknown += [f"[{k}]" for k in data if k not in _CHECKS]
    if errors:
        raise ValueError("; ".join(errors))
    return Config(**sections), unknown


def load(path: Path) -> tuple[Config, list[str]]:
    """The config at `path` (defaults when absent) and its unknown keys; ValueError saying
    what is wrong."""
    if not path.exists():
        return Config(), []
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: {e}") from e
    except OSError as e:
        raise ValueError(f"{path}: {e.strerror}") from e
    try:
        return parse(data)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e


class ConfigWatcher:
    """Watches the config file's folder (editors replace files) and calls back on change."""

    def __init__(self, path: Path, on_change: Callable[[Config, list[str]], None],
                 on_error: Callable[[str], None]) -> None:
        self.path = path
        self.on_change = on_change
        self.on_error = on_error
        self._observer: Any = None
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        watcher = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                paths = {str(event.src_path), str(getattr(event, "dest_path", "") or "")}
                if str(watcher.path) in paths:
                    watcher._debounce()

        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._observer = Observer()
        self._observer.schedule(Handler(), str(self.path.parent), recursive=False)
        self._observer.daemon = True
        self._observer.start()

    def _debounce(self) -> None:
        with self._lock:
            if self._timer:
                self._timer.cancel()
            self._timer = threading.Timer(0.2, self._reload)
            self._timer.daemon = True
            self._timer.start()

    def _reload(self) -> None:
        try:
            cfg, unknown = load(self.path)
        except ValueError as e:
            log.error("config not applied, keeping the previous one: %s", e)
            self.on_error(str(e))
            return
        self.on_change(cfg, unknown)

    def stop(self) -> None:
        if self._timer:
            self._timer.cancel()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(5)

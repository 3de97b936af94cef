"""The daemon's config file (TOML), its defaults, and the watcher that reloads it.

A change is applied without a restart where it can be (log level, context defaults, limits);
a file that does not parse is reported in the log and the previous config stays in force.
"""

from __future__ import annotations

import copy
import logging
import threading
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("db0.config")

DEFAULTS: dict[str, Any] = {
    "context": {"user": "", "agent": "default"},
    "daemon": {"log_level": "INFO", "max_frame_mb": 32},
    "embed": {"model": "", "threads": 2},
    "session": {"idle_ttl": "24h"},
}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load(path: Path) -> dict[str, Any]:
    """The config at `path` over the defaults; raises ValueError saying what is wrong."""
    if not path.exists():
        return copy.deepcopy(DEFAULTS)
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: {e}") from e
    return _merge(DEFAULTS, data)


class ConfigWatcher:
    """Watches the config file's folder (editors replace files) and calls back on change."""

    def __init__(self, path: Path, on_change: Callable[[dict[str, Any]], None]) -> None:
        self.path = path
        self.on_change = on_change
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

        self.path.parent.mkdir(parents=True, exist_ok=True)
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
            cfg = load(self.path)
        except ValueError as e:
            log.error("config not applied, keeping the previous one: %s", e)
            return
        self.on_change(cfg)

    def stop(self) -> None:
        if self._timer:
            self._timer.cancel()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(5)

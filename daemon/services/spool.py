"""The spool's drain: requests a client could not hand over, replayed through the dispatcher.

A hook or a git hook never waits for a daemon to boot: when the socket does not answer in time,
the client (`daemon/client.py`, `spool_request`) writes the whole request frame to
`<data>/spool/<time>-<id>.json` (a temporary name, then a rename, so a file is whole or absent)
and exits. This component replays each file through the same dispatcher as a live request, with
the same context rules, at start and then every second, and removes the file once its answer
came back. A request that fails for a reason that can pass (busy, shutting down) stays for the
next round; one that fails for good is moved to `spool/bad/` and said in the log. Requests carry
their own ids (a hook event's `event_id`, a commit's sha), so one replayed after it also reached
the daemon directly changes nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from db0.daemon.core.runtime import Component, Runtime
from db0.daemon.protocol import RETRYABLE

log = logging.getLogger("db0.spool")

MAX_FILE_BYTES = 64 * 1024 * 1024


def _raw_holds(path: Path, head: str) -> bool:
    """Whether a file that is not a readable request holds the text's UTF-8 bytes."""
    try:
        return head.encode("utf-8", "surrogatepass") in path.read_bytes()
    except OSError:
        return False


class Spool(Component):
    name = "spool"
    interval: float | None = 1.0

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        self.dir: Path = rt.paths.spool_dir
        self.drained = 0
        self.bad = 0
        self.last_drain: float | None = None
        self.last_error: str | None = None
        self._lock = threading.Lock()

    def on_start(self) -> None:
        self.drain()

    def tick(self) -> None:
        if self.pending():
            self.drain()

    def pending(self) -> list[Path]:
        try:
            names = sorted(e.name for e in os.scandir(self.dir)
                           if e.is_file() and e.name.endswith(".json")
                           and not e.name.startswith("."))
        except FileNotFoundError:
            return []
        return [self.dir / n for n in names]

    def _set_aside(self, path: Path, why: str) -> None:
        self.bad += 1
        self.last_error = f"{path.name}: {why}"
        log.warning("spool: %s set aside: %s", path.name, why)
        bad = self.dir / "bad"
        bad.mkdir(mode=0o700, exist_ok=True)
        with contextlib.suppress(OSError):
            os.replace(path, bad / path.name)

    def _read(self, path: Path) -> dict[str, Any] | str:
        """The request in a spool file, or why it is not one."""
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                return "too large"
            msg = json.loads(path.read_bytes())
        except (OSError, ValueError, UnicodeDecodeError, RecursionError) as e:
            return f"not a request ({type(e).__name__})"
        if not isinstance(msg, dict):
            return "not a JSON object"
        if "method" not in msg and "event" in msg:  # a hook event spooled by db0 before 0.2
            msg = {"v": 1, "id": None, "method": "hook.event", "params": msg}
        return msg

    def drain(self) -> int:
        """Replay every spooled request now; how many were handled."""
        replay: Callable[..., dict[str, Any]] | None = self.rt.replay
        if replay is None:
            return 0
        done = 0
        with self._lock:
            for path in self.pending():
                if self.stopping:
                    break
                if not path.exists():
                    continue
                msg = self._read(path)
                if isinstance(msg, str):
                    self._set_aside(path, msg)
                    continue
                resp = replay(msg, replay=True)
                if not resp.get("ok"):
                    error = resp.get("error") or {}
                    if error.get("code") in RETRYABLE:
                        self.last_error = f"{path.name}: {error.get('message')}"
                        break  # left for the next round
                    self._set_aside(path, str(error.get("message") or error.get("code")))
                    continue
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                done += 1
            self.drained += done
            self.last_drain = time.time()
        if done:
            log.info("spool: %d requests replayed", done)
        return done

    def erase_text(self, text: str) -> int:
        """For purge: remove the set-aside requests (`spool/bad/`) that hold `text`, by the
        rule capture.erase_copies uses (a short text only as a whole string). Requests still
        waiting are replayed within a second and become memories, purged like any other.
        Returns how many files were removed."""
        from db0.store.capture import holds_copy

        head = text[:2000]
        if not head:
            return 0

        def holds(v: Any) -> bool:
            if isinstance(v, str):
                return holds_copy(v, head)
            if isinstance(v, dict):
                return any(holds(x) for x in v.values())
            if isinstance(v, list):
                return any(holds(x) for x in v)
            return False

        removed = 0
        with self._lock:
            for path in sorted((self.dir / "bad").glob("*.json")):
                msg = self._read(path)
                if _raw_holds(path, head) if isinstance(msg, str) else holds(msg):
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                        removed += 1
        return removed

    def hook_problems(self, n: int = 5) -> list[str]:
        path = self.rt.paths.log_dir / "hooks.log"
        try:
            with open(path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 8192))
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return []
        return [ln for ln in lines if ln.strip()][-n:]

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"pending": len(self.pending()), "drained": self.drained,
                               "set_aside": self.bad}
        if self.last_error:
            out["last_error"] = self.last_error
        problems = self.hook_problems()
        if problems:
            out["hook_problems"] = problems
        return out

"""The hook spool: events `db0 hook` could not hand over, drained into the store.

A hook never waits for a daemon to boot: when the socket does not answer it writes its event
to `<data>/spool/<time>-<event id>.json` (a temporary name, then a rename, so a file is whole
or absent), starts a daemon in the background and exits. This component drains the folder at
start and then every second: each event goes through the same handler as a live one, and the
file is removed once its transaction committed. The event id is recorded in that transaction,
so a file left by a crash between commit and unlink, or an event that also reached the daemon
directly, is handled once. A file that cannot be an event is moved to `spool/bad/`.

Problems the hooks met (bad JSON, a daemon that was down) are in `<logs>/hooks.log`; the last
few show in `db0 daemon status` and `db0 doctor`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from db0.daemon.protocol import Db0Error
from db0.store import transcripts
from db0.store.context import Context
from db0.store.errors import StoreError

if TYPE_CHECKING:
    from db0.daemon.server import Server

log = logging.getLogger("db0.spool")

MAX_EVENT_BYTES = 64 * 1024 * 1024


class Spool:
    def __init__(self, srv: Server) -> None:
        self.srv = srv
        self.dir: Path = srv.paths.spool_dir
        self.interval = 1.0
        self.drained = 0
        self.bad = 0
        self.last_drain: float | None = None
        self.last_error: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.srv.write(transcripts.ensure_schema)
        self.drain()
        self._thread = threading.Thread(target=self._loop, name="db0-spool", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

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
        bad.mkdir(exist_ok=True)
        with contextlib.suppress(OSError):
            os.replace(path, bad / path.name)

    def drain(self) -> int:
        """Handle every spooled event now; how many were handled."""
        from db0.daemon.handlers.hook import handle_event

        done = 0
        with self._lock:
            for path in self.pending():
                if self._stop.is_set() or self.srv.stopping.is_set():
                    break
                try:
                    if path.stat().st_size > MAX_EVENT_BYTES:
                        self._set_aside(path, "too large")
                        continue
                    params = json.loads(path.read_bytes())
                except FileNotFoundError:
                    continue
                except (OSError, ValueError, UnicodeDecodeError) as e:
                    self._set_aside(path, f"not an event ({type(e).__name__})")
                    continue
                if not isinstance(params, dict):
                    self._set_aside(path, "not a JSON object")
                    continue
                cfg_user = self.srv.config["context"].get("user") or self.srv.default_user
                try:
                    ctx = Context.from_params(params, cfg_user)
                    if params.get("method") == "git.capture":  # from `db0 git capture`
                        from db0.daemon.handlers.git import apply

                        apply(self.srv, params, ctx)
                    else:
                        handle_event(self.srv, params, ctx, inject=False)
                except Db0Error as e:
                    if e.code in ("shutting_down", "unavailable"):
                        break  # left for the next start
                    self._set_aside(path, e.message)
                    continue
                except StoreError as e:
                    self._set_aside(path, e.message)
                    continue
                except Exception as e:
                    self.last_error = f"{path.name}: {type(e).__name__}"
                    log.exception("spool: %s failed; kept for a retry", path.name)
                    break
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                done += 1
            self.drained += done
            self.last_drain = time.time()
        if done:
            log.info("spool: %d hook events drained", done)
        return done

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if self.pending():
                    self.drain()
            except Exception:
                log.exception("spool drain failed")

    def hook_problems(self, n: int = 5) -> list[str]:
        path = self.srv.paths.log_dir / "hooks.log"
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


def install(srv: Server) -> None:
    srv.components["spool"] = Spool(srv)

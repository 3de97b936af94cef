"""The daemon's sync component: runs syncs (one at a time per remote) through the writer, and
syncs every remote on a timer when the config says `[sync] interval = "5m"`.

A failed sync is recorded (sync_state.last_error, the log) and changes nothing else: the
daemon keeps serving, and the next run starts from the marks the last good batch left.
Config: `[sync] interval` (a duration; absent or 0: no timer), `scopes` (default user and
agent; add "session", "task" to carry those), `batch` (ops per round trip, default 5000).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from db0.daemon.core.config import Config
from db0.daemon.core.runtime import Component, Runtime
from db0.store import pgsync, remotes
from db0.store.errors import StoreError

log = logging.getLogger("db0.sync")


class Syncer(Component):
    name = "sync"

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        self.scopes: list[str] = list(remotes.DEFAULT_SCOPES)
        self.batch = 5000
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.last: dict[str, dict[str, Any]] = {}
        self.running: set[str] = set()

    @property
    def path(self) -> Path:
        return self.rt.paths.config_dir / "remotes.json"

    def apply_config(self, cfg: Config) -> None:
        self.interval = cfg.sync.interval or None  # no interval: sync only when asked
        self.scopes = list(cfg.sync.scopes)
        self.batch = cfg.sync.batch
        self.wake()

    def status(self) -> dict[str, Any]:
        return {"interval_s": self.interval, "running": sorted(self.running),
                "remotes": len(remotes.load(self.path)) if self.path.exists() else 0}

    def tick(self) -> None:
        """Sync every remote (on the timer)."""
        if self.interval is None:
            return
        try:
            names = list(remotes.load(self.path))
        except StoreError as e:
            log.error("auto-sync: %s", e.message)
            return
        for name in names:
            if self.stopping:
                return
            try:
                self.run_one(name)
            except StoreError:
                pass  # recorded and logged by run_one
            except Exception:
                log.exception("auto-sync with %s failed", name)

    # -- running -----------------------------------------------------------------------------

    def scopes_for(self, remote: remotes.Remote) -> list[str]:
        return remote.scopes or self.scopes

    def run_one(self, name: str, env: Mapping[str, str] | None = None,
                budget_s: float | None = None) -> dict[str, Any]:
        """Sync one remote; raises a SyncError (recorded in its state) when it fails."""
        remote = remotes.get(self.path, name)
        with self._guard:
            lock = self._locks.setdefault(name, threading.Lock())
        with lock:
            self.running.add(name)
            try:
                dsn = remotes.resolve(remote.dsn, env)
                result = pgsync.run(name, dsn, self.rt.reader, self.rt.write,
                                    scopes=self.scopes_for(remote), batch=self.batch,
                                    budget_s=budget_s, on_vectors=self._index_vectors)
            except StoreError as e:
                transient = getattr(e, "transient", False)
                (log.warning if transient else log.error)("sync with %s: %s", name, e.message)
                self.last[name] = {"at": time.time(), "error": e.message}
                self._record(name, e.message)
                raise
            finally:
                self.running.discard(name)
        if result.done:
            self._record(name, None)
        log.info("sync with %s: pushed %d (sent %d), pulled %d (applied %d) in %.2fs%s",
                 name, result.pushed, result.sent, result.pulled, result.applied,
                 result.seconds, "" if result.done else ", more to do")
        self.last[name] = {"at": time.time(), **result.as_dict()}
        return {"name": name, **result.as_dict()}

    def _index_vectors(self, stored: list[tuple[int, int, bytes]]) -> None:
        """Pulled vectors reach the embedder's index through the change log it follows."""
        from db0.daemon.services.embedding import EmbeddingService

        embedder = self.rt.service(EmbeddingService)
        if embedder is not None and stored:
            embedder.vectors_changed()

    def _record(self, name: str, error: str | None) -> None:
        try:
            self.rt.write(lambda s: pgsync.record_result(s, name, error))
        except Exception:  # shutting down: the state is only informative
            log.debug("could not record the sync result", exc_info=True)

    def local_status(self, name: str) -> dict[str, Any]:
        remote = remotes.get(self.path, name)
        scopes = self.scopes_for(remote)
        with self.rt.reader() as store:
            st = pgsync.local_state(store, name)
            pending = pgsync.pending_count(store, name, scopes)
        return {**remote.public(), "scopes": scopes, "pending_push": pending,
                "pushed_seq": st["pushed_seq"], "pulled_seq": st["pulled_seq"],
                "pushed_total": st["pushed_total"], "pulled_total": st["pulled_total"],
                "database_id": st["database_id"], "last_sync_ts": st["last_sync_ts"],
                "last_error": st["last_error"], "last_error_ts": st["last_error_ts"],
                "running": name in self.running}


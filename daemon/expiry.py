"""The lifetimes job: ends sessions idle past their TTL and expires memories whose TTL passed.

Config: `[session] idle_ttl = "24h"` (a session's default idle lifetime) and `[session]
expiry_interval = "30s"` (how often the job runs). Requests that carry a session mark it as
seen; the job writes those marks in one batch, so a request never waits on a write for it.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from db0.store import sessions
from db0.store.context import Context
from db0.store.errors import StoreError
from db0.store.memories import parse_duration

if TYPE_CHECKING:
    from db0.daemon.server import Server

log = logging.getLogger("db0.expiry")


class Expiry:
    def __init__(self, srv: Server) -> None:
        self.srv = srv
        self.idle_ttl = 24 * 3600.0
        self.interval = 30.0
        self.last_run: dict[str, Any] = {}
        self._seen: dict[str, float] = {}
        self._lineage: dict[str, tuple[tuple[str, float], ...]] = {}
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.apply_config(srv.config)

    def apply_config(self, cfg: dict[str, Any]) -> None:
        sec = cfg.get("session") or {}
        try:
            self.idle_ttl = parse_duration(sec.get("idle_ttl") or "24h")
            self.interval = max(0.2, parse_duration(sec.get("expiry_interval") or "30s"))
        except StoreError as e:
            log.error("config: [session]: %s", e.message)
        self._wake.set()

    def context(self, ctx: Context) -> Context:
        """The request's context with its session's lineage; marks the session as seen."""
        if not ctx.session:
            return ctx
        with self._guard:
            self._seen[ctx.session] = time.time()
            lin = self._lineage.get(ctx.session)
        if lin is None:
            with self.srv.reader() as store:
                lin = sessions.lineage(store.conn, ctx.session)
            with self._guard:
                self._lineage[ctx.session] = lin
        if not lin:
            return ctx
        return Context(ctx.user, ctx.agent, ctx.session, ctx.task, lin)

    def forget_lineage(self, sid: str) -> None:
        with self._guard:
            self._lineage.pop(sid, None)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="db0-expiry", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)

    def status(self) -> dict[str, Any]:
        return {"idle_ttl_s": self.idle_ttl, "interval_s": self.interval, **self.last_run}

    def run_once(self) -> dict[str, int]:
        with self._guard:
            seen, self._seen = self._seen, {}
        ttl = self.idle_ttl

        def job(store: Any) -> dict[str, int]:
            if seen:
                sessions.touch(store, seen)
            return sessions.expire_due(store, ttl)

        out: dict[str, int] = self.srv.write(job)
        if out["sessions_ended"] or out["memories_expired"]:
            log.info("expiry: %d idle sessions ended, %d memories expired",
                     out["sessions_ended"], out["memories_expired"])
        self.last_run = {"last_run": time.time(), **out}
        return out

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.run_once()
            except Exception:
                log.exception("expiry job failed")


def install(srv: Server) -> None:
    srv.components["expiry"] = Expiry(srv)

"""The lifetimes job: ends sessions idle past their TTL and expires memories whose TTL passed.

Config: `[session] idle_ttl = "24h"` (a session's default idle lifetime) and `[session]
expiry_interval = "30s"` (how often the job runs). Requests that carry a session mark it as
seen (`Runtime.context`); the job writes those marks in one batch, so a request never waits on
a write for it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from db0.daemon.core.config import Config
from db0.daemon.core.runtime import Component
from db0.store import sessions
from db0.store.core import Store

log = logging.getLogger("db0.expiry")
STAGED_IMPORT_TTL = 3600.0  # an import whose client sent nothing for an hour is dropped


class Expiry(Component):
    name = "expiry"
    interval: float | None = 30.0

    idle_ttl = 24 * 3600.0
    last_run: dict[str, Any] = {}

    def apply_config(self, cfg: Config) -> None:
        self.idle_ttl = cfg.session.idle_ttl
        self.interval = max(0.2, cfg.session.expiry_interval)
        self.wake()

    def status(self) -> dict[str, Any]:
        return {"idle_ttl_s": self.idle_ttl, "interval_s": self.interval, **self.last_run}

    def tick(self) -> None:
        self.run_once()

    def run_once(self) -> dict[str, int]:
        seen = self.rt.take_seen()
        dropped = self.rt.staging.clear(idle=STAGED_IMPORT_TTL)
        if dropped:
            log.info("expiry: dropped %d staged lines of imports idle for an hour", dropped)
        ttl = self.idle_ttl

        def job(store: Store) -> dict[str, int]:
            if seen:
                sessions.touch(store, seen)
            return sessions.expire_due(store, ttl)

        out: dict[str, int] = self.rt.write(job)
        if out["sessions_ended"] or out["memories_expired"]:
            log.info("expiry: %d idle sessions ended, %d memories expired",
                     out["sessions_ended"], out["memories_expired"])
        self.last_run = {"last_run": time.time(), **out}
        return out

"""Identifiers and clocks: time-sortable memory ids and a hybrid logical clock.

A hybrid logical clock (HLC) stamp is `MMMMMMMMMMMMM.CCCCC.DEVICE`: wall milliseconds, a counter
and the device id, so stamps compare as strings, totally ordered across devices (last writer wins).
"""

from __future__ import annotations

import os
import threading
import time

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


def new_id(ms: int | None = None) -> str:
    """A 26-character ULID-like id: 48 bits of milliseconds, then 80 random bits."""
    ms = int(time.time() * 1000) if ms is None else ms
    n = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    out = []
    for _ in range(26):
        out.append(_CROCKFORD[n & 31])
        n >>= 5
    return "".join(reversed(out))


def new_device_id() -> str:
    return os.urandom(6).hex()


class HybridClock:
    def __init__(self, device_id: str, last: str | None = None) -> None:
        self.device_id = device_id
        self._ms = 0
        self._counter = 0
        self._lock = threading.Lock()
        if last:
            self.observe(last)

    def now(self) -> str:
        with self._lock:
            wall = int(time.time() * 1000)
            if wall > self._ms:
                self._ms, self._counter = wall, 0
            else:
                self._counter += 1
            return f"{self._ms:013d}.{self._counter:05d}.{self.device_id}"

    def observe(self, stamp: str) -> None:
        """Move past a stamp seen from elsewhere, so our next stamp orders after it."""
        try:
            ms_s, counter_s, _ = stamp.split(".", 2)
            ms, counter = int(ms_s), int(counter_s)
        except ValueError:
            return
        with self._lock:
            if (ms, counter) > (self._ms, self._counter):
                self._ms, self._counter = ms, counter

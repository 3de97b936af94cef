"""Identifiers and clocks: time-sortable memory ids and a hybrid logical clock.

A hybrid logical clock (HLC) stamp is `MMMMMMMMMMMMM.CCCCC.DEVICE`: wall milliseconds, a counter
and the device id, so stamps compare as strings, totally ordered across devices (last writer wins).
"""

from __future__ import annotations

import functools
import os
import random
import threading
import time

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"
_rng = random.Random(os.urandom(16))
# Two characters for every 10 bits: the random part is 8 table look-ups.
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]


@functools.lru_cache(maxsize=4)
def _time_part(ms: int) -> str:
    out = []
    for _ in range(10):
        out.append(_CROCKFORD[ms & 31])
        ms >>= 5
    return "".join(reversed(out))


def new_id(ms: int | None = None) -> str:
    """A 26-character ULID-like id: 10 characters of milliseconds, 16 of random bits.

    On an import's hot path: the time part is cached per millisecond and the random part
    encoded two characters at a time from a table, not character by character.
    """
    ms = int(time.time() * 1000) if ms is None else ms
    # Ids need to be unique, not secret: the PRNG (seeded from os.urandom) is enough.
    n = _rng.getrandbits(80)
    p = _PAIRS
    return _time_part(ms) + (p[n >> 70] + p[(n >> 60) & 1023] + p[(n >> 50) & 1023]
                             + p[(n >> 40) & 1023] + p[(n >> 30) & 1023] + p[(n >> 20) & 1023]
                             + p[(n >> 10) & 1023] + p[n & 1023])


# A random byte's low five bits as a Crockford character: 16 random bytes make the 80 random
# bits of an id, each of the 32 characters equally likely, as new_id's are.
_BYTE_CHAR = bytes(ord(_CROCKFORD[b & 31]) for b in range(256))


def new_ids(ms: int, n: int) -> list[str]:
    """`n` ids of the millisecond `ms`, as `new_id(ms)` makes them, in one pass (an import's
    commit makes one per line): the random parts from os.urandom, mapped by one translate.
    In ascending order, so rows inserted in this order append to the ids' unique index
    instead of landing at random places in it (a large import's index outgrows the cache)."""
    tp = _time_part(ms)
    rnd = os.urandom(16 * n).translate(_BYTE_CHAR).decode("ascii")
    return [tp + r for r in sorted(rnd[i:i + 16] for i in range(0, 16 * n, 16))]


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
            elif self._counter < 99_999:
                self._counter += 1
            else:  # five digits at most, so stamps keep comparing as strings
                self._ms, self._counter = self._ms + 1, 0
            return f"{self._ms:013d}.{self._counter:05d}.{self.device_id}"

    def stamps(self, n: int) -> list[str]:
        """`n` stamps, each after the one before, as `n` calls of `now` would give them, in
        one pass. The counter keeps its five digits: past 99999 the stamps move to the next
        millisecond (the clock then runs that far ahead of the wall, as after `observe`)."""
        out: list[str] = []
        if n <= 0:
            return out
        with self._lock:
            wall = int(time.time() * 1000)
            if wall > self._ms:
                ms, c = wall, 0
            else:
                ms, c = self._ms, self._counter + 1
            tail = "." + self.device_id
            while True:
                if c > 99_999:
                    ms, c = ms + 1, 0
                k = min(n - len(out), 100_000 - c)
                head = f"{ms:013d}."
                out += [f"{head}{i:05d}{tail}" for i in range(c, c + k)]
                c += k
                if len(out) == n:
                    break
            self._ms, self._counter = ms, c - 1
        return out

    def observe(self, stamp: str) -> None:
        """Move past a stamp seen from elsewhere, so our next stamp orders after it."""
        try:
            ms_s, counter_s, _ = stamp.split(".", 2)
            ms, counter = int(ms_s), int(counter_s)
        except ValueError:
            return
        with self._lock:
            self._ms, self._counter = max((self._ms, self._counter), (ms, counter))

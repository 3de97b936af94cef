"""The one writer: a thread that owns the write connection and runs jobs from a queue, each in
`BEGIN IMMEDIATE`, in order (datasette's pattern). Callers wait on a Future.

After a job commits, the writer calls the store's listeners (the embedder's queue, for one),
outside the transaction.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from db0.store.core import Store

T = TypeVar("T")
log = logging.getLogger("db0.writer")
_STOP = object()


class Writer:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._q: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="db0-writer", daemon=True)
        self.after_commit: list[Callable[[Any], None]] = []

    def start(self) -> None:
        self._thread.start()

    def submit(self, fn: Callable[[Store], T]) -> Future[T]:
        fut: Future[T] = Future()
        self._q.put((fn, fut))
        return fut

    def run(self, fn: Callable[[Store], T], timeout: float | None = 300.0) -> T:
        return self.submit(fn).result(timeout)

    @property
    def pending(self) -> int:
        return self._q.qsize()

    def _run(self) -> None:
        while True:
            job = self._q.get()
            if job is _STOP:
                break
            fn, fut = job
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                with self.store.transaction():
                    result = fn(self.store)
            except BaseException as e:  # the caller gets it; the writer lives on
                fut.set_exception(e)
                continue
            fut.set_result(result)
            for cb in self.after_commit:
                try:
                    cb(result)
                except Exception:
                    log.exception("after-commit callback failed")

    def stop(self, timeout: float = 30.0) -> None:
        """Finish what is queued, then stop."""
        self._q.put(_STOP)
        self._thread.join(timeout)

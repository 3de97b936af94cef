"""The one writer: a thread that owns the write connection and runs jobs from a queue, in order
(datasette's pattern), with group commit.

Jobs queued while a commit is under way share the next one: each runs in its own savepoint
inside one `BEGIN IMMEDIATE … COMMIT`, so a job that fails is rolled back alone and the others
keep their writes. A caller's future resolves only after the commit returned, so a write is
acknowledged only once it is durable (as durable as the connection's `synchronous` setting
makes a commit). If the commit itself fails (a full disk, say), every job of the group gets
that error and nothing of it is kept.

After a group commits, the writer calls `after_commit` with each successful job's result,
outside the transaction (the embedder's queue listens there).
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
MAX_GROUP = 512  # jobs in one commit at most (bounds the time a caller waits behind others)


class Writer:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._q: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="db0-writer", daemon=True)
        self.after_commit: list[Callable[[Any], None]] = []
        self.commits = 0
        self.jobs = 0

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
        stop = False
        while not stop:
            job = self._q.get()
            if job is _STOP:
                break
            group = [job]
            while len(group) < MAX_GROUP:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                group.append(nxt)
            self._commit(group)

    def _commit(self, group: list[tuple[Callable[[Store], Any], Future[Any]]]) -> None:
        live = [(fn, fut) for fn, fut in group if fut.set_running_or_notify_cancel()]
        if not live:
            return
        conn = self.store.conn
        done: list[tuple[Future[Any], Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for fn, fut in live:
                conn.execute("SAVEPOINT job")
                try:
                    result = fn(self.store)
                except BaseException as e:  # this job's writes go, the group's stay
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    done.append((fut, None, e))
                    continue
                conn.execute("RELEASE job")
                done.append((fut, result, None))
            conn.execute("COMMIT")
        except BaseException as e:  # BEGIN, a rollback or the COMMIT failed: nothing is kept
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except Exception:
                    log.exception("rollback failed")
            failed = {id(f) for f, _, err in done if err is not None}
            for fn_fut in live:
                fut = fn_fut[1]
                own = next((err for f, _, err in done if f is fut and err is not None), None)
                fut.set_exception(own if id(fut) in failed and own is not None else e)
            return
        self.commits += 1
        self.jobs += len(done)
        for fut, result, err in done:
            if err is not None:
                fut.set_exception(err)
            else:
                fut.set_result(result)
        for _fut, result, err in done:
            if err is not None:
                continue
            for cb in self.after_commit:
                try:
                    cb(result)
                except Exception:
                    log.exception("after-commit callback failed")

    def stop(self, timeout: float = 30.0) -> None:
        """Finish what is queued, then stop."""
        self._q.put(_STOP)
        self._thread.join(timeout)


class Checkpointer:
    """Moves committed pages from the WAL into the database file on its own thread and its own
    connection, so no commit waits for that copy and its fsync (the writer's connection has
    SQLite's automatic checkpoint turned off). PASSIVE: it never blocks a writer or a reader,
    it copies what it can and tries again later."""

    def __init__(self, path: Any, wal_bytes: int = 8 << 20, interval: float = 0.5) -> None:
        self.path = path
        self.wal_bytes = wal_bytes
        self.interval = interval
        self.checkpoints = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="db0-checkpoint", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        import os

        from db0.store import db as dbmod

        wal = f"{self.path}-wal"
        conn = dbmod.connect(self.path, migrate=False)
        try:
            while not self._stop.wait(self.interval):
                try:
                    if os.path.getsize(wal) >= self.wal_bytes:
                        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                        self.checkpoints += 1
                except OSError:
                    continue
                except Exception:
                    log.exception("checkpoint failed")
        finally:
            conn.close()

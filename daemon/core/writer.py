"""The one writer: whoever writes runs its job on the one write connection, one commit at a
time, jobs in the order they came, with group commit (a leader/follower queue, so a write
needs no hand-off to another thread).

A caller queues its job; if no commit is under way it leads: it takes what is queued (its own
job first when alone) and commits it, on its own thread. Jobs queued while a commit is under way
wait, each caller on a lock of its own; when the commit ends, one of them is woken alone to lead
the next commit with all of them, and each other caller is woken once its job is done. A group
is one `BEGIN IMMEDIATE … COMMIT` (a `Round`) in which a job that fails is rolled back alone and
the others keep their writes: each job of a group runs in its own savepoint, except a job alone
in its group and rerunnable jobs (below). A caller gets its result only after the commit
returned, so a write is acknowledged only once it is durable (as durable as the connection's
`synchronous` setting makes a commit). If the commit itself fails (a full disk, say), every job
of the group gets that error and nothing of it is kept.

Gathering: a request that will write announces itself (`announce`) before it prepares its job
(redaction, checks), and `run` counts it as arrived when its job is queued (`withdraw` when it
ends without writing). A leader waits, at most `GATHER_S`, while announced jobs are still on
their way, or until as many rerunnable jobs are queued as the last commit it led held (the
callers a commit answered together call again together), so callers that write at the same
moment share one commit instead of each leading a commit of one (they need the GIL to get
there, which the waiting leader gives up). A lone caller has nothing announced and never
waits.

Rerunnable jobs (`run(..., rerun=True)`: the job may run again, and writes memories only
through `core.write_state` and `core.insert_states`, as a remember does) in a group of them
run without savepoints. If one of them fails, the whole transaction is rolled back and the
jobs before it run again in a new one, each with a savepoint from then on, so only the
failing job loses its writes (a lone job that fails keeps nothing, and nothing runs again).

Full text: the writer's store lets up to FTS_LAG new memories wait for their full-text
indexing (`core.flush_full_text`, m018): the commit that finds more waiting indexes them all
with one statement, and so does the writer's own thread once no commit came for FTS_IDLE_S.
FTS5 writes a segment per statement that adds text, which was most of a lone write's pages;
recall scores the waiting memories from their text meanwhile.

A background thread (one that lowered its priority, `lower_priority`) never leads: a commit
holding other callers' writes would run at its priority. Its job waits for the next leader,
or for the writer's own thread, at the normal priority, which it wakes when no commit is
under way.

After a group commits, the leader calls `after_commit` with each successful job's result,
outside the transaction (the embedder's queue listens there).

Holds: `hold(fn)` runs `fn` (not in a transaction: the checkpointer's WAL reset, on its own
connection) between two commits, with the lead taken so that no commit starts meanwhile. It
comes before the queued callers at the next hand-over, and they wait for it in the process, on
their own locks, rather than in SQLite's busy handler (which sleeps 1, 2, 5 ms and more, for a
hold of a millisecond or two).

Rounds: `open_round` takes the lead at once when the writer is idle (never behind another
commit) and begins a transaction that rerunnable jobs join one at a time, each run as it is
added (`Round.add`), until `Round.commit`: a group as above, led by its caller. The server's
selector thread runs a round's first writes while it waits for the rest of the round's
requests.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from typing import Any, TypeVar

from db0.store.core import Store, flush_full_text, full_text_tail
from db0.store.errors import StoreError

T = TypeVar("T")
log = logging.getLogger("db0.writer")
MAX_GROUP = 512  # jobs in one commit at most (bounds the time a caller waits behind others)
GATHER_S = 0.001  # a leader waits at most this long for announced jobs to be queued
FTS_LAG = 256  # new memories a commit may leave out of the full-text index (recall scores them
#   from their text meanwhile: a larger lag makes bursts cheaper and such recalls dearer)
FTS_IDLE_S = 0.2  # the writer indexes the waiting ones after this long without a commit
background = threading.local()  # `background.on`: this thread runs below request threads
_announced = threading.local()  # `_announced.on`: this thread's request is counted in `_coming`


class _Entry:
    """A queued job and the lock its caller sleeps on (held from the start; released once,
    when the job is done or when the caller is to lead the next commit)."""

    __slots__ = ("fn", "fut", "lead", "leads", "rerun", "wake")

    def __init__(self, fn: Callable[[Store], Any], fut: Future[Any], rerun: bool,
                 leads: bool) -> None:
        self.fn = fn
        self.fut = fut
        self.rerun = rerun
        self.leads = leads  # its caller may lead a commit (not a background thread)
        self.lead = False  # set (under the writer's lock) when handed the next commit
        self.wake = threading.Lock()
        self.wake.acquire()


class Writer:
    def __init__(self, store: Store) -> None:
        self.store = store
        store.fts_lag = FTS_LAG
        # Memories wait for their full-text indexing (the writer's thread indexes them once
        # idle): from the start too, when a daemon stopped or was killed while some waited.
        mark, top = full_text_tail(store.conn)
        self._unindexed = top > mark
        self._q: deque[_Entry] = deque()
        lock = threading.Lock()
        self._cv = threading.Condition(lock)  # `stop` waits here for the queue to drain
        self._gather = threading.Condition(lock)  # a gathering leader waits here alone
        self._gathering = 0  # while a leader gathers: how many jobs it waits for
        self._coming = 0  # announced requests whose job is not queued yet
        self._last = 1  # rerunnable jobs in the last commit a request thread led
        self._leading = False
        self._holds: deque[threading.Lock] = deque()  # `hold` callers waiting for the lead
        self._stopped = False
        self._kick = threading.Event()
        self._closing = False
        self._thread = threading.Thread(target=self._serve, name="db0-writer", daemon=True)
        self.after_commit: list[Callable[[Any], None]] = []
        self.commits = 0
        self.jobs = 0

    def start(self) -> None:
        self._thread.start()

    def announce(self) -> None:
        """This thread's request will soon queue a job (a leader may wait for it)."""
        if getattr(_announced, "on", False):
            return
        _announced.on = True
        with self._cv:
            self._coming += 1

    def withdraw(self) -> None:
        """This thread's request ends; if it announced a job it never queued, stop counting it."""
        if getattr(_announced, "on", False):
            _announced.on = False
            with self._cv:
                self._coming -= 1
                self._gathered()

    def _gathered(self) -> None:
        """Under the lock: wake the gathering leader once what it waits for is queued."""
        if self._gathering and self._coming <= 0 and len(self._q) >= self._gathering:
            self._gather.notify()

    def run(self, fn: Callable[[Store], T], timeout: float | None = 300.0, *,
            rerun: bool = False) -> T:
        """Run `fn` in a transaction of the write connection; its result once committed.
        `rerun`: `fn` may run again and writes memories only through `core.write_state` and
        `core.insert_states` (see the module)."""
        lead = not getattr(background, "on", False)
        entry: _Entry = _Entry(fn, Future(), rerun, lead)
        deadline = None if timeout is None else time.monotonic() + timeout
        group = self._queue([entry], lead, gather=True)
        return self._await(entry, group, deadline)  # type: ignore[no-any-return]

    def _queue(self, entries: list[_Entry], lead: bool, gather: bool) -> list[_Entry]:
        """Queue the entries; the group to lead now when no commit is under way (and the
        caller may lead), else []."""
        arrived = getattr(_announced, "on", False)
        with self._cv:
            if arrived:
                _announced.on = False
                self._coming -= 1
            if self._stopped:
                raise StoreError("the daemon is shutting down", "try again",
                                 code="shutting_down")
            self._q.extend(entries)
            if not self._leading:
                if lead:
                    return self._take(gather=gather)
                self._kick.set()
            else:
                self._gathered()
        return []

    def _await(self, entry: _Entry, group: list[_Entry], deadline: float | None) -> Any:
        """Lead `group` if given, then wait for the entry's job (leading a later commit if
        handed it); its result, or its exception raised."""
        fut = entry.fut
        while True:
            if group:
                self._lead(group, entry)
                group = []
            if fut.done():
                return fut.result(0)
            left = None if deadline is None else deadline - time.monotonic()
            woken = entry.wake.acquire(timeout=-1 if left is None else max(0.0, left))
            with self._cv:
                if fut.done():
                    continue
                if entry.lead:  # handed the next commit (even past the deadline: it must lead)
                    entry.lead = False
                    group = self._take(gather=True)
                    continue
                if not woken:
                    if entry in self._q:
                        self._q.remove(entry)
                        fut.cancel()
                    raise TimeoutError("the write did not commit in time")

    def _lead(self, group: list[_Entry], own: _Entry | None = None) -> None:
        try:
            self._commit(group)
        finally:
            for e in group:
                if e is not own:
                    e.wake.release()  # its caller answers (or, not done, waits on)
            with self._cv:
                self._leading = False
                self._hand_over()

    def _hand_over(self) -> None:
        """Under the lock, after a commit: a `hold` waiting takes the lead first; else the
        first queued caller that may lead leads the next commit (woken alone); only background
        jobs queued: the writer's thread leads."""
        if self._holds:
            self._leading = True  # reserved for the hold, as for a caller below
            self._holds.popleft().release()
            return
        if not self._q:
            self._cv.notify_all()  # `stop` waits for an empty queue
            return
        for e in self._q:
            if e.leads:
                self._leading = True  # reserved for it, so no other caller takes it first
                e.lead = True
                e.wake.release()
                return
        self._kick.set()

    def _take(self, gather: bool = False) -> list[_Entry]:
        """Under the lock: lead the next commit with the queue's first jobs; with `gather`,
        after waiting (at most GATHER_S) for the announced jobs still on their way, and for
        as many rerunnable jobs as the last commit a caller led held."""
        self._leading = True
        if gather:
            want = min(self._last, MAX_GROUP)
            if self._coming > 0 or len(self._q) < want:
                self._gathering = want
                until = time.monotonic() + GATHER_S
                while (self._coming > 0 or len(self._q) < want) and len(self._q) < MAX_GROUP:
                    left = until - time.monotonic()
                    if left <= 0:
                        break
                    self._gather.wait(left)
                self._gathering = 0
        group = [self._q.popleft() for _ in range(min(len(self._q), MAX_GROUP))]
        if gather:  # only rerunnable jobs count: the requests' remembers, not background jobs
            self._last = max(1, sum(1 for e in group if e.rerun))
        return group

    def _serve(self) -> None:
        """The writer's own thread: leads the commits of background callers' jobs."""
        while True:
            kicked = self._kick.wait(FTS_IDLE_S if self._unindexed else None)
            self._kick.clear()
            if self._closing:
                return
            if not kicked:
                self._flush_idle()
                continue
            while True:
                with self._cv:
                    if self._leading or not self._q:
                        break
                    group = self._take()
                self._lead(group)

    def _flush_idle(self) -> None:
        """Index the memories waiting for their full text, unless a commit is under way or
        queued (the next commit's own flush or this thread's next idle moment does it)."""
        with self._cv:
            if self._leading or self._q or self._stopped:
                return
            self._leading = True
        conn = self.store.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            flush_full_text(conn)
            conn.execute("COMMIT")
        except Exception:  # a full disk, say: the next commit tries again
            _rollback(conn)
            log.exception("indexing the newest memories' full text failed")
        finally:
            self._unindexed = False
            with self._cv:
                self._leading = False
                self._hand_over()

    def _commit_now(self, conn: Any) -> None:
        """The end of a write transaction: what `Store.before_commit` owes, then COMMIT; the
        writer's thread is woken to index what waits once it has been idle FTS_IDLE_S."""
        waiting = self.store.before_commit()
        conn.execute("COMMIT")
        if waiting and not self._unindexed:
            self._unindexed = True
            self._kick.set()

    def hold(self, fn: Callable[[], T]) -> T:
        """Run `fn` while no commit is under way: after the one under way (if any) and before
        the queued ones, which start once it returns. Once the writer has stopped no commit
        comes any more, and `fn` runs at once."""
        waiter: threading.Lock | None = None
        with self._cv:
            idle = self._stopped and not self._leading and not self._q
            if idle:
                pass  # nothing can start a commit any more
            elif self._leading:
                waiter = threading.Lock()
                waiter.acquire()
                self._holds.append(waiter)
            else:
                self._leading = True
        if idle:
            return fn()
        if waiter is not None:
            waiter.acquire()  # released by `_hand_over` once the lead is this caller's
        try:
            return fn()
        finally:
            with self._cv:
                self._leading = False
                self._hand_over()

    def open_round(self) -> Round | None:
        """Lead a commit at once, if none is under way or queued (else None, and nothing
        changed): a transaction begun now, which rerunnable jobs join one at a time as their
        requests arrive (`Round.add` runs each at once) and which
        `Round.commit` ends. The server's selector thread runs a round's first writes while
        it waits for the rest of the round's requests, instead of waiting idle; it never
        waits behind another's commit. Other callers queue meanwhile, as behind any commit."""
        if getattr(background, "on", False):
            return None
        with self._cv:
            if self._stopped or self._leading or self._q:
                return None
            self._leading = True
        try:
            self.store.conn.execute("BEGIN IMMEDIATE")
        except BaseException:  # locked by another process, say: the request's handler says so
            with self._cv:
                self._leading = False
                self._hand_over()
            return None
        return Round(self)

    def _end_round(self, rnd: Round) -> list[tuple[bool, Any]]:
        try:
            return self._finish(rnd)
        finally:
            with self._cv:
                self._leading = False
                self._hand_over()

    def _finish(self, rnd: Round) -> list[tuple[bool, Any]]:
        """Commit what a round's jobs wrote (or, broken, roll it all back), then the
        after-commit callbacks: per job, in order, (True, result) or (False, its error, or
        the commit's when the commit failed)."""
        conn = self.store.conn
        rnd.closed = True
        try:
            if rnd.broken is not None:
                raise rnd.broken
            self._commit_now(conn)
        except BaseException as e:  # nothing of the round is kept
            _rollback(conn)
            return [(False, value if not good else e) for good, value in rnd.done]
        self.commits += 1
        self.jobs += sum(1 for good, _ in rnd.done if good)
        for good, result in rnd.done:
            if good:
                self._after(result)
        return rnd.done

    @property
    def busy(self) -> bool:
        """A commit is under way or queued (a hint: it may change at once)."""
        return self._leading or bool(self._q)

    @property
    def pending(self) -> int:
        return len(self._q)

    def _commit(self, group: list[_Entry]) -> None:
        """A group's jobs in one transaction, as a round (`Round`): rerunnable jobs and a
        lone job without savepoints (a failure starts the transaction again with one per
        job), other groups with a savepoint per job from the start."""
        jobs = [e for e in group if e.fut.set_running_or_notify_cancel()]
        if not jobs:
            return
        try:
            self.store.conn.execute("BEGIN IMMEDIATE")
        except BaseException as e:  # locked by another process, say: every job gets that
            for job in jobs:
                job.fut.set_exception(e)
            return
        rnd = Round(self, careful=len(jobs) > 1 and not all(e.rerun for e in jobs))
        for job in jobs:
            rnd.add(job.fn)
        for job, (good, value) in zip(jobs, self._finish(rnd), strict=True):
            if good:
                job.fut.set_result(value)
            else:
                job.fut.set_exception(value)

    def _after(self, result: Any) -> None:
        for cb in self.after_commit:
            try:
                cb(result)
            except Exception:
                log.exception("after-commit callback failed")

    def stop(self, timeout: float = 30.0) -> None:
        """Let the commit under way and the jobs queued finish (their callers lead them),
        then take no more."""
        with self._cv:
            self._stopped = True
            self._cv.wait_for(lambda: not self._leading and not self._q, timeout)
        self._closing = True
        self._kick.set()
        self._thread.join(timeout)


class Round:
    """A commit led by its caller, which jobs join one at a time (`Writer.open_round`)."""

    def __init__(self, writer: Writer, careful: bool = False) -> None:
        self.writer = writer
        self.done: list[tuple[bool, Any]] = []  # per job: (True, result) or (False, error)
        self.fns: list[Callable[[Store], Any]] = []  # the jobs, in order (run again: `_again`)
        self.broken: BaseException | None = None  # a rollback that failed: nothing is kept
        self.careful = careful  # a savepoint per job (from the start, or once one failed)
        self.closed = False

    def add(self, fn: Callable[[Store], Any]) -> None:
        """Run a job in the round's transaction now. Without a savepoint (each costs a job a
        third more): when a job fails, the transaction is rolled back and the jobs before it
        run again in a new one, each under a savepoint from then on, so a job that fails
        loses its own writes only (the jobs must be rerunnable, unless `careful` from the
        start)."""
        conn = self.writer.store.conn
        if self.broken is not None:
            self.fns.append(fn)
            self.done.append((False, self.broken))
        elif self.careful:
            self._add_saved(conn, fn)
        else:
            self.fns.append(fn)
            try:
                self.done.append((True, fn(self.writer.store)))
            except BaseException as e:
                self.done.append((False, e))
                self._again(conn)

    def _again(self, conn: Any) -> None:
        """After a job failed without a savepoint: roll back, begin again, and run the jobs
        that had succeeded again, each under a savepoint."""
        self.careful = True
        try:
            conn.execute("ROLLBACK")
            conn.execute("BEGIN IMMEDIATE")
        except BaseException as e:
            self.broken = e
            return
        runs, self.fns, done = self.fns, [], self.done
        self.done = []
        for fn, (good, value) in zip(runs, done, strict=True):
            if good:
                self._add_saved(conn, fn)
            else:
                self.fns.append(fn)
                self.done.append((False, value))

    def _add_saved(self, conn: Any, fn: Callable[[Store], Any]) -> None:
        self.fns.append(fn)
        try:
            conn.execute("SAVEPOINT job")
            try:
                result = fn(self.writer.store)
            except BaseException as e:  # this job's writes go, the round's stay
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                self.done.append((False, e))
                return
            conn.execute("RELEASE job")
        except BaseException as e:  # a savepoint statement failed: nothing is kept
            self.broken = e
            self.done.append((False, e))
            return
        self.done.append((True, result))

    def commit(self) -> list[tuple[bool, Any]]:
        """End the round: commit what its jobs wrote (durable when this returns), then the
        after-commit callbacks; per job, in order, (True, result) or (False, its error, or
        the commit's for all when the commit failed). The lead goes on to the next caller."""
        assert not self.closed
        return self.writer._end_round(self)

    def abort(self) -> None:
        """End the round with nothing kept (a defect in its caller)."""
        if not self.closed:
            self.broken = self.broken or RuntimeError("round aborted")
            self.commit()


def _rollback(conn: Any) -> bool:
    """Roll back the transaction under way, if any; False (logged) when the rollback failed."""
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        return True
    except Exception:
        log.exception("rollback failed")
        return False


class Checkpointer:
    """Moves committed pages from the WAL into the database file on its own thread and its own
    connection, so no commit waits for that copy and its fsync (the writer's connection has
    SQLite's automatic checkpoint turned off: `configure_writer`). PASSIVE: it never blocks a
    writer or a reader, it copies what it can and tries again later.

    Rule: the WAL is bounded. SQLite writes the WAL from its start again only when a commit
    begins with every frame copied and no reader inside the WAL, which a steady stream of
    writes never leaves room for: it grows by every commit (gigabytes a minute) for as long as
    the writes go on. Past `wal_limit` the copy is a RESTART: it holds new commits back (through
    the writer's `hold`, given as `hold`, so they wait in the process and not in SQLite's busy
    handler), waits at most `wait_ms` for the readers to move to the newest snapshot and copies
    the few frames the last PASSIVE left; the next commit then writes the WAL from its start,
    over the frames already copied, and cuts the file back to `keep` bytes (the writer's
    `journal_size_limit`). A RESTART, not a TRUNCATE: the file's blocks are written over, not
    freed and allocated again (docs/bench-issue-17-writes.md, twelfth round). A WAL of
    `wal_bytes` or more that saw no commit for a whole interval is copied whole once (RESTART)
    and keeps its blocks while it is no larger than `idle_keep` (at most a quarter of the
    database), so the next burst of writes writes over them instead of growing the file again
    (a commit into new blocks costs a tenth more: docs/bench-issue-17-writes.md, nineteenth
    round); a larger one is emptied (TRUNCATE): no commit may come to cut it back (a big
    import followed by reads only would leave its gigabyte beside the database), and none
    waits for it. When readers keep it waiting, it gives up and tries again at the next
    interval."""

    def __init__(self, path: Any, wal_bytes: int = 8 << 20, interval: float = 0.5,
                 wal_limit: int = 64 << 20, wait_ms: int = 100,
                 hold: Callable[[Callable[[], Any]], Any] | None = None) -> None:
        self.path = path
        self.wal_bytes = wal_bytes
        self.wal_limit = wal_limit
        self.wait_ms = wait_ms
        self.interval = interval
        self.hold = hold
        self.checkpoints = 0
        self.restarts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="db0-checkpoint", daemon=True)

    @property
    def keep(self) -> int:
        """The WAL's size once written from its start again: what one interval of a steady
        stream of commits adds past `wal_limit` stays allocated, a larger WAL (a big
        import's) is cut back."""
        return 4 * self.wal_limit

    def idle_keep(self, db_bytes: int) -> int:
        """The largest WAL that keeps its blocks while no commit comes: what a stream of
        commits keeps (`keep`), and no more than a quarter of the database (a small store's
        WAL stays small)."""
        return min(self.keep, db_bytes // 4)

    def configure_writer(self, conn: Any) -> None:
        """The write connection's side of the rule: no automatic checkpoint (this thread
        copies), and a WAL written from its start again cut back to `keep` bytes."""
        conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.execute(f"PRAGMA journal_size_limit={self.keep}")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        import os

        import apsw

        from db0.store import db as dbmod

        wal = f"{self.path}-wal"
        conn = dbmod.connect(self.path, migrate=False)
        conn.set_busy_timeout(self.wait_ms)  # only RESTART waits; PASSIVE never does

        def reset(mode: str) -> list[Any]:
            return list(conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchall())

        seen = None  # the database's data_version at the last look: it moves at each commit
        copied = None  # the data_version whose idle WAL was copied whole and kept
        try:
            while not self._stop.wait(self.interval):
                try:
                    size = os.path.getsize(wal)  # a PASSIVE copy never shrinks the file
                    version = dbmod.scalar(conn, "PRAGMA data_version")
                    idle, seen = version == seen, version
                    if size >= self.wal_bytes and not (idle and version == copied):
                        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                        self.checkpoints += 1
                    kept, mode = False, None
                    if idle and size >= self.wal_bytes and version != copied:
                        kept = size <= self.idle_keep(os.path.getsize(self.path))
                        mode = "RESTART" if kept else "TRUNCATE"
                    elif not idle and size >= self.wal_limit:
                        mode = "RESTART"
                    if mode is not None:
                        busy = self.hold(partial(reset, mode)) if self.hold else reset(mode)
                        done = not (busy and busy[0][0])
                        self.restarts += done
                        if done and kept:
                            copied = version
                except OSError:
                    continue
                except apsw.BusyError:
                    continue  # readers or a commit held on: the next interval tries again
                except Exception:
                    log.exception("checkpoint failed")
        finally:
            conn.close()

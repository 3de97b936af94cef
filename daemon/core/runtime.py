"""The daemon's typed core: what handlers and components share, below both of them.

`Runtime` holds the paths, the typed config, the one writer, the pool of read-only
connections and the optional services (embedder, reranker, expiry, spool, sync, watcher),
looked up by their class, so every use is type-checked. `Component` is the scaffolding each
service shares: config, start and stop, status, and an optional worker thread that wakes on an
interval or when asked.

Imports: the store, the config and the protocol; never the socket server, the handlers or a
component module (components import this, not the other way round).
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from db0.daemon.core.config import Config
from db0.daemon.core.writer import Checkpointer, Writer, background
from db0.daemon.paths import Paths
from db0.daemon.protocol import Db0Error
from db0.store import db as dbmod
from db0.store import sessions, sqlstats
from db0.store.context import Context
from db0.store.core import Store
from db0.store.write import Staging

T = TypeVar("T")
C = TypeVar("C", bound="Component")
log = logging.getLogger("db0.daemon")

READERS_AHEAD = 4  # read connections opened at start, so the first requests never open one
BACKGROUND_NICE = 10  # how much lower than request threads a background thread runs


def lower_priority() -> None:
    """Run the calling thread below the request threads (Linux schedules threads on their own
    nice values): background work may use every idle core but yields one to a request. A thread
    can lower its priority, never raise it back, so only threads that stay background call this."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)
    except (AttributeError, OSError):  # not Linux, or not allowed: run at the normal priority
        return
    background.on = True  # so it never leads a commit holding request threads' writes


class Beside:
    """Keeps one thread (a helper that a request hands work to and then works beside) off
    the core of the thread that hands it over, while another core is free.

    Rule: Linux wakes a thread on its waker's core, where it waits, or takes turns with the
    waker, until the balancer moves it (docs/performance.md); the hand-over was
    made so that the two run at once. With no core free (another process busy, the
    background embedder running), the thread may run anywhere, as the scheduler decides."""

    def __init__(self, tid: int) -> None:
        self.tid = tid
        try:
            import ctypes

            self.cpus: set[int] = os.sched_getaffinity(0)
            self._getcpu: Any = ctypes.CDLL(None).sched_getcpu
        except (AttributeError, OSError):  # not Linux: nothing to place
            self.cpus = set()
        self._now = self.cpus

    def place(self) -> None:
        """Before a hand-over, on the handing thread."""
        if len(self.cpus) < 2:
            return
        want = self.cpus
        if _runnable() < len(self.cpus):
            want = (self.cpus - {int(self._getcpu())}) or self.cpus
        if want != self._now:
            try:
                os.sched_setaffinity(self.tid, want)
                self._now = want
            except OSError:  # the thread is gone, or the set not allowed
                self.cpus = set()


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        import ctypes

        fn: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
        return fn
    except (AttributeError, OSError):  # not glibc
        return None


_TRIM = _malloc_trim()


def give_back_memory() -> None:
    """Return the heap's free pages to the system (glibc's `malloc_trim`), after a request
    that built and dropped many objects at once (an import's commit).

    Rule: glibc keeps what a process frees for its next allocations; pages freed inside the
    heap (below its top) go back only when asked. Without this, an import's commit leaves its
    whole peak in the daemon's RSS long after its objects are gone."""
    if _TRIM is not None:
        _TRIM(0)


def _runnable() -> int:
    """Threads runnable on the machine now, the caller among them (/proc/loadavg); a large
    number where it cannot be read."""
    try:
        with open("/proc/loadavg", "rb") as f:
            return int(f.read().split()[3].split(b"/")[0])
    except (OSError, ValueError, IndexError):
        return 1 << 30


# A count that a status reports (what waits for a vector, for token vectors) reads every row it
# counts, and status is polled (`db0 model use` every 0.3 s, the health page, scripts): a
# poller must not take the cores the background work needs. Once a count took more than
# COUNT_CHEAP_S, PolledCount makes it again only after COUNT_SHARE times as long (so counting
# takes at most 1/COUNT_SHARE of a core); in between it reports the last count less the work
# done since, never 0 unless a count said 0 and nothing was committed since.
COUNT_CHEAP_S = 0.02
COUNT_SHARE = 20


class PolledCount:
    """One costly count a status reports, made again only as often as COUNT_SHARE allows."""

    def __init__(self) -> None:
        # (what was counted, the count, work done by then, commits by then, when, how long)
        self._last: tuple[Any, int, int, int, float, float] | None = None

    def get(self, key: Any, done: int, commits: int, count: Callable[[], int]) -> int:
        """`count()`, or while counting is costly the last count less the work `done` since
        (a running total); `key` names what is counted (another key counts again), `commits`
        is the writer's commit count (a count of 0 holds only while it is unchanged)."""
        now = time.monotonic()
        last = self._last
        if (last is not None and last[0] == key and last[5] > COUNT_CHEAP_S
                and now - last[4] < last[5] * COUNT_SHARE
                and (last[1] > 0 or last[3] == commits)):
            return max(1, last[1] - (done - last[2])) if last[1] > 0 else 0
        n = count()
        self._last = (key, n, done, commits, now, time.monotonic() - now)
        return n


class Component:
    """A long-lived part of the daemon. Subclasses set `name`, and either override `tick` and
    set `interval` (seconds; None: only when woken) to get a worker thread, or leave `tick`
    alone for a component without one."""

    name = "component"
    interval: float | None = None
    background = False  # True: the worker thread runs below request threads (lower_priority)

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # -- what a subclass may override -----------------------------------------------------------

    def apply_config(self, cfg: Config) -> None:
        """Take the settings this component reads (called at start and on every reload)."""

    def status(self) -> dict[str, Any]:
        return {}

    def on_start(self) -> None:
        """Work to do before the thread starts (on the daemon's start-up path)."""

    def tick(self) -> None:
        raise NotImplementedError

    def on_stop(self) -> None:
        """Work to do after the thread stopped."""

    # -- the scaffolding ------------------------------------------------------------------------

    @property
    def threaded(self) -> bool:
        return type(self).tick is not Component.tick

    def start(self) -> None:
        self.on_start()
        if self.threaded:
            self._thread = threading.Thread(target=self._loop, name=f"db0-{self.name}",
                                            daemon=True)
            self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set() or self.rt.stopping.is_set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.on_stop()

    def _loop(self) -> None:
        if self.background:
            lower_priority()
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.tick()
            except Exception:
                log.exception("%s failed", self.name)


class Runtime:
    def __init__(self, paths: Paths, config: Config | None = None) -> None:
        self.paths = paths
        self.config = config or Config()
        self.config_unknown: list[str] = []
        self.config_error: str | None = None
        self.started = time.time()
        self.stopping = threading.Event()
        self.default_user = os.environ.get("DB0_USER") or getpass.getuser()
        self.store: Store | None = None
        self.writer: Writer | None = None
        self.checkpointer: Checkpointer | None = None
        # Idle read connections, last used on top: a request takes the one whose page cache
        # the previous request warmed (B-tree interior pages, the FTS structure), not the one
        # idle longest. list.append/pop are atomic.
        self._readers: list[Store] = []
        self._services: dict[type[Component], Component] = {}
        # The dispatcher's entry, for requests replayed from the spool (set by the server).
        self.replay: Callable[..., dict[str, Any]] | None = None
        # Asks the server to stop (set by the server; `daemon.stop` calls it).
        self.stopper: Callable[[str], None] | None = None
        self._guard = threading.Lock()
        self._seen: dict[str, float] = {}
        self._lineage: dict[str, tuple[tuple[str, float], ...]] = {}
        self.staging = Staging()  # imports staged until the batch that commits them

    # -- the database -----------------------------------------------------------------------

    def open(self) -> None:
        """Open the write connection (migrating the schema), the writer and the readers."""
        self.store = Store.open(self.paths.db_file, durability=self.config.store.durability)
        self.writer = Writer(self.store)
        # Commits only append to the WAL; the checkpointer's thread copies it into the file,
        # and resets it between two commits (the writer's hold).
        self.checkpointer = Checkpointer(self.paths.db_file, hold=self.writer.hold)
        self.checkpointer.configure_writer(self.store.conn)
        self.checkpointer.start()
        self.writer.start()
        for _ in range(READERS_AHEAD):
            self._readers.append(self._open_reader())

    def _open_reader(self) -> Store:
        assert self.store is not None
        return Store.open(self.paths.db_file, clock=self.store.clock, readonly=True)

    @contextlib.contextmanager
    def reader(self) -> Iterator[Store]:
        """A read-only connection from the pool (readers never block the writer in WAL)."""
        try:
            store = self._readers.pop()
        except IndexError:
            store = self._open_reader()
        try:
            yield store
        finally:
            self._readers.append(store)

    @property
    def commits(self) -> int:
        """The writer's commit count (-1 before it starts): what a cached count is checked
        against."""
        return self.writer.commits if self.writer is not None else -1

    def write(self, fn: Callable[[Store], T], *, rerun: bool = False) -> T:
        """Run `fn` in the writer's transaction; returns once its commit is durable. `rerun`:
        `fn` only writes through the store and may run again (`Writer.run`)."""
        assert self.writer is not None
        if self.stopping.is_set():
            raise Db0Error("shutting_down", "the daemon is shutting down", "try again")
        return self.writer.run(fn, rerun=rerun)

    def close(self) -> None:
        if self.writer:
            self.writer.stop()
        if self.checkpointer:
            self.checkpointer.stop()
        while True:
            try:
                self._readers.pop().close()
            except IndexError:
                break
        if self.store:
            with contextlib.suppress(Exception):
                self.store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self.store.close()
        sqlstats.dump()

    def schema_drift(self) -> list[str]:
        with self.reader() as store:
            return dbmod.schema_drift(store.conn)

    # -- services ---------------------------------------------------------------------------

    def add(self, comp: Component) -> None:
        self._services[type(comp)] = comp

    def service(self, cls: type[C]) -> C | None:
        """The running service of this class, or None when the daemon has none."""
        comp = self._services.get(cls)
        return comp if isinstance(comp, cls) else None

    def need(self, cls: type[C]) -> C:
        comp = self.service(cls)
        if comp is None:
            raise Db0Error("unavailable", f"this daemon runs no {cls.name}",
                           "restart it: db0 daemon restart")
        return comp

    @property
    def components(self) -> list[Component]:
        return list(self._services.values())

    def apply_config(self, cfg: Config, unknown: list[str] | None = None) -> None:
        self.config = cfg
        self.config_unknown = list(unknown or [])
        self.config_error = None
        logging.getLogger("db0").setLevel(cfg.daemon.log_level)
        for u in self.config_unknown:
            log.warning("config: unknown setting %s (ignored)", u)
        for comp in self.components:
            try:
                comp.apply_config(cfg)
            except Exception:
                log.exception("config: %s did not take it", comp.name)
        log.info("config applied")

    # -- who is asking ------------------------------------------------------------------------

    def context(self, given: dict[str, Any]) -> Context:
        """A request's context: what it says, then the config's defaults, then the login name,
        with a branched session's lineage. A request in a session marks the session as seen
        (the expiry job writes the marks in one batch, so no request waits on that write)."""
        ctx = Context(
            user=str(given.get("user") or self.config.context.user or self.default_user),
            agent=str(given.get("agent") or self.config.context.agent or "default"),
            session=str(given["session"]) if given.get("session") else None,
            task=str(given["task"]) if given.get("task") else None,
        )
        if not ctx.session:
            return ctx
        with self._guard:
            self._seen[ctx.session] = time.time()
            lin = self._lineage.get(ctx.session)
        if lin is None:
            with self.reader() as store:
                lin = sessions.lineage(store.conn, ctx.session)
            with self._guard:
                self._lineage[ctx.session] = lin
        return Context(ctx.user, ctx.agent, ctx.session, ctx.task, lin) if lin else ctx

    def take_seen(self) -> dict[str, float]:
        """The sessions seen since the last call, with when (for the expiry job to write)."""
        with self._guard:
            seen, self._seen = self._seen, {}
        return seen

    def forget_lineage(self, session_id: str) -> None:
        with self._guard:
            self._lineage.pop(session_id, None)

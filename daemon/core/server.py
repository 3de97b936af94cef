"""The daemon's socket server: lifecycle, connections, and nothing about what requests mean
(that is `dispatch.py`).

Lifecycle: take the pid file's lock (the lock, not the file, says "running"), replace a stale
socket only if connecting to it is refused, bind 0600 in a 0700 directory with the system's
largest listen backlog, and on SIGTERM stop accepting, finish the requests in flight, drain
the writer and close the database. The signal handler only sets a flag.

Connections: one selector thread watches the listener and every idle connection; a readable
connection is handed to a bounded pool of workers, which reads one frame (a frame once started
must arrive whole within `frame_timeout`), answers it and gives the connection back; a
client's next frame that arrives within `LINGER_S` of the answer is read by the same worker
(while most workers are free). An idle connection holds no thread.

Quick writes (a method with a write job, `Method.job`: a plain remember) are answered by the
selector thread itself: of the connections one `select` finds readable, those whose waiting
bytes are exactly one whole frame of such a request are read and prepared at once
(`Dispatcher.prepare_job`: checks and redaction, while the rest of the round is awaited),
their writes run at once in one commit that this thread leads (`Writer.open_round`: the
first ones while it waits for the rest of the round), and each is answered; the
others go to the workers as above. Only while the writer is idle: the selector thread never
waits behind another thread's commit (an import's takes seconds), so every other request is
still dispatched. A stream of writes from many clients then costs one thread and one commit
per round, not a thread per client handing the GIL back and forth
(docs/bench-issue-17-writes.md).

Past `max_connections` open connections a new one is answered `busy` and closed; a connection
idle past `idle_timeout` is closed. Everything db0 creates is private: the daemon runs with
umask 077.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import logging.handlers
import os
import queue
import select
import selectors
import signal
import socket
import stat
import struct
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from db0.daemon import __version__
from db0.daemon.core import config as configmod
from db0.daemon.core.dispatch import Dispatcher, Job
from db0.daemon.core.runtime import Runtime
from db0.daemon.core.writer import Round
from db0.daemon.handlers import load_all
from db0.daemon.paths import Paths, RuntimeDirError, ensure_private_dir, get_paths
from db0.daemon.protocol import (
    HEADER_BYTES,
    MAX_FRAME,
    BadFrame,
    Db0Error,
    FrameError,
    decode,
    encode,
    err,
    read_frame,
)
from db0.store.errors import StoreError

log = logging.getLogger("db0.daemon")
WORKERS = 64  # requests served at once; more wait for a worker, they are not refused
LINGER_S = 0.002  # a worker waits this long for a connection's next frame before handing it back
READ_PEEK = 1 << 16  # a quick write's frame is read by the selector thread if this holds it
GATHER_S = 0.0005  # the selector thread waits at most this long for a round's other writes


def raise_fd_limit() -> int:
    """Lift the open-files limit to what the system allows (a connection is a descriptor);
    the descriptors left for connections."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        soft = want
    return max(16, soft - 128)  # room for the database, models, logs and watches


def listen_backlog() -> int:
    """The system's largest listen backlog (a burst of clients queues instead of failing)."""
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            return max(128, int(f.read().strip()))
    except (OSError, ValueError):
        return socket.SOMAXCONN


class Server:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.paths = rt.paths
        self.dispatcher = Dispatcher(rt, load_all())
        rt.replay = self.dispatcher.handle
        rt.stopper = self.request_stop
        self._pid_fd: int | None = None
        self._listener: socket.socket | None = None
        self._sel = selectors.DefaultSelector()
        self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="db0-req")
        self._back: queue.SimpleQueue[socket.socket] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._conns: dict[socket.socket, float] = {}  # open connections, last activity
        self._busy = 0
        self._lock = threading.Lock()
        self.watcher: configmod.ConfigWatcher | None = None
        self._fd_room = raise_fd_limit()

    @property
    def stopping(self) -> threading.Event:
        return self.rt.stopping

    # -- lifecycle ---------------------------------------------------------------------------

    def _lock_pid(self) -> bool:
        fd = os.open(self.paths.pid_file, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._pid_fd = fd
        return True

    def _bind(self) -> socket.socket:
        path = self.paths.socket
        if os.path.lexists(path):
            st = os.lstat(path)
            if not stat.S_ISSOCK(st.st_mode):
                raise RuntimeDirError(f"{path} exists and is not a socket; to fix: remove it")
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(str(path))
                raise RuntimeDirError(f"another daemon answers on {path}")
            except (ConnectionRefusedError, FileNotFoundError):
                os.unlink(path)  # stale: its daemon died without cleaning up
                log.info("replaced a stale socket")
            finally:
                probe.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))  # umask 077: the socket is born 0600
        os.chmod(path, 0o600)
        sock.listen(listen_backlog())
        sock.setblocking(False)
        return sock

    def _load_config(self) -> None:
        try:
            cfg, unknown = configmod.load(self.paths.config_file)
        except ValueError as e:
            log.error("config not applied, using defaults: %s", e)
            self.rt.apply_config(self.rt.config)
            self.rt.config_error = str(e)
            return
        self.rt.apply_config(cfg, unknown)

    def _config_error(self, message: str) -> None:
        self.rt.config_error = message

    def serve(self) -> int:
        ensure_private_dir(self.paths.runtime_dir)
        if not self._lock_pid():
            log.info("another daemon holds %s; exiting", self.paths.pid_file)
            return 0
        self._load_config()
        self.rt.open()
        self._listener = self._bind()
        self.watcher = configmod.ConfigWatcher(self.paths.config_file, self.rt.apply_config,
                                               self._config_error)
        try:
            self.watcher.start()
        except Exception as e:  # no inotify slots, say: serve without live reload
            log.error("config watcher not started (%s); config changes need a restart", e)
            self.watcher = None
        from db0.daemon.core import components

        components.install(self.rt)
        for comp in self.rt.components:
            try:
                comp.apply_config(self.rt.config)
                comp.start()
            except Exception:
                log.exception("component %s failed to start", comp.name)
        log.info("db0 daemon %s started, pid %d, socket %s", __version__, os.getpid(),
                 self.paths.socket)
        try:
            self._loop()
        finally:
            self._shutdown()
        return 0

    def request_stop(self, why: str) -> None:
        if not self.stopping.is_set():
            log.info("stopping: %s", why)
            # Remove the socket first so a racing client never talks to a dying daemon.
            with contextlib.suppress(OSError):
                os.unlink(self.paths.socket)
            self.stopping.set()
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"s")

    def _shutdown(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(Exception):
                self._sel.unregister(self._listener)
            self._listener.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # let requests in flight finish
            with self._lock:
                if self._busy == 0:
                    break
            time.sleep(0.02)
        with self._lock:
            for c in list(self._conns):
                with contextlib.suppress(OSError):
                    c.shutdown(socket.SHUT_RDWR)
                c.close()
            self._conns.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self.watcher:
            self.watcher.stop()
        for comp in reversed(self.rt.components):
            try:
                comp.stop()
            except Exception:
                log.exception("component %s failed to stop", comp.name)
        self.rt.close()
        with contextlib.suppress(OSError):
            if self._listener is not None and os.path.exists(self.paths.socket):
                os.unlink(self.paths.socket)
        if self._pid_fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.paths.pid_file)
            os.close(self._pid_fd)
        log.info("db0 daemon stopped")

    # -- connections -------------------------------------------------------------------------

    def _loop(self) -> None:
        assert self._listener is not None
        self._sel.register(self._listener, selectors.EVENT_READ)
        self._sel.register(self._wake_r, selectors.EVENT_READ)
        last_sweep = time.monotonic()
        last = 1  # quick writes the last round answered
        while not self.stopping.is_set():
            jobs: list[tuple[socket.socket, dict[str, object], Job]] = []
            rnd: Round | None = None
            try:
                self._dispatch(self._sel.select(timeout=1.0), jobs, False)
                rnd = self._run(jobs, rnd)
                if jobs and len(jobs) < last:
                    # The clients the last round answered call again together: wait a moment
                    # for the rest of them, so that their writes share this round's commit
                    # (those here already run in it meanwhile).
                    until = time.monotonic() + GATHER_S
                    while len(jobs) < last and (left := until - time.monotonic()) > 0:
                        self._dispatch(self._sel.select(timeout=left), jobs, rnd is not None)
                        rnd = self._run(jobs, rnd)
                if jobs:
                    last = len(jobs)
                    self._answer_jobs(jobs, rnd)
                    rnd = None
            finally:
                if rnd is not None:  # a defect stopped the round: nothing of it is kept
                    rnd.abort()
            if time.monotonic() - last_sweep > 1.0:
                self._close_idle()
                last_sweep = time.monotonic()

    def _run(self, jobs: list[tuple[socket.socket, dict[str, object], Job]],
             rnd: Round | None) -> Round | None:
        """Run the writes of the jobs read so far that have not run, in the round (opened
        now if the writer is idle; if it is not, they stay unrun and go to the workers)."""
        todo = [job for _, _, job in jobs if job.fn is not None and job.slot is None]
        if not todo:
            return rnd
        if rnd is None:
            rnd = self.rt.writer.open_round() if self.rt.writer is not None else None
            if rnd is None:
                return None
        for job in todo:
            assert job.fn is not None
            job.slot = len(rnd.done)
            rnd.add(job.fn)
        return rnd

    def _dispatch(self, events: list[tuple[selectors.SelectorKey, int]],
                  jobs: list[tuple[socket.socket, dict[str, object], Job]],
                  leading: bool) -> None:
        """Act on what `select` found: accept, take connections back, read the quick writes
        into `jobs` (when the writer is idle, or its commit is this thread's round:
        `leading`), hand every other readable connection to a worker."""
        writer = self.rt.writer
        writer_busy = not leading and (writer is None or writer.busy)
        for key, _ in events:
            if key.fileobj is self._listener:
                self._accept()
            elif key.fileobj == self._wake_r:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, 4096)
                self._take_back()
            else:
                conn = key.fileobj
                assert isinstance(conn, socket.socket)
                if any(c is conn for c, _, _ in jobs):
                    continue  # its next frame waits for this round's answer
                if conn.fileno() < 0:
                    continue  # dropped in this round
                # Never behind another's commit (an import's can take seconds): then a worker.
                msg = None if writer_busy else self._take_job(conn)
                if msg is not None:
                    jobs.append((conn, msg, self.dispatcher.prepare_job(msg)))
                    continue
                self._sel.unregister(conn)
                self._pool.submit(self._serve_one, conn)

    def _accept(self) -> None:
        assert self._listener is not None
        dcfg = self.rt.config.daemon
        limit = min(dcfg.max_connections, self._fd_room)
        while True:
            try:
                conn, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # out of file descriptors, say: the clients retry
                log.warning("accept failed: %s", e)
                return
            if not self._peer_ok(conn):
                log.warning("refused a connection from another user")
                conn.close()
                continue
            conn.settimeout(dcfg.frame_timeout)
            with self._lock:
                full = len(self._conns) >= limit
                if not full:
                    self._conns[conn] = time.monotonic()
            if full:
                with contextlib.suppress(OSError):
                    conn.sendall(encode(err(None, Db0Error(
                        "busy", f"the daemon has {limit} connections open",
                        "try again in a moment"))))
                conn.close()
                continue
            self._sel.register(conn, selectors.EVENT_READ)

    def _take_back(self) -> None:
        while True:
            try:
                conn = self._back.get_nowait()
            except queue.Empty:
                return
            if conn.fileno() < 0:
                continue
            try:
                self._sel.register(conn, selectors.EVENT_READ)
            except (ValueError, KeyError, OSError):
                self._drop(conn)

    def _close_idle(self) -> None:
        limit = time.monotonic() - self.rt.config.daemon.idle_timeout
        with self._lock:
            idle = [c for c, t in self._conns.items() if t < limit]
        for c in idle:
            try:
                self._sel.unregister(c)
            except (KeyError, ValueError):
                continue  # a worker has it right now
            self._drop(c)

    def _drop(self, conn: socket.socket) -> None:
        with self._lock:
            self._conns.pop(conn, None)
        with contextlib.suppress(OSError):
            conn.close()

    def _peer_ok(self, conn: socket.socket) -> bool:
        so_peercred = getattr(socket, "SO_PEERCRED", None)
        if so_peercred is None:  # not Linux: the 0700 directory is the guard
            return True
        creds = conn.getsockopt(socket.SOL_SOCKET, so_peercred, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        return bool(uid == os.getuid())

    def _take_job(self, conn: socket.socket) -> dict[str, object] | None:
        """The request waiting on a readable connection, read, when it is one whole frame
        (and nothing after it) of a method with a write job; else None, with nothing read."""
        try:
            data = conn.recv(READ_PEEK, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except OSError:
            return None
        if len(data) <= HEADER_BYTES or len(data) != HEADER_BYTES + int.from_bytes(
                data[:HEADER_BYTES], "big"):
            return None  # not all here yet, more than one frame, or a peer gone: a worker's
        try:
            msg = decode(data[HEADER_BYTES:])
        except BadFrame:
            return None
        if self.dispatcher.job_method(msg) is None:
            return None
        try:  # the bytes are there: read them without the timed socket's poll
            got = os.read(conn.fileno(), len(data))
        except OSError:
            return None  # the peer is gone: the worker it goes to finds that out
        return msg if len(got) == len(data) else None

    def _answer_jobs(self, jobs: list[tuple[socket.socket, dict[str, object], Job]],
                     rnd: Round | None) -> None:
        """Commit the round that ran the requests' writes and answer each; a request that
        needs its whole handler, or whose write did not run (the writer was busy), goes to a
        worker with its connection. An answer is written at once or the connection is
        dropped (its client stopped reading answers): the selector thread never waits on
        one client."""
        try:
            done = rnd.commit() if rnd is not None else []
            answers = [job.answer if job.answer is not None else
                       None if job.slot is None or rnd is None else
                       self.dispatcher.answer(job, done[job.slot]) for _, _, job in jobs]
        except Exception:  # a defect: drop these connections, keep serving the others
            log.exception("answering %d writes failed", len(jobs))
            for conn, _, _ in jobs:
                self._unwatch(conn)
            return
        now = time.monotonic()
        for (conn, msg, _), resp in zip(jobs, answers, strict=True):
            if resp is None:
                self._sel.unregister(conn)
                self._pool.submit(self._serve_one, conn, msg)
                continue
            data = _frame(resp)
            try:  # O_NONBLOCK (the socket has a timeout): no poll before the write
                sent = os.write(conn.fileno(), data)
            except OSError:
                sent = -1
            if sent == len(data):
                with self._lock:
                    if conn in self._conns:
                        self._conns[conn] = now
            else:
                if sent >= 0:
                    log.warning("dropped a connection whose client stopped reading answers")
                self._unwatch(conn)

    def _unwatch(self, conn: socket.socket) -> None:
        """Close a connection the selector watches."""
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(conn)
        self._drop(conn)

    def _serve_one(self, conn: socket.socket, first: dict[str, object] | None = None
                   ) -> None:
        """Read one frame from a readable connection (or take `first`, read already),
        answer it, hand the connection back."""
        with self._lock:
            self._busy += 1
        keep = False
        try:
            if first is not None:
                keep = self._send(conn, self.dispatcher.handle(
                    first, gone=lambda: _hung_up(conn)))
                quick = True
            else:
                keep, quick = self._answer(conn)
            # A client writing in a loop goes back to the selector thread, which answers
            # quick writes in rounds; any other client's next frame is awaited here.
            while keep and not quick and self._next_soon(conn):
                keep, quick = self._answer(conn)
        except Exception:
            log.exception("connection failed")
        finally:
            with self._lock:
                self._busy -= 1
                if conn in self._conns:
                    self._conns[conn] = time.monotonic()
            if keep and not self.stopping.is_set():
                self._back.put(conn)
                with contextlib.suppress(OSError):
                    os.write(self._wake_w, b"c")
            else:
                self._drop(conn)

    def _next_soon(self, conn: socket.socket) -> bool:
        """Whether the client's next frame arrived within LINGER_S of the answer (a client
        calling in a loop sends it at once): then this worker reads it, without the hand-off
        back to the selector and out to a worker again. Only while most workers are free."""
        if self.stopping.is_set():
            return False
        with self._lock:
            if self._busy > WORKERS // 4:
                return False
        poller = select.poll()
        poller.register(conn, select.POLLIN)
        return bool(poller.poll(LINGER_S * 1000))

    def _answer(self, conn: socket.socket) -> tuple[bool, bool]:
        """Read a frame and answer it: whether the connection stays, and whether the request
        was a quick write (a method with a write job)."""
        max_frame = min(self.rt.config.daemon.max_frame_mb * 1024 * 1024, MAX_FRAME * 4)
        try:
            msg = read_frame(conn, max_frame)
        except BadFrame as e:  # the frame was read whole: answer and go on
            return self._send(conn, err(None, Db0Error("bad_request", str(e),
                                                       "send one JSON object per frame"))), False
        except FrameError as e:
            if "limit" in str(e):
                self._send(conn, err(None, Db0Error("too_large", str(e),
                                                    "send smaller requests")))
            return False, False
        except (TimeoutError, OSError):
            return False, False  # a frame that never finished, or a peer gone
        if msg is None:
            return False, False
        quick = self.dispatcher.job_method(msg) is not None
        return self._send(conn, self.dispatcher.handle(msg, gone=lambda: _hung_up(conn))), quick

    def _send(self, conn: socket.socket, resp: dict[str, object]) -> bool:
        data = _frame(resp)
        try:
            conn.sendall(data)
        except OSError:
            return False
        return True


def _frame(resp: dict[str, object]) -> bytes:
    """An answer as a frame; one over the frame limit becomes its error."""
    try:
        return encode(resp)
    except Db0Error as e:
        return encode(err(resp.get("id"), e))


def _hung_up(conn: socket.socket) -> bool:
    """Whether the peer closed its end (or the connection failed), without waiting: a
    client waiting for its answer keeps its end open."""
    poller = select.poll()
    poller.register(conn, select.POLLRDHUP)
    try:
        return any(ev & (select.POLLRDHUP | select.POLLHUP | select.POLLERR | select.POLLNVAL)
                   for _, ev in poller.poll(0))
    except OSError:
        return True


def _setup_logging(paths: Paths) -> None:
    paths.log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(paths.log_file, maxBytes=5 << 20,
                                                   backupCount=3, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("db0")
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def run() -> int:
    os.umask(0o077)  # everything the daemon creates is its user's alone
    paths = get_paths()
    try:
        _setup_logging(paths)
    except OSError as e:
        print(f"db0 daemon: cannot start: cannot write its log in {paths.log_dir}: "
              f"{e.strerror} (to fix: check that directory's permissions)", file=sys.stderr)
        return 1
    try:
        server = Server(Runtime(paths))
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda s, _f: server.request_stop(signal.Signals(s).name))
        return server.serve()
    except (RuntimeDirError, StoreError) as e:
        log.error("cannot start: %s", e)
        print(f"db0 daemon: cannot start: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        log.error("cannot start: %s", e)
        print(f"db0 daemon: cannot start: {e.strerror}: {e.filename or ''} "
              "(to fix: check that path's permissions and free space)", file=sys.stderr)
        return 1
    except Exception as e:
        log.exception("cannot start")
        print(f"db0 daemon: cannot start: {type(e).__name__}: {e}", file=sys.stderr)
        return 1

"""The daemon: a Unix socket server over the store, with its writer, jobs and config watcher.

Lifecycle: take the pid file's lock (the lock, not the file, says "running"), replace a stale
socket only if connecting to it is refused, bind 0600 in a 0700 directory, serve one thread per
connection (the peer's uid checked), and on SIGTERM stop accepting, finish the requests in
flight, drain the writer and close the database. The signal handler only sets a flag.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import logging
import logging.handlers
import os
import queue
import signal
import socket
import stat
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from db0.daemon import __version__
from db0.daemon import config as configmod
from db0.daemon.handlers import load_all
from db0.daemon.paths import Paths, RuntimeDirError, ensure_private_dir, get_paths
from db0.daemon.protocol import (
    MAX_FRAME,
    Db0Error,
    FrameError,
    encode,
    err,
    ok,
    read_frame,
)
from db0.daemon.writer import Writer
from db0.store.context import Context
from db0.store.core import Store
from db0.store.errors import StoreError

log = logging.getLogger("db0.daemon")
T = TypeVar("T")


@dataclass
class Request:
    id: Any
    method: str
    params: dict[str, Any]
    ctx: Context
    conn_info: dict[str, Any]


class Server:
    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self.started = time.time()
        self.stopping = threading.Event()
        self.config: dict[str, Any] = configmod.DEFAULTS
        self.methods = load_all()
        self._readers: queue.SimpleQueue[Store] = queue.SimpleQueue()
        self._conns: set[socket.socket] = set()
        self._busy = 0
        self._lock = threading.Lock()
        self._pid_fd: int | None = None
        self._listener: socket.socket | None = None
        self.store: Store | None = None
        self.writer: Writer | None = None
        self.watcher: configmod.ConfigWatcher | None = None
        # Components that later issues hang on the server (embedder, jobs, sync) register here
        # a name -> object, with optional start/stop/status methods.
        self.components: dict[str, Any] = {}
        self.default_user = os.environ.get("DB0_USER") or getpass.getuser()

    # -- store access ------------------------------------------------------------------------

    @contextlib.contextmanager
    def reader(self) -> Iterator[Store]:
        """A read connection from the pool (readers never block the writer in WAL mode)."""
        try:
            store = self._readers.get_nowait()
        except queue.Empty:
            assert self.store is not None
            store = Store.open(self.paths.db_file, clock=self.store.clock)
        try:
            yield store
        finally:
            self._readers.put(store)

    def write(self, fn: Callable[[Store], T]) -> T:
        assert self.writer is not None
        if self.stopping.is_set():
            raise Db0Error("shutting_down", "the daemon is shutting down", "try again")
        return self.writer.run(fn)

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
        old = os.umask(0o177)
        try:
            sock.bind(str(path))
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        sock.listen(128)
        sock.settimeout(0.25)
        return sock

    def apply_config(self, cfg: dict[str, Any]) -> None:
        self.config = cfg
        level = str(cfg["daemon"].get("log_level", "INFO")).upper()
        if level in ("DEBUG", "INFO", "WARNING", "ERROR"):
            logging.getLogger("db0").setLevel(level)
        else:
            log.error("config: log_level %r is not one of DEBUG, INFO, WARNING, ERROR", level)
        for comp in self.components.values():
            if hasattr(comp, "apply_config"):
                comp.apply_config(cfg)
        log.info("config applied")

    def serve(self) -> int:
        ensure_private_dir(self.paths.runtime_dir)
        if not self._lock_pid():
            log.info("another daemon holds %s; exiting", self.paths.pid_file)
            return 0
        try:
            self.config = configmod.load(self.paths.config_file)
        except ValueError as e:
            log.error("config not applied, using defaults: %s", e)
        self.apply_config(self.config)
        self.store = Store.open(self.paths.db_file)
        self.writer = Writer(self.store)
        self.writer.start()
        self._listener = self._bind()
        self.watcher = configmod.ConfigWatcher(self.paths.config_file, self.apply_config)
        try:
            self.watcher.start()
        except Exception as e:  # no inotify slots, say: serve without live reload
            log.error("config watcher not started (%s); config changes need a restart", e)
            self.watcher = None
        from db0.daemon import components

        components.install(self)
        for name, comp in list(self.components.items()):
            if hasattr(comp, "start"):
                try:
                    comp.start()
                except Exception:
                    log.exception("component %s failed to start", name)
        log.info("db0 daemon %s started, pid %d, socket %s", __version__, os.getpid(),
                 self.paths.socket)
        try:
            self._accept_loop()
        finally:
            self._shutdown()
        return 0

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self.stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self.stopping.is_set():
                    break
                raise
            conn.settimeout(None)
            threading.Thread(target=self._serve_conn, args=(conn,), daemon=True,
                             name="db0-conn").start()

    def request_stop(self, why: str) -> None:
        if not self.stopping.is_set():
            log.info("stopping: %s", why)
            # Remove the socket first so a racing client never talks to a dying daemon.
            with contextlib.suppress(OSError):
                os.unlink(self.paths.socket)
            self.stopping.set()

    def _shutdown(self) -> None:
        if self._listener is not None:
            self._listener.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # let requests in flight finish
            with self._lock:
                if self._busy == 0:
                    break
            time.sleep(0.02)
        with self._lock:
            for c in self._conns:
                with contextlib.suppress(OSError):
                    c.shutdown(socket.SHUT_RDWR)
        if self.watcher:
            self.watcher.stop()
        for name, comp in reversed(list(self.components.items())):
            if hasattr(comp, "stop"):
                try:
                    comp.stop()
                except Exception:
                    log.exception("component %s failed to stop", name)
        if self.writer:
            self.writer.stop()
        while True:
            try:
                self._readers.get_nowait().close()
            except queue.Empty:
                break
        if self.store:
            with contextlib.suppress(Exception):
                self.store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self.store.close()
        with contextlib.suppress(OSError):
            if self._listener is not None and os.path.exists(self.paths.socket):
                os.unlink(self.paths.socket)
        if self._pid_fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.paths.pid_file)
            os.close(self._pid_fd)
        log.info("db0 daemon stopped")

    # -- connections -------------------------------------------------------------------------

    def _peer_ok(self, conn: socket.socket) -> bool:
        so_peercred = getattr(socket, "SO_PEERCRED", None)
        if so_peercred is None:  # not Linux: the 0700 directory is the guard
            return True
        creds = conn.getsockopt(socket.SOL_SOCKET, so_peercred, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        return bool(uid == os.getuid())

    def _serve_conn(self, conn: socket.socket) -> None:
        with self._lock:
            self._conns.add(conn)
        try:
            if not self._peer_ok(conn):
                log.warning("refused a connection from another user")
                return
            max_frame = int(self.config["daemon"].get("max_frame_mb", 32) * 1024 * 1024)
            while not self.stopping.is_set():
                try:
                    msg = read_frame(conn, min(max_frame, MAX_FRAME * 4))
                except FrameError as e:
                    with contextlib.suppress(OSError):
                        conn.sendall(encode(err(None, Db0Error(
                            "too_large" if "limit" in str(e) else "bad_request", str(e),
                            "send smaller requests"))))
                    return
                except OSError:
                    return
                if msg is None:
                    return
                with self._lock:
                    self._busy += 1
                try:
                    resp = self.handle(msg)
                finally:
                    with self._lock:
                        self._busy -= 1
                try:
                    conn.sendall(encode(resp))
                except Db0Error as e:
                    conn.sendall(encode(err(msg.get("id"), e)))
                except OSError:
                    return
        finally:
            with self._lock:
                self._conns.discard(conn)
            conn.close()

    def handle(self, msg: dict[str, Any]) -> dict[str, Any]:
        req_id = msg.get("id")
        method = msg.get("method")
        params = msg.get("params") or {}
        fn = self.methods.get(method) if isinstance(method, str) else None
        if fn is None:
            return err(req_id, Db0Error("unknown_method", f"unknown method {method!r}",
                                        "upgrade the client or the daemon: db0 daemon restart"))
        if not isinstance(params, dict):
            return err(req_id, Db0Error("bad_request", "params must be a JSON object"))
        started = time.perf_counter()
        try:
            ctx = Context.from_params(params, self.config["context"].get("user")
                                      or self.default_user)
            if not params.get("context", {}).get("agent") and self.config["context"].get(
                    "agent"):
                ctx = Context(ctx.user, str(self.config["context"]["agent"]), ctx.session,
                              ctx.task)
            expiry = self.components.get("expiry")
            if expiry is not None:
                ctx = expiry.context(ctx)  # a branched session's lineage; marks it seen
            result = fn(self, Request(req_id, str(method), params, ctx, {}))
            resp = ok(req_id, result)
        except Db0Error as e:
            resp = err(req_id, e)
        except StoreError as e:
            resp = err(req_id, Db0Error(e.code, e.message, e.hint))
        except Exception as e:
            log.exception("%s failed", method)  # the traceback, never the memory text
            resp = err(req_id, Db0Error("internal", f"{method} failed: {type(e).__name__}",
                                        f"see the daemon log: {self.paths.log_file}"))
        log.debug("%s %.1f ms", method, (time.perf_counter() - started) * 1000)
        return resp


def _setup_logging(paths: Paths) -> None:
    paths.log_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(paths.log_file, maxBytes=5 << 20,
                                                   backupCount=3, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("db0")
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def run() -> int:
    paths = get_paths()
    _setup_logging(paths)
    try:
        server = Server(paths)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda s, _f: server.request_stop(signal.Signals(s).name))
        return server.serve()
    except (RuntimeDirError, StoreError) as e:
        log.error("cannot start: %s", e)
        print(f"db0 daemon: cannot start: {e}", file=sys.stderr)
        return 1
    except Exception as e:
        log.exception("cannot start")
        print(f"db0 daemon: cannot start: {type(e).__name__}: {e}", file=sys.stderr)
        return 1

"""The one wire client: every front door (the CLI, `db0 mcp`, the agent hooks, the git hooks)
talks to the daemon through `Client`, and nothing else speaks the protocol.

- Auto-start, three ways (`autostart`): "wait" starts a daemon when none answers and waits for
  it (atuin's way: take the startup lock, probe again, spawn, poll the socket); "background"
  starts one without waiting (a hook must not wait for a boot); "never" does not start one.
  A daemon of another version is asked to stop and replaced ("wait" only).
- A deadline: `call(..., timeout=)` bounds the whole exchange. Connecting retries while the
  listen queue is full (EAGAIN) and while the daemon answers `busy`, within the deadline.
- Reconnect: a connection the daemon closed (idle, or restarted) is noticed when a request is
  sent on it and replaced, and the request sent again on the new one, so a long-lived client
  (`db0 mcp`) keeps working. Safe because a Unix socket whose peer has closed refuses the
  first byte (EPIPE): a request that met a closed connection was not delivered in part.
- Few system calls a call: the socket stays non-blocking, a request is one `send`, an answer
  one `poll` and one `recv` that takes the whole frame (bytes past it, the answer to a request
  sent ahead with `send`, wait in the connection's buffer); the deadline is kept by the
  `poll`, not by a socket timeout, which would poll before every send and receive.
- Deliver or spool: `deliver` hands a request over within a short deadline or writes the whole
  frame to the spool (`<data>/spool/`), which the daemon replays through its dispatcher.

Imports only the standard library, `protocol` and `paths`, and of those only what a call
needs: every CLI command and hook pays for its imports (starting a daemon brings in
`subprocess`, a spool `pathlib`). Sockets are `_socket`'s: `socket.py` converts its constants
to enums at import, a cost every command would pay (docs/performance.md).
"""

from __future__ import annotations

import _socket
import errno
import os
import sys
import time

from db0.daemon import __version__
from db0.daemon import wirejson as json
from db0.daemon.paths import Paths, RuntimeDirError, ensure_private_dir, get_paths
from db0.daemon.protocol import (
    HEADER_BYTES,
    PROTOCOL,
    RETRYABLE,
    Db0Error,
    FrameError,
    body_length,
    decode,
    encode,
    request,
)

TYPE_CHECKING = False  # typing stays unloaded at run time: it is costly to import
if TYPE_CHECKING:
    import subprocess
    from pathlib import Path
    from typing import Any, Literal

    Autostart = Literal["wait", "background", "never"]

START_TIMEOUT = 15.0
_NOT_THERE = (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTSOCK)
_CLOSED = (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN)  # the peer is gone: nothing was sent
_READ_MIN = 1 << 16  # a receive asks for at least this much (an answer is one recv)
_READ_MAX = 1 << 20  # and at most this much at once (a large frame arrives in parts)


class _NotSent(Db0Error):
    """The connection was closed before any byte of the request went out: the request can
    be sent again on a new connection."""


class Client:
    """A connection to the daemon, opened on the first call and re-opened when lost."""

    def __init__(self, paths: Paths | None = None, *, autostart: Autostart = "wait",
                 pinned: bool = False) -> None:
        """`pinned`: once connected, never move to another daemon (a multi-call operation,
        such as a staged import, must not continue on a daemon that did not see its start)."""
        self.paths = paths or get_paths()
        self.autostart = autostart
        self.pinned = pinned
        self.sock: _socket.socket | None = None
        self.hello: dict[str, Any] = {}
        self._next_id = 0
        self._connected_once = False
        self._buf = bytearray()  # bytes received past the last answer read
        self._poll: Any = None  # a poll object watching the socket for input

    @classmethod
    def attach(cls, paths: Paths | None = None) -> Client | None:
        """A client on the running daemon whatever its version (for `daemon status` and
        `daemon stop`), or None when none runs; it never starts one."""
        paths = paths or get_paths()
        sock = probe(paths, time.monotonic() + 2.0)
        if sock is None:
            return None
        c = cls(paths, autostart="never")
        c._adopt(sock)
        c._attached = True
        return c

    _attached = False

    # -- connecting ----------------------------------------------------------------------------

    def _adopt(self, sock: _socket.socket) -> None:
        """Use a connected socket: non-blocking from now on (`_send` and `_read` keep the
        deadlines), with an empty buffer."""
        import select

        sock.setblocking(False)
        self.sock = sock
        self._buf = bytearray()
        self._poll = select.poll()
        self._poll.register(sock, select.POLLIN)

    def connect(self, deadline: float | None = None) -> None:
        """Make sure a connection to a daemon of this version is open. A daemon that closes
        a new connection at once (it is stopping, or past its connection limit) is tried
        again until the deadline: a stopping one is then gone and a new one starts."""
        if self.sock is not None:
            return  # a connection the daemon closed meanwhile is found out by `_send`
        if self._attached or (self.pinned and self._connected_once):
            raise Db0Error("unavailable", "the daemon went away before the request was sent",
                           f"see its log: {self.paths.log_file}")
        end = time.monotonic() + (START_TIMEOUT if deadline is None else deadline)
        delay = 0.01
        while True:
            try:
                self._connect_once(end)
                self._connected_once = True
                return
            except Db0Error as e:
                if e.code != "busy" or time.monotonic() + delay > end:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def _connect_once(self, end: float) -> None:
        self.close()
        if _spawned:
            _reap()
        sock = probe(self.paths, end)
        if sock is None:
            if self.autostart == "never":
                raise Db0Error("unavailable", "the db0 daemon is not running",
                               "start it: db0 daemon start")
            if self.autostart == "background":
                start_in_background(self.paths)
                raise Db0Error("unavailable", "the db0 daemon is starting",
                               "try again in a moment")
            sock = _start_and_connect(self.paths, max(1.0, end - time.monotonic()))
        self._adopt(sock)
        hello_s = min(10.0, max(0.05, end - time.monotonic()))
        try:
            self.hello = self._exchange("daemon.hello", {"client_version": __version__,
                                                         "protocol": PROTOCOL}, hello_s)
        except Db0Error as e:
            if e.code == "unavailable" and ("lost the connection" in e.message
                                            or "closed the connection" in e.message):
                raise Db0Error("busy", "the daemon closed a new connection at once",
                               "try again in a moment") from e
            raise
        if self.hello.get("version") == __version__ and self.hello.get("protocol") == PROTOCOL:
            return
        if self.autostart != "wait":
            if self.autostart == "background":  # a hook of a newer db0: make way for it
                try:
                    self._exchange("daemon.stop", {"reason": "version"}, 1.0)
                except Db0Error:
                    pass
            self.close()
            raise Db0Error("incompatible", f"the daemon runs db0 {self.hello.get('version')}, "
                           f"this is {__version__}", "restart it: db0 daemon restart")
        pid = self.hello.get("pid")
        try:
            self._exchange("daemon.stop", {"reason": "version"}, 10.0)
        except Db0Error:
            pass
        self.close()
        wait_gone(self.paths, pid)
        self._adopt(_start_and_connect(self.paths))
        self.hello = self._exchange("daemon.hello", {"client_version": __version__,
                                                     "protocol": PROTOCOL}, 10.0)

    # -- calling -------------------------------------------------------------------------------

    def call(self, method: str, params: dict[str, Any] | None = None,
             timeout: float | None = 120.0) -> Any:
        """Send one request and return its result; Db0Error with the daemon's error."""
        end = None if timeout is None else time.monotonic() + timeout
        delay = 0.01
        while True:
            try:
                self._deliver(method, params or {}, end)
                return self._io(method, _left(end), None)
            except Db0Error as e:
                if e.code != "busy" or (end is not None and time.monotonic() + delay > end):
                    raise
                self.close()  # the daemon closes a connection it answered busy at accept
                time.sleep(delay)
                delay = min(delay * 2, 0.2)

    def send(self, method: str, params: dict[str, Any], timeout: float | None = 120.0) -> None:
        """Send a request without reading its answer: `receive` reads the answers, in the order
        of the requests (the daemon answers a connection's requests one by one), so a client
        can prepare its next request while the daemon works on the one before. The connection
        is opened as `call` opens it; errors are `call`'s."""
        self._deliver(method, params, None if timeout is None else time.monotonic() + timeout)

    def receive(self, method: str, timeout: float | None = 120.0) -> Any:
        """The answer to the oldest request `send` sent and nothing read yet."""
        if self.sock is None:
            raise Db0Error("unavailable", "the daemon closed the connection",
                           f"see its log: {self.paths.log_file}")
        return self._io(method, timeout, None)

    def _deliver(self, method: str, params: dict[str, Any], end: float | None) -> None:
        """Send a request on an open connection (opened first if need be); a connection the
        daemon closed meanwhile refused all of it, and is replaced once (`connect`'s rules:
        an attached or pinned client does not move)."""
        self.connect(None if end is None else max(0.05, end - time.monotonic()))
        try:
            self._io(method, _left(end), params)
        except _NotSent:
            self.connect(None if end is None else max(0.05, end - time.monotonic()))
            self._io(method, _left(end), params)

    def _exchange(self, method: str, params: dict[str, Any], timeout: float | None) -> Any:
        self._io(method, timeout, params)
        return self._io(method, timeout, None)

    def _io(self, method: str, timeout: float | None, params: dict[str, Any] | None) -> Any:
        """Send a request (params given) or read an answer (None), within `timeout` seconds."""
        assert self.sock is not None
        end = None if timeout is None else time.monotonic() + timeout
        try:
            if params is not None:
                self._next_id += 1
                self._send(encode(request(self._next_id, method, params)), end)
                return None
            resp = self._read(end)
        except TimeoutError as e:
            self.close()
            raise Db0Error("unavailable", f"the daemon did not answer {method} in "
                           f"{timeout:g}s", f"see its log: {self.paths.log_file}") from e
        except (FrameError, OSError) as e:
            self.close()
            cls = _NotSent if isinstance(e, _Refused) else Db0Error
            raise cls("unavailable", f"lost the connection to the daemon ({e.__cause__ or e})",
                      f"see its log: {self.paths.log_file}") from e
        if resp is None:
            self.close()
            raise Db0Error("unavailable", "the daemon closed the connection",
                           f"see its log: {self.paths.log_file}")
        if not resp.get("ok"):
            raise Db0Error.from_dict(resp.get("error") or {})
        return resp.get("result")

    def _wait(self, poller: Any, end: float | None) -> None:
        """Wait until `poller` sees the socket ready, or raise TimeoutError at `end`."""
        if end is None:
            ms = None
        else:
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError
            ms = int(left * 1000) + 1
        if not poller.poll(ms):
            raise TimeoutError

    def _send(self, data: bytes, end: float | None) -> None:
        """Send a whole frame; _Refused when the peer had closed before its first byte."""
        assert self.sock is not None
        sock, sent = self.sock, 0
        while sent < len(data):  # one send, unless the frame is larger than the socket's buffer
            try:
                sent += sock.send(memoryview(data)[sent:] if sent else data)
            except BlockingIOError:  # the buffer is full: wait for room
                import select

                out = select.poll()
                out.register(sock, select.POLLOUT)
                self._wait(out, end)
            except OSError as e:
                if sent == 0 and e.errno in _CLOSED:
                    raise _Refused(str(e)) from e
                raise

    def _read(self, end: float | None) -> dict[str, Any] | None:
        """Read one answer frame (None: closed cleanly before one began); what arrived past
        it stays in the buffer for the next."""
        assert self.sock is not None
        sock, buf = self.sock, self._buf
        need = HEADER_BYTES
        while True:
            if len(buf) >= HEADER_BYTES:
                need = HEADER_BYTES + body_length(buf)
                if len(buf) >= need:
                    body = bytes(buf[HEADER_BYTES:need])
                    del buf[:need]
                    return decode(body)
            self._wait(self._poll, end)  # the answer takes the daemon a while: wait first
            try:
                chunk = sock.recv(min(max(need - len(buf), _READ_MIN), _READ_MAX))
            except BlockingIOError:
                continue
            if not chunk:
                if not buf:
                    return None
                raise FrameError("connection closed")
            buf += chunk

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None
            self._buf = bytearray()
            self._poll = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Refused(OSError):
    """A send that the closed peer refused whole."""


def _left(end: float | None) -> float | None:
    return None if end is None else max(0.001, end - time.monotonic())


def deliver(method: str, params: dict[str, Any], deadline: float,
            paths: Paths | None = None) -> Any:
    """Hand a request to the daemon within `deadline` seconds, or spool it for the daemon to
    replay (a daemon is started in the background if none runs, and one of another version is
    asked to stop so the next start is this version). Returns the result, or None when the
    request was spooled. An error the request itself caused is raised: spooling it would only
    fail again."""
    paths = paths or get_paths()
    client = Client(paths, autostart="background")
    try:
        return client.call(method, params, timeout=deadline)
    except Db0Error as e:
        if e.code not in RETRYABLE and e.code != "incompatible":
            raise
    finally:
        client.close()
    spool_request(paths, method, params)
    return None


def spool_request(paths: Paths, method: str, params: dict[str, Any]) -> Path:
    """Write a whole request frame where the daemon replays it: a temporary name, then a
    rename, so a file is whole or absent; private to the user."""
    d = paths.spool_dir
    ensure_private_dir(d)
    token = os.urandom(8).hex()
    name = f"{time.time_ns():020d}-{token}.json"
    body = json.dumps(request(0, method, params), ensure_ascii=False).encode("utf-8",
                                                                            "surrogatepass")
    tmp = d / f".{name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, body)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, d / name)
    return d / name


def _connect_socket(path: str, timeout: float) -> _socket.socket:
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(str(path))
    except OSError:
        s.close()
        raise
    return s


def probe(paths: Paths, until: float | None = None) -> _socket.socket | None:
    """A connected socket if a daemon answers at the socket path, else None. A full listen
    queue (EAGAIN) is retried until `until` (a monotonic time), then reported unavailable."""
    delay = 0.002
    while True:
        left = 5.0 if until is None else max(0.01, until - time.monotonic())
        try:
            return _connect_socket(paths.socket_file, min(left, 5.0))
        except (FileNotFoundError, ConnectionRefusedError):
            return None
        except (BlockingIOError, TimeoutError) as e:  # the daemon's queue is full
            if until is None or time.monotonic() + delay > until:
                raise Db0Error("busy", "the daemon is not accepting connections",
                               "try again in a moment") from e
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        except OSError as e:
            if e.errno in _NOT_THERE:
                return None
            if e.errno == errno.EAGAIN and until is not None and time.monotonic() < until:
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
                continue
            raise Db0Error("unavailable", f"cannot reach the daemon at {paths.socket}: "
                           f"{e.strerror}", "check that directory's permissions") from e


def _last_log_line(paths: Paths) -> str:
    try:
        with open(paths.log_file, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            lines = [ln for ln in f.read().decode("utf-8", "replace").splitlines() if ln.strip()]
        return lines[-1].strip() if lines else ""
    except OSError:
        return ""


def spawn_daemon(paths: Paths) -> subprocess.Popen[bytes]:
    import subprocess

    try:
        ensure_private_dir(paths.log_dir)
        log = open(paths.log_file, "ab")  # noqa: SIM115 - handed to the child, closed below
    except (OSError, RuntimeDirError) as e:
        raise Db0Error("unavailable", f"cannot write the daemon's log in {paths.log_dir}: {e}",
                       "check that directory's permissions, or set DB0_HOME") from e
    try:
        os.chmod(paths.log_file, 0o600)
        proc = subprocess.Popen(
            [sys.executable, "-m", "db0.daemon", "run"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True, close_fds=True,
        )
    finally:
        log.close()
    _spawned.append(proc)
    return proc


# Daemons this process started: its children, which stay in the process table once they
# exit until this process reaps them (`_reap`, at each new connection): a long-lived client
# (`db0 mcp`) whose daemon was stopped would otherwise keep it there as a zombie.
_spawned: list[subprocess.Popen[bytes]] = []


def _reap() -> None:
    """Reap the daemons this process started that have exited."""
    _spawned[:] = [p for p in _spawned if p.poll() is None]


def running(pid: int) -> bool:
    """Whether process `pid` runs: one that exited and that its parent has not reaped yet
    (a zombie: a daemon started by a long-lived client, stopped) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True  # no /proc (not Linux): the signal said it is there


def _runtime_dir(paths: Paths) -> None:
    try:
        ensure_private_dir(paths.runtime_dir)
    except (RuntimeDirError, OSError) as e:
        raise Db0Error("unavailable", f"cannot use the runtime directory {paths.runtime_dir}: "
                       f"{e}", "fix its permissions, or set DB0_HOME or XDG_RUNTIME_DIR") from e


def _lock_now(lock: Any) -> None:
    """Take the startup lock or raise BlockingIOError."""
    import fcntl

    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _startup_lock(paths: Paths) -> Any:
    return os.fdopen(os.open(paths.startup_lock, os.O_RDWR | os.O_CREAT, 0o600), "r+")


def start_in_background(paths: Paths) -> None:
    """Start a daemon without waiting for it (another may be starting: then nothing)."""
    _runtime_dir(paths)
    with _startup_lock(paths) as lock:
        try:
            _lock_now(lock)
        except BlockingIOError:
            return  # someone is starting it right now
        sock = probe(paths)
        if sock is not None:
            sock.close()
            return
        spawn_daemon(paths)


def _start_and_connect(paths: Paths, timeout: float = START_TIMEOUT) -> _socket.socket:
    _runtime_dir(paths)
    deadline = time.monotonic() + timeout
    with _startup_lock(paths) as lock:
        while True:  # another CLI may be starting the daemon: wait for it, then probe again
            try:
                _lock_now(lock)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise Db0Error("unavailable", "timed out waiting for another db0 to start "
                                   "the daemon", f"see its log: {paths.log_file}") from None
                time.sleep(0.01)
        sock = probe(paths, deadline)
        if sock is not None:
            return sock
        proc = spawn_daemon(paths)
        delay = 0.005
        while time.monotonic() < deadline:
            sock = probe(paths, deadline)
            if sock is not None:
                return sock
            code = proc.poll()
            if code is not None:
                sock = probe(paths, deadline)  # it may have lost a race to a daemon now up
                if sock is not None:
                    return sock
                if code == 0:  # another daemon held the pid lock: one that is stopping
                    time.sleep(0.05)
                    proc = spawn_daemon(paths)
                    continue
                why = _last_log_line(paths) or f"exit status {code}"
                raise Db0Error("unavailable", f"the daemon failed to start: {why}",
                               f"see its log: {paths.log_file}")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        raise Db0Error("unavailable", f"the daemon did not start within {timeout:g}s",
                       f"see its log: {paths.log_file}")


def wait_gone(paths: Paths, pid: int | None, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = bool(pid and running(pid))
        if not alive and not paths.socket.exists():
            return True
        if not alive and pid:
            return True
        time.sleep(0.02)
    return False


def connect(paths: Paths | None = None, autostart: bool = True) -> Client:
    """A connected client, starting the daemon (or replacing one of another version) as
    needed; `autostart=False` only connects to a running one."""
    client = Client(paths, autostart="wait" if autostart else "never")
    client.connect()
    return client

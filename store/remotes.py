"""Sync remotes: the 0600 file that names them, and their connection strings.

A remote is a name, a Postgres DSN and the scopes it carries. The file is JSON beside the
config (`remotes.json`), written atomically with mode 0600 because a DSN may hold a password.
A DSN may instead name an environment variable: `env:NAME` (the whole DSN is in $NAME) or a
`password_env=NAME` parameter (URI query or key=value), resolved only when connecting. DSNs
are never shown in full: `mask` hides the password.

Imports neither the daemon nor the CLI; psycopg only inside functions.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from db0.store.context import SCOPES
from db0.store.errors import InvalidError, NotFoundError, StoreError

DEFAULT_SCOPES = ("user", "agent")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class Remote:
    name: str
    dsn: str
    scopes: list[str] | None = None  # None: the daemon's [sync] scopes (user, agent)
    added_at: float = field(default_factory=time.time)

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "dsn": mask(self.dsn), "scopes": self.scopes,
                "env": env_names(self.dsn)}


def check_name(name: str) -> str:
    if not _NAME.match(name or "") or name == "status":  # `db0 sync status` is a verb
        raise InvalidError(f"'{name}' is not a remote name",
                           "use letters, digits, '.', '_' or '-' (up to 64)")
    return name


def check_scopes(scopes: list[str] | None) -> list[str] | None:
    if not scopes:
        return None
    bad = [s for s in scopes if s not in SCOPES]
    if bad:
        raise InvalidError(f"unknown scope '{bad[0]}'", "use: " + ", ".join(SCOPES))
    return [s for s in SCOPES if s in scopes]


def load(path: Path) -> dict[str, Remote]:
    try:
        raw = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise StoreError(f"cannot read {path}: {e}", "fix or remove the file") from None
    out = {}
    for name, r in (raw.get("remotes") or {}).items():
        out[name] = Remote(name, str(r["dsn"]), r.get("scopes"), float(r.get("added_at") or 0))
    return out


def save(path: Path, remotes: Mapping[str, Remote]) -> None:
    """Write atomically, 0600 from the start (never a moment when others could read it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"remotes": {n: {"dsn": r.dsn, "scopes": r.scopes, "added_at": r.added_at}
                        for n, r in sorted(remotes.items())}}
    fd, tmp = tempfile.mkstemp(prefix=".remotes.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def add(path: Path, name: str, dsn: str, scopes: list[str] | None = None,
        replace: bool = False) -> Remote:
    check_name(name)
    dsn = dsn.strip()
    validate_dsn(dsn)
    remotes = load(path)
    if name in remotes and not replace:
        raise InvalidError(f"remote '{name}' already exists",
                           f"remove it first: db0 remote remove {name}")
    remote = Remote(name, dsn, check_scopes(scopes))
    remotes[name] = remote
    save(path, remotes)
    return remote


def remove(path: Path, name: str) -> Remote:
    remotes = load(path)
    if name not in remotes:
        raise NotFoundError(f"no remote '{name}'", "see them with: db0 remote list")
    gone = remotes.pop(name)
    save(path, remotes)
    return gone


def get(path: Path, name: str) -> Remote:
    remotes = load(path)
    if name not in remotes:
        raise NotFoundError(f"no remote '{name}'", "add it: db0 remote add NAME DSN")
    return remotes[name]


# -- DSNs -------------------------------------------------------------------------------------

def env_names(dsn: str) -> list[str]:
    """The environment variables a DSN reads when connecting."""
    if dsn.startswith("env:"):
        return [dsn[4:]]
    m = re.search(r"(?:[?&]|^|\s)password_env=([A-Za-z_][A-Za-z0-9_]*)", dsn)
    return [m.group(1)] if m else []


def validate_dsn(dsn: str) -> None:
    if not dsn:
        raise InvalidError("the DSN is empty", "give one like postgresql://me@host/db")
    if dsn.startswith("env:"):
        if not _ENV_NAME.match(dsn[4:]):
            raise InvalidError(f"'{dsn[4:]}' is not an environment variable name",
                               "write env:NAME")
        return
    from psycopg import conninfo

    try:
        conninfo.conninfo_to_dict(_strip_password_env(dsn)[0])
    except Exception as e:  # psycopg.ProgrammingError: libpq's own words
        raise InvalidError(f"the DSN does not parse: {str(e).splitlines()[0]}",
                           "write it like postgresql://me@host/db?password_env=PGPASS") from None


def _unsplit(scheme: str, netloc: str, path: str, query: str, fragment: str) -> str:
    # urlunsplit drops the '//' of an empty host (postgresql:///db), which libpq needs.
    return (f"{scheme}://{netloc}{path}" + (f"?{query}" if query else "")
            + (f"#{fragment}" if fragment else ""))


def _strip_password_env(dsn: str) -> tuple[str, str | None]:
    if "://" in dsn:
        parts = urlsplit(dsn)
        query = parse_qsl(parts.query, keep_blank_values=True)
        names = [v for k, v in query if k == "password_env"]
        if not names:
            return dsn, None
        rest = [(k, v) for k, v in query if k != "password_env"]
        return _unsplit(*parts._replace(query=urlencode(rest))), names[0]
    m = re.search(r"(^|\s)password_env=(\S+)", dsn)
    if not m:
        return dsn, None
    return (dsn[: m.start()] + dsn[m.end():]).strip(), m.group(2)


def resolve(dsn: str, env: Mapping[str, str] | None = None) -> str:
    """The DSN to connect with: environment references replaced by their values."""
    env = {**os.environ, **(env or {})}
    if dsn.startswith("env:"):
        name = dsn[4:]
        if not env.get(name):
            raise StoreError(f"the remote's DSN is in ${name}, which is not set",
                             f"export {name}=postgresql://… before db0 sync (or before the "
                             "daemon starts, for auto-sync)", code="invalid")
        return env[name]
    base, var = _strip_password_env(dsn)
    if var is None:
        return base
    name = var
    if name not in env:
        raise StoreError(f"the remote's password is in ${name}, which is not set",
                         f"export {name}=… before db0 sync (or before the daemon starts, "
                         "for auto-sync)", code="invalid")
    from psycopg import conninfo

    return conninfo.make_conninfo(base, password=env[name])


def mask(dsn: str) -> str:
    """The DSN with any password replaced by ****."""
    if dsn.startswith("env:"):
        return dsn
    if "://" in dsn:
        parts = urlsplit(dsn)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            if ":" in userinfo:
                netloc = userinfo.split(":", 1)[0] + ":****@" + host
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        if netloc == parts.netloc and not any(k == "password" for k, _ in pairs):
            return dsn
        query = [(k, "****" if k == "password" else v) for k, v in pairs]
        return _unsplit(*parts._replace(netloc=netloc,
                                        query=urlencode(query, safe="*", quote_via=quote)))
    return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1****", dsn)

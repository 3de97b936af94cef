"""Where db0 keeps things: config, data, logs and the runtime directory (socket, pid, locks).

Shared by the CLI and the daemon, so it imports only the standard library and platformdirs.
`DB0_HOME` moves everything at once (tests and several isolated installs rely on it).
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from pathlib import Path
from typing import NamedTuple

APP = "db0"


class RuntimeDirError(Exception):
    """The runtime directory is unsafe (a symlink, someone else's, or open to others)."""


class Paths(NamedTuple):
    # A NamedTuple, not a dataclass: `dataclasses` pulls in `inspect` (~10 ms measured), and
    # `db0 hook` imports this module at every prompt.
    home: Path | None
    config_dir: Path
    data_dir: Path
    log_dir: Path
    runtime_dir: Path

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def db_file(self) -> Path:
        return self.data_dir / "db0.sqlite3"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    @property
    def log_file(self) -> Path:
        return self.log_dir / "daemon.log"

    @property
    def socket(self) -> Path:
        return self.runtime_dir / "daemon.sock"

    @property
    def pid_file(self) -> Path:
        return self.runtime_dir / "daemon.pid"

    @property
    def startup_lock(self) -> Path:
        return self.runtime_dir / "startup.lock"


def _private_runtime_dir() -> Path:
    # No XDG_RUNTIME_DIR (containers, cron, ssh without logind): make our own, like atuin does.
    base = Path(os.environ.get("TMPDIR") or "/tmp")
    return base / f"db0-{os.getuid()}"


def get_paths() -> Paths:
    home = os.environ.get("DB0_HOME")
    if home:
        h = Path(home).expanduser().absolute()
        return Paths(h, h / "config", h / "data", h / "logs", h / "run")
    if sys.platform.startswith("linux"):
        # platformdirs' XDG rules, spelled out: importing it costs ~13 ms of every command.
        def xdg(var: str, default: str) -> Path:
            value = os.environ.get(var)
            return Path(value) if value and os.path.isabs(value) else Path.home() / default

        runtime_env = os.environ.get("XDG_RUNTIME_DIR")
        return Paths(
            None,
            xdg("XDG_CONFIG_HOME", ".config") / APP,
            xdg("XDG_DATA_HOME", ".local/share") / APP,
            xdg("XDG_STATE_HOME", ".local/state") / APP / "log",
            Path(runtime_env) / APP if runtime_env else _private_runtime_dir(),
        )
    import platformdirs

    return Paths(
        None,
        Path(platformdirs.user_config_dir(APP)),
        Path(platformdirs.user_data_dir(APP)),
        Path(platformdirs.user_log_dir(APP)),
        Path(platformdirs.user_runtime_dir(APP)),
    )


def make_private_dir(path: Path) -> Path:
    """Create `path` and any missing parent 0700 (XDG's rule for the directories an app makes;
    `mkdir(parents=True)` would make the parents with the default mode). Existing ones are
    left as they are."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(d, 0o700)
    return path


def ensure_private_dir(path: Path) -> Path:
    """Create `path` 0700, or check an existing one is ours, a real directory and private."""
    try:
        make_private_dir(path)
        if not path.is_dir():
            raise FileExistsError(path)
    except FileExistsError as e:
        raise RuntimeDirError(f"{path} exists and is not a directory; to fix: remove it") from e
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise RuntimeDirError(f"{path} is a symlink; to fix: remove it and let db0 recreate it")
    if st.st_uid != os.getuid():
        raise RuntimeDirError(f"{path} belongs to uid {st.st_uid}, not you; to fix: set DB0_HOME")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def loose_modes(paths: Paths) -> list[tuple[Path, int]]:
    """Everything db0 keeps that another user could read or write: (path, mode), for
    `db0 doctor` (directories should be 0700, files 0600; the socket is checked at bind)."""
    out: list[tuple[Path, int]] = []
    roots = [paths.config_dir, paths.data_dir, paths.log_dir, paths.runtime_dir]
    if paths.home is not None:
        roots.insert(0, paths.home)
    seen: set[Path] = set()
    for root in roots:
        if root in seen or not root.exists():
            continue
        seen.add(root)
        for dirpath, dirnames, filenames in os.walk(root):
            d = Path(dirpath)
            for p in [d, *(d / f for f in filenames)]:
                try:
                    st = os.lstat(p)
                except OSError:
                    continue
                if stat.S_ISLNK(st.st_mode) or stat.S_ISSOCK(st.st_mode) or st.st_uid != \
                        os.getuid():
                    continue
                if st.st_mode & 0o077:
                    out.append((p, stat.S_IMODE(st.st_mode)))
            dirnames[:] = [n for n in dirnames if (d / n) not in seen]
    return sorted(set(out))


def fix_modes(paths: Paths) -> list[tuple[Path, int]]:
    """Make what `loose_modes` finds private (0700 directories, 0600 files); what was fixed."""
    fixed = []
    for p, mode in loose_modes(paths):
        try:
            os.chmod(p, 0o700 if p.is_dir() else 0o600)
            fixed.append((p, mode))
        except OSError:
            continue
    return fixed

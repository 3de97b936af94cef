"""Where db0 keeps things: config, data, logs and the runtime directory (socket, pid, locks).

Shared by the CLI and the daemon, so it imports only the standard library and platformdirs.
`DB0_HOME` moves everything at once (tests and several isolated installs rely on it).
"""

from __future__ import annotations

import os
import stat
import sys

TYPE_CHECKING = False  # typing stays unloaded at run time: it is costly to import

if TYPE_CHECKING:
    from pathlib import Path

APP = "db0"


class RuntimeDirError(Exception):
    """The runtime directory is unsafe (a symlink, someone else's, or open to others)."""


class Paths:
    """The five directories, kept as strings and handed out as `Path`s: `pathlib` is imported
    only when one is asked for. A CLI command that finds its daemon needs only `socket_file`,
    and every command pays for what this module imports (`db0 hook` runs at every prompt); no
    dataclass either (`dataclasses` pulls in `inspect`)."""

    __slots__ = ("_config", "_data", "_home", "_log", "_run")

    def __init__(self, home: str | os.PathLike[str] | None, config_dir: str | os.PathLike[str],
                 data_dir: str | os.PathLike[str], log_dir: str | os.PathLike[str],
                 runtime_dir: str | os.PathLike[str]) -> None:
        self._home = None if home is None else os.fspath(home)
        self._config = os.fspath(config_dir)
        self._data = os.fspath(data_dir)
        self._log = os.fspath(log_dir)
        self._run = os.fspath(runtime_dir)

    def __repr__(self) -> str:
        return (f"Paths(home={self._home!r}, config={self._config!r}, data={self._data!r}, "
                f"log={self._log!r}, run={self._run!r})")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Paths) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple[str | None, str, str, str, str]:
        return (self._home, self._config, self._data, self._log, self._run)

    @property
    def socket_file(self) -> str:
        return os.path.join(self._run, "daemon.sock")

    @property
    def home(self) -> Path | None:
        return None if self._home is None else _path(self._home)

    @property
    def config_dir(self) -> Path:
        return _path(self._config)

    @property
    def data_dir(self) -> Path:
        return _path(self._data)

    @property
    def log_dir(self) -> Path:
        return _path(self._log)

    @property
    def runtime_dir(self) -> Path:
        return _path(self._run)

    @property
    def config_file(self) -> Path:
        return _path(self._config, "config.toml")

    @property
    def db_file(self) -> Path:
        return _path(self._data, "db0.sqlite3")

    @property
    def models_dir(self) -> Path:
        return _path(self._data, "models")

    @property
    def spool_dir(self) -> Path:
        return _path(self._data, "spool")

    @property
    def log_file(self) -> Path:
        return _path(self._log, "daemon.log")

    @property
    def socket(self) -> Path:
        return _path(self.socket_file)

    @property
    def pid_file(self) -> Path:
        return _path(self._run, "daemon.pid")

    @property
    def startup_lock(self) -> Path:
        return _path(self._run, "startup.lock")


def _path(*parts: str) -> Path:
    from pathlib import Path

    return Path(*parts)


def _private_runtime_dir() -> str:
    # No XDG_RUNTIME_DIR (containers, cron, ssh without logind): make our own, like atuin does.
    return os.path.join(os.environ.get("TMPDIR") or "/tmp", f"db0-{os.getuid()}")


def get_paths() -> Paths:
    home = os.environ.get("DB0_HOME")
    j = os.path.join
    if home:
        h = os.path.abspath(os.path.expanduser(home))
        return Paths(h, j(h, "config"), j(h, "data"), j(h, "logs"), j(h, "run"))
    if sys.platform.startswith("linux"):
        # platformdirs' XDG rules, spelled out: importing it costs every command.
        def xdg(var: str, default: str) -> str:
            value = os.environ.get(var)
            return value if value and os.path.isabs(value) else j(os.path.expanduser("~"),
                                                                   default)

        runtime_env = os.environ.get("XDG_RUNTIME_DIR")
        return Paths(
            None,
            j(xdg("XDG_CONFIG_HOME", ".config"), APP),
            j(xdg("XDG_DATA_HOME", ".local/share"), APP),
            j(xdg("XDG_STATE_HOME", ".local/state"), APP, "log"),
            j(runtime_env, APP) if runtime_env else _private_runtime_dir(),
        )
    import platformdirs

    return Paths(
        None,
        platformdirs.user_config_dir(APP),
        platformdirs.user_data_dir(APP),
        platformdirs.user_log_dir(APP),
        platformdirs.user_runtime_dir(APP),
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
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            pass
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
    from pathlib import Path

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

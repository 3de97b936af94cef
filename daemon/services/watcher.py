"""The folder watcher: keeps memories in step with the Markdown and text files of watched folders.

The daemon is the only watcher (one watchdog observer, one schedule per folder; a folder that
inotify cannot take, out of watches say, falls back to polling). Events only mark paths dirty;
one worker thread acts on them once the folder has been quiet for `debounce` (0.5 s), or after
`max_delay` (2 s) during a long burst, so an editor's atomic save (write a temporary file,
rename it over the note) and a thousand files copied at once are each read once. The worker
trusts the disk, not the events: a dirty path that exists is indexed, one that does not is
forgotten, and a vanished file whose content hash reappears under a new path (or a move the
observer reported) is a rename, which keeps each section's history.

At start, when a folder is added and every `rescan_interval` (5 min), a reconciling scan walks
the folder and compares each file's (size, mtime_ns), then its sha256, with what was indexed:
changes made while the daemon was down are caught, and nothing is stored twice. A folder that
is missing at a scan keeps its memories (an unmounted disk is not a deletion).

Config: `[watch] debounce = "0.5s"`, `rescan_interval = "5m"`, `max_file_size = 1048576`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import threading
import time
from typing import TYPE_CHECKING, Any

from db0.daemon.core.config import Config
from db0.daemon.core.runtime import Component, Runtime
from db0.daemon.protocol import Db0Error
from db0.daemon.services import watchparse as wp
from db0.store import watch as sw
from db0.store.context import Context
from db0.store.errors import StoreError
from db0.store.memories import now_iso

if TYPE_CHECKING:
    from collections.abc import Callable

    from db0.store.core import Store

log = logging.getLogger("db0.watch")

MAX_DELAY_S = 2.0
BATCH_FILES = 64  # files per write transaction
SHOWN = 100  # skipped files and errors listed per folder in status


class _Live:
    """What the daemon knows about one watched folder beyond the database."""

    def __init__(self, watch: sw.Watch) -> None:
        self.watch = watch
        self.observed: Any = None
        self.mode = "none"
        self.state = "scanning"
        self.skipped: dict[str, str] = {}
        self.errors: dict[str, str] = {}
        self.ignored = 0
        self.last_scan: float | None = None
        self.scan_s: float | None = None
        self.indexed = 0
        self.forgotten = 0
        self.scanned = threading.Event()


class _Handler:
    """watchdog calls `dispatch` on its emitter thread: only note the paths and return."""

    def __init__(self, watcher: Watcher, live: _Live) -> None:
        self.watcher, self.live = watcher, live

    def dispatch(self, event: Any) -> None:
        try:
            self.watcher.on_event(self.live, event)
        except Exception:
            log.exception("watch: event not handled")


def _rel(root: str, path: str) -> str | None:
    if path == root:
        return ""
    if path.startswith(root + "/"):
        return path[len(root) + 1:]
    return None


class Watcher(Component):
    """The folder watcher (its own thread: it debounces events and rescans on a schedule)."""

    name = "watcher"

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        self.debounce = 0.5
        self.rescan = 300.0
        self.max_bytes = 1 << 20
        p = rt.paths
        self._own = [os.path.realpath(d) for d in (p.data_dir, p.log_dir, p.runtime_dir,
                                                    p.config_dir)]
        self._live: dict[int, _Live] = {}
        self._lock = threading.Lock()  # the pending sets and _live
        self._work = threading.Lock()  # one folder's processing, or a remove, at a time
        self._dirty: dict[int, set[str]] = {}
        self._dirs: dict[int, set[str]] = {}
        self._hints: dict[int, dict[str, str]] = {}
        self._first = 0.0
        self._last = 0.0
        self._urgent = False
        self._busy = False
        self._observer: Any = None
        self._poller: Any = None
        self._next_rescan = 0.0
        self.events = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def apply_config(self, cfg: Config) -> None:
        self.debounce = cfg.watch.debounce
        self.rescan = cfg.watch.rescan_interval
        self.max_bytes = cfg.watch.max_file_size
        self._wake.set()

    def start(self) -> None:
        from watchdog.observers import Observer

        with self.rt.reader() as store:
            watches = sw.all_watches(store.conn)
        self._observer = Observer()
        self._observer.daemon = True
        self._observer.start()
        self._next_rescan = time.monotonic() + self.rescan
        for w in watches:
            self._begin(w)
        self._thread = threading.Thread(target=self._loop, name="db0-watch", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 20.0) -> None:
        self._stop.set()
        self._wake.set()
        for obs in (self._observer, self._poller):
            if obs is not None:
                with contextlib.suppress(Exception):
                    obs.stop()
                    obs.join(5)
        if self._thread is not None:
            self._thread.join(timeout)

    def _begin(self, w: sw.Watch) -> _Live:
        live = _Live(w)
        with self._lock:
            self._live[w.id] = live
        self._schedule(live)
        self._request(w.id, dirs={""}, urgent=True)
        return live

    def _schedule(self, live: _Live) -> None:
        path = live.watch.path
        if self._observer is None or not os.path.isdir(path):
            live.mode = "none"
            return
        try:
            live.observed = self._observer.schedule(_Handler(self, live), path, recursive=True)
            live.mode = "events"
        except OSError as e:  # inotify out of watches or instances: poll instead
            log.warning("watch: %s: no file events (%s); polling instead", path, e)
            try:
                if self._poller is None:
                    from watchdog.observers.polling import PollingObserver

                    self._poller = PollingObserver(timeout=2.0)
                    self._poller.daemon = True
                    self._poller.start()
                live.observed = self._poller.schedule(_Handler(self, live), path,
                                                      recursive=True)
                live.mode = "polling"
            except OSError as e2:
                live.mode = "none"
                live.errors[""] = f"cannot watch the folder ({e2}); rescans only"

    def _unschedule(self, live: _Live) -> None:
        if live.observed is None:
            return
        for obs in (self._observer, self._poller):
            if obs is not None:
                with contextlib.suppress(Exception):
                    obs.unschedule(live.observed)
        live.observed = None

    # -- events ------------------------------------------------------------------------------

    def on_event(self, live: _Live, event: Any) -> None:
        kind = event.event_type
        if kind in ("opened", "closed_no_write") or (event.is_directory and kind == "modified"):
            return
        root = live.watch.path
        paths = [os.fsdecode(event.src_path)]
        if kind == "moved":
            paths.append(os.fsdecode(event.dest_path))
        rels = [_rel(root, p) for p in paths]
        keep = [r for r in rels if r is not None and (r == "" or wp.hidden_part(r) is None)]
        if not keep:
            return
        self.events += 1
        if event.is_directory:
            self._request(live.watch.id, dirs=set(keep))
            return
        files = {r for r in keep if r and wp.matches(r, live.watch.globs)}
        hint = None
        if kind == "moved" and len(keep) == 2 and rels[0] in files and rels[1] in files:
            hint = (str(rels[1]), str(rels[0]))
        if files:
            self._request(live.watch.id, files=files, hint=hint)

    def _request(self, wid: int, files: set[str] | None = None, dirs: set[str] | None = None,
                 hint: tuple[str, str] | None = None, urgent: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            if files:
                self._dirty.setdefault(wid, set()).update(files)
            if dirs:
                self._dirs.setdefault(wid, set()).update(dirs)
            if hint:
                self._hints.setdefault(wid, {})[hint[0]] = hint[1]
            if not self._first:
                self._first = now
            self._last = now
            self._urgent = self._urgent or urgent
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            with self._lock:
                pending = bool(self._first)
                due = (now if self._urgent else min(self._last + self.debounce,
                                                    self._first + MAX_DELAY_S)) if pending \
                    else self._next_rescan
            self._wake.wait(max(0.0, min(due, self._next_rescan) - now))
            self._wake.clear()
            if self._stop.is_set():
                return
            now = time.monotonic()
            if now >= self._next_rescan:
                self._next_rescan = now + self.rescan
                for wid in list(self._live):
                    self._request(wid, dirs={""}, urgent=True)
                now = time.monotonic()
            with self._lock:
                ready = bool(self._first) and (self._urgent or now >= min(
                    self._last + self.debounce, self._first + MAX_DELAY_S))
                if not ready:
                    continue
                dirty, dirs, hints = self._dirty, self._dirs, self._hints
                self._dirty, self._dirs, self._hints = {}, {}, {}
                self._first = self._last = 0.0
                self._urgent = False
                self._busy = True
            try:
                for wid in sorted(set(dirty) | set(dirs)):
                    live = self._live.get(wid)
                    if live is None or self._stop.is_set():
                        continue
                    with self._work:
                        if wid not in self._live:
                            continue
                        try:
                            self._process(live, dirty.get(wid, set()), dirs.get(wid, set()),
                                          hints.get(wid, {}))
                        except Exception as e:
                            if self._stop.is_set():
                                return
                            log.exception("watch: %s: processing failed", live.watch.path)
                            live.errors[""] = f"processing failed: {type(e).__name__}: {e}"
            finally:
                self._busy = False

    # -- the work ----------------------------------------------------------------------------

    def _walk(self, live: _Live, sub: str) -> dict[str, os.stat_result]:
        """The notes under `sub` ("" for the whole folder), recording what is skipped."""
        root, globs = live.watch.path, live.watch.globs
        prefix = sub + "/" if sub else ""
        for k in [k for k in live.skipped if not sub or k == sub or k.startswith(prefix)]:
            del live.skipped[k]
        found: dict[str, os.stat_result] = {}
        ignored = 0
        stack = [sub]
        while stack:
            d = stack.pop()
            try:
                with os.scandir(os.path.join(root, d) if d else root) as it:
                    entries = list(it)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as e:
                live.skipped[d or "."] = f"folder cannot be read ({e.strerror})"
                continue
            for entry in entries:
                rel = f"{d}/{entry.name}" if d else entry.name
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                is_dir = stat.S_ISDIR(st.st_mode)
                if entry.name.startswith("."):
                    live.skipped[rel] = wp.hidden_reason(entry.name, is_dir)
                elif stat.S_ISLNK(st.st_mode):
                    live.skipped[rel] = "symlink (not followed)"
                elif is_dir:
                    if self._is_own(os.path.join(root, rel)):
                        live.skipped[rel] = "db0's own data"
                    else:
                        stack.append(rel)
                elif not wp.matches(rel, globs):
                    ignored += 1
                else:
                    why = wp.classify(st, self.max_bytes)
                    if why:
                        live.skipped[rel] = why
                    else:
                        found[rel] = st
        if not sub:
            live.ignored = ignored
        return found

    def _is_own(self, path: str) -> bool:
        real = os.path.realpath(path)
        return any(real == o or real.startswith(o + "/") for o in self._own)

    def _process(self, live: _Live, dirty: set[str], dirs: set[str],
                 hints: dict[str, str]) -> None:
        w = live.watch
        started = time.monotonic()
        full = "" in dirs
        if full and not os.path.isdir(w.path):
            live.state = "missing"
            live.errors[""] = "the folder is missing; its memories are kept until it is back " \
                              "or the watch is removed"
            self._unschedule(live)
            dirs = set()
        elif full:
            live.errors.pop("", None)
            if live.observed is None:
                self._schedule(live)
        with self.rt.reader() as store:
            tracked = sw.files(store.conn, w.id)
        present: dict[str, os.stat_result] = {}
        gone: dict[str, str] = {}  # rel -> why its memories go
        for d in sorted(dirs, key=len):
            if any(d.startswith(o + "/") for o in dirs if o and o != d) or (full and d):
                continue  # inside a folder scanned anyway
            walked = self._walk(live, d)
            present.update(walked)
            prefix = d + "/" if d else ""
            for rel in tracked:
                if rel.startswith(prefix) and rel not in walked:
                    gone[rel] = live.skipped.get(rel) or "file deleted"
        for rel in sorted(dirty - set(present)):
            try:
                st = os.lstat(os.path.join(w.path, rel))
            except OSError:
                if rel in tracked:
                    gone[rel] = "file deleted"
                live.skipped.pop(rel, None)
                continue
            why = wp.classify(st, self.max_bytes)
            if why:
                live.skipped[rel] = why
                if rel in tracked:
                    gone[rel] = f"no longer indexed: {why}"
                continue
            live.skipped.pop(rel, None)
            present[rel] = st
        changed: dict[str, wp.Note] = {}
        touched: dict[str, sw.FileRow] = {}
        for rel, st in sorted(present.items()):
            t = tracked.get(rel)
            if t and (t.size, t.mtime_ns) == (st.st_size, st.st_mtime_ns):
                continue
            note = wp.read(os.path.join(w.path, rel), self.max_bytes)
            if isinstance(note, wp.Gone):
                if t:
                    gone[rel] = "file deleted"
                continue
            if isinstance(note, wp.Skip):
                live.skipped[rel] = note.reason
                if t:
                    gone[rel] = f"no longer indexed: {note.reason}"
                continue
            if t and t.sha256 == note.sha256:
                touched[rel] = sw.FileRow(note.size, note.mtime_ns, note.sha256)
            else:
                changed[rel] = note
        renames = self._pair_renames(tracked, gone, changed, hints)
        ops: list[tuple[str, Callable[[Store], list[str]]]] = []
        for rel, note in sorted(changed.items()):
            ops.append((rel, self._sync_op(live, rel, note, renames.get(rel))))
        for rel, why in sorted(gone.items()):
            if rel not in renames.values():
                ops.append((rel, self._drop_op(live, rel, why)))
        for rel, row in sorted(touched.items()):
            ops.append((rel, self._touch_op(w, rel, row)))
        self._run(live, ops)
        if full:
            live.state = "watching" if os.path.isdir(w.path) else "missing"
            live.last_scan = time.time()
            live.scan_s = round(time.monotonic() - started, 3)
            live.scanned.set()

    @staticmethod
    def _pair_renames(tracked: dict[str, sw.FileRow], gone: dict[str, str],
                      changed: dict[str, wp.Note], hints: dict[str, str]) -> dict[str, str]:
        """new path -> old path: moves the observer saw, then vanished files whose exact
        content turned up under a new path (renames made while nobody watched)."""
        out: dict[str, str] = {}
        for dst, src in hints.items():
            if src in gone and src in tracked and dst in changed:
                out[dst] = src
        used = set(out.values())
        by_sha: dict[str, list[str]] = {}
        for src in sorted(gone):
            if src in tracked and src not in used:
                by_sha.setdefault(tracked[src].sha256, []).append(src)
        for dst in sorted(changed):
            if dst in tracked or dst in out:
                continue
            olds = by_sha.get(changed[dst].sha256)
            if olds:
                out[dst] = olds.pop(0)
        return out

    def _sync_op(self, live: _Live, rel: str, note: wp.Note,
                 old_rel: str | None) -> Callable[[Store], list[str]]:
        w = live.watch
        sections = []
        parsed = wp.parse(rel, note.text)
        for anchor, content in parsed.sections:
            try:
                sections.append(sw.Section(anchor, wp.section_hash(content, parsed.front_matter),
                                           sw.item(w, rel, anchor, content,
                                                   parsed.front_matter)))
            except StoreError as e:  # a section of nothing but a <private> block, say
                live.errors[f"{rel}#{anchor}"] = e.message
        row = sw.FileRow(note.size, note.mtime_ns, note.sha256)

        def op(store: Store) -> list[str]:
            ids = sw.sync_file(store, w, rel, row, sections, old_rel)
            live.indexed += 1
            return ids
        return op

    @staticmethod
    def _drop_op(live: _Live, rel: str, why: str) -> Callable[[Store], list[str]]:
        def op(store: Store) -> list[str]:
            live.forgotten += sw.drop_file(store, live.watch, rel, why)
            return []
        return op

    @staticmethod
    def _touch_op(w: sw.Watch, rel: str, row: sw.FileRow) -> Callable[[Store], list[str]]:
        def op(store: Store) -> list[str]:
            sw.touch_file(store, w.id, rel, row)
            return []
        return op

    def _run(self, live: _Live, ops: list[tuple[str, Callable[[Store], list[str]]]]) -> None:
        """Write in batches of files, each one transaction; a batch that fails is retried file
        by file, so one bad file is reported and the others still land."""
        wid = live.watch.id

        def batch(chunk: list[tuple[str, Callable[[Store], list[str]]]]
                  ) -> Callable[[Store], dict[str, Any]]:
            def job(store: Store) -> dict[str, Any]:
                if store.conn.execute("SELECT 1 FROM watches WHERE id=?",
                                      (wid,)).fetchone() is None:
                    return {"ids": []}  # removed meanwhile
                ids: list[str] = []
                for _rel, op in chunk:
                    ids += op(store)
                return {"ids": ids}
            return job

        for i in range(0, len(ops), BATCH_FILES):
            if self._stop.is_set():
                return
            chunk = ops[i:i + BATCH_FILES]
            try:
                self.rt.write(batch(chunk))
                for rel, _op in chunk:
                    live.errors.pop(rel, None)
                continue
            except Db0Error:
                raise  # shutting down
            except Exception as e:
                if len(chunk) == 1:
                    self._failed(live, chunk[0][0], e)
                    continue
            for one in chunk:
                try:
                    self.rt.write(batch([one]))
                    live.errors.pop(one[0], None)
                except Db0Error:
                    raise
                except Exception as e:
                    self._failed(live, one[0], e)

    @staticmethod
    def _failed(live: _Live, rel: str, e: Exception) -> None:
        msg = e.message if isinstance(e, StoreError) else f"{type(e).__name__}: {e}"
        live.errors[rel] = msg
        log.warning("watch: %s/%s not indexed: %s", live.watch.path, rel, msg)

    # -- requests from the handlers ----------------------------------------------------------

    def check_folder(self, path: str) -> str:
        """The folder's real path, or a Db0Error saying why it cannot be watched."""
        if not os.path.isabs(path):
            raise Db0Error("bad_request", f"{path} is not an absolute path",
                           "pass the folder's full path")
        try:
            real = os.path.realpath(path, strict=True)
        except FileNotFoundError:
            raise Db0Error("not_found", f"{path} does not exist",
                           f"create it first (mkdir -p {path}) or check the path") from None
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise Db0Error("invalid", f"{path} is a symlink loop",
                               "point the link at a real folder, or watch the folder "
                               "itself") from None
            raise Db0Error("invalid", f"{path} cannot be resolved ({e.strerror})",
                           "check the path") from None
        if not os.path.isdir(real):
            raise Db0Error("invalid", f"{path} is not a folder",
                           "watch the folder that holds it (and --glob for the file)")
        try:
            with os.scandir(real) as it:
                next(it, None)
        except OSError as e:
            raise Db0Error("invalid", f"{path} cannot be read ({e.strerror})",
                           f"give yourself access: chmod u+rx {real}") from None
        for own in self._own:
            if real == own or real.startswith(own + "/"):
                raise Db0Error("invalid", f"{path} is db0's own data directory ({own})",
                               "watch a folder of your notes instead")
            if own.startswith(real + "/") and wp.hidden_part(own[len(real) + 1:]) is None:
                raise Db0Error("invalid", f"{path} holds db0's own data directory ({own})",
                               "watch a folder inside it, or move DB0_HOME out of it")
        return real

    def add(self, path: str, globs: list[str], scope: str, ctx: Context, wait: float
            ) -> dict[str, Any]:
        real = self.check_folder(path)
        w = self.rt.write(lambda s: sw.add(s, real, globs, scope, ctx))
        live = self._begin(w)
        if wait > 0:
            live.scanned.wait(wait)
        return self._public(live)

    def remove(self, path: str, forget: bool) -> dict[str, Any]:
        real = os.path.realpath(path)
        with self.rt.reader() as store:
            known = {w.path for w in sw.all_watches(store.conn)}
        target = real if real in known else os.path.abspath(path)
        with self._work:
            res: dict[str, Any] = self.rt.write(lambda s: sw.remove(s, target, forget))
            with self._lock:
                gone = [lv for lv in self._live.values() if lv.watch.path == target]
                for lv in gone:
                    del self._live[lv.watch.id]
            for lv in gone:
                self._unschedule(lv)
        return res

    def _public(self, live: _Live, counts: dict[str, int] | None = None) -> dict[str, Any]:
        if counts is None:
            with self.rt.reader() as store:
                counts = sw.counts(store.conn).get(live.watch.id)
        counts = counts or {"files": 0, "sections": 0}
        skipped = sorted(dict(live.skipped).items())  # copies: the worker changes them
        errors = sorted(dict(live.errors).items())
        return {
            **live.watch.public(), "state": live.state, "mode": live.mode,
            "files": counts["files"], "sections": counts["sections"],
            "skipped": [{"path": p, "reason": r} for p, r in skipped[:SHOWN]],
            "skipped_count": len(skipped), "ignored": live.ignored,
            "errors": [{"path": p, "error": m} for p, m in errors[:SHOWN]],
            "error_count": len(errors),
            "last_scan_at": now_iso(live.last_scan) if live.last_scan else None,
            "scan_seconds": live.scan_s, "indexed": live.indexed, "forgotten": live.forgotten,
        }

    def watches(self) -> list[dict[str, Any]]:
        with self.rt.reader() as store:
            counts = sw.counts(store.conn)
        with self._lock:
            lives = sorted(self._live.values(), key=lambda lv: lv.watch.path)
        return [self._public(lv, counts.get(lv.watch.id)) for lv in lives]

    def pending(self) -> int:
        with self._lock:
            return (sum(len(s) for s in self._dirty.values())
                    + sum(len(s) for s in self._dirs.values()))

    def status(self) -> dict[str, Any]:
        with self._lock:
            n = len(self._live)
        alive = bool(self._observer is not None and self._observer.is_alive())
        return {"watches": n, "pending": self.pending(), "busy": self._busy,
                "observer_alive": alive, "events": self.events,
                "debounce_s": self.debounce, "rescan_interval_s": self.rescan,
                "max_file_size": self.max_bytes}


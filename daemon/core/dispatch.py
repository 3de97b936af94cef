"""The one dispatcher: every request, live from a socket or replayed from the spool, goes
through `Dispatcher.handle` with the same rules.

1. The method is looked up in the registry (`daemon/handlers`); an unknown one is
   `unknown_method`.
2. Its parameters are checked against the method's declared shape (`daemon/shapes.py`), so a
   handler never sees a wrong type: a misfit is `bad_request` naming the parameter.
3. The context is resolved once (`Runtime.context`: flags, config defaults, lineage).
4. Errors become one-line answers with a fix: store errors keep their code; operational
   failures (a full disk, a read-only file, a lock held too long) get their own codes; only a
   real bug is `internal`, logged with its traceback (never with memory text).
"""

from __future__ import annotations

import concurrent.futures
import errno
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import apsw

from db0.daemon.core.runtime import Runtime
from db0.daemon.core.shapes import Method, ShapeError
from db0.daemon.protocol import Db0Error, err, ok
from db0.store.context import Context
from db0.store.errors import StoreError

log = logging.getLogger("db0.daemon")


def _never() -> bool:
    return False


@dataclass
class Request:
    id: Any
    method: str
    params: dict[str, Any]
    ctx: Context
    replay: bool = False  # from the spool: nobody waits for the answer
    # Whether the client hung up (its socket closed): a long handler checks it now and then
    # and stops, since nobody is left to read the answer.
    gone: Callable[[], bool] = _never


def operational(rt: Runtime, e: BaseException) -> Db0Error | None:
    """The error a caller can act on for a failure of the machine rather than of db0."""
    db, data = rt.paths.db_file, rt.paths.data_dir
    if isinstance(e, apsw.FullError) or (isinstance(e, OSError) and e.errno == errno.ENOSPC):
        return Db0Error("disk_full", f"the disk holding {data} is full; nothing was written",
                        "free some space, then try again")
    if isinstance(e, apsw.ReadOnlyError | apsw.CantOpenError | apsw.PermissionsError) or (
            isinstance(e, OSError) and e.errno in (errno.EACCES, errno.EROFS, errno.EPERM)):
        return Db0Error("read_only", f"db0 cannot write {db}",
                        f"check the permissions of {data} (db0 doctor --fix)")
    if isinstance(e, apsw.BusyError | apsw.LockedError):
        return Db0Error("busy", f"{db} stayed locked by another process",
                        "stop whatever else has the database open, then try again")
    if isinstance(e, apsw.IOError):
        return Db0Error("read_only", f"a disk error stopped a write to {db}",
                        "check the disk (dmesg) and its free space")
    if isinstance(e, apsw.CorruptError | apsw.NotADBError):
        return Db0Error("invalid", f"{db} is damaged", "run db0 doctor")
    if isinstance(e, concurrent.futures.TimeoutError | TimeoutError):
        return Db0Error("busy", "the daemon did not finish the request in time",
                        "try again; db0 daemon status shows what it is doing")
    if isinstance(e, MemoryError):
        return Db0Error("busy", "the daemon ran out of memory for this request",
                        "send less at once")
    return None


@dataclass
class Job:
    """A request of a method with a write job, prepared (`Dispatcher.prepare_job`): the
    write to run, or the answer it already has (a refusal); neither: its whole handler."""

    req_id: Any
    method: Method
    fn: Callable[[Any], Any] | None = None
    answer: dict[str, Any] | None = None
    slot: int | None = None  # its place in the round that ran its write (`Round.done`)


class Dispatcher:
    def __init__(self, rt: Runtime, methods: dict[str, Method]) -> None:
        self.rt = rt
        self.methods = methods

    def handle(self, msg: dict[str, Any], *, replay: bool = False,
               gone: Callable[[], bool] = _never) -> dict[str, Any]:
        req_id = msg.get("id")
        name = msg.get("method")
        method = self.methods.get(name) if isinstance(name, str) else None
        if method is None:
            shown = name if isinstance(name, str) and len(name) < 80 else "?"
            return err(req_id, Db0Error("unknown_method", f"unknown method {shown!r}",
                                        "upgrade the client or the daemon: db0 daemon restart"))
        started = time.perf_counter()
        writer = self.rt.writer if method.gather else None
        if writer is not None:
            writer.announce()
        try:
            params = method.check(msg.get("params") or {})
            ctx = self.rt.context(params.get("context") or {})
            resp = ok(req_id, method.fn(self.rt, Request(req_id, method.name, params, ctx,
                                                          replay, gone)))
        except Exception as e:
            resp = self._failed(req_id, method, e)
        finally:
            if writer is not None:
                writer.withdraw()
        log.debug("%s %.1f ms", method.name, (time.perf_counter() - started) * 1000)
        return resp

    def job_method(self, msg: dict[str, Any]) -> Method | None:
        """The method of a request that may be run as a write job (`Method.job`), or None."""
        name = msg.get("method")
        method = self.methods.get(name) if isinstance(name, str) else None
        return method if method is not None and method.job is not None else None

    def prepare_job(self, msg: dict[str, Any]) -> Job:
        """A request of a method with a write job (`job_method`), checked and prepared
        (redaction, checks) as `handle` would: its write, its refusal, or neither (it needs
        its whole handler). Nothing is written here: the server runs the write in its round
        (`Writer.open_round`) and answers with `answer`."""
        method = self.job_method(msg)
        assert method is not None and method.job is not None
        req_id = msg.get("id")
        try:
            params = method.check(msg.get("params") or {})
            ctx = self.rt.context(params.get("context") or {})
            fn = method.job(self.rt, Request(req_id, method.name, params, ctx))
        except Exception as e:
            return Job(req_id, method, answer=self._failed(req_id, method, e))
        return Job(req_id, method, fn)

    def answer(self, job: Job, outcome: tuple[bool, Any]) -> dict[str, Any]:
        """The answer to a prepared job's request once its write ran: (True, result) or
        (False, the error), as `handle` answers."""
        good, value = outcome
        return ok(job.req_id, value) if good else self._failed(job.req_id, job.method, value)

    def _failed(self, req_id: Any, method: Method, e: BaseException) -> dict[str, Any]:
        """The error answer for what a handler raised."""
        if isinstance(e, Db0Error):
            return err(req_id, e)
        if isinstance(e, ShapeError):  # a nested value a handler checked against a shape
            got = f", got {e.got}" if e.got else ""
            return err(req_id, Db0Error("bad_request", f"{method.name}: '{e.path}' must be "
                                        f"{e.expects}{got}", "fix that value and send again"))
        if isinstance(e, StoreError):
            return err(req_id, Db0Error(e.code, e.message, e.hint))
        known = operational(self.rt, e)
        if known is not None:
            log.warning("%s: %s (%s)", method.name, known.code, type(e).__name__)
            return err(req_id, known)
        log.error("%s failed", method.name, exc_info=e)  # the traceback, never memory text
        return err(req_id, Db0Error("internal", f"{method.name} failed: {type(e).__name__}",
                                    f"see the daemon log: {self.rt.paths.log_file}"))

"""The late-interaction component: stores every memory's token vectors in the background and
scores recall's top results against a query by MaxSim (store/lateint.py).

Idle until a late-interaction encoder is installed (`db0 model install --late`). Then its
thread, below request threads, finds memories without current token vectors (the table is the
queue, as for the embedder: a crash loses nothing), encodes them a batch at a time on one
llama.cpp context and writes them through the writer. A request never encodes a memory: it
encodes only the query (a second 1-thread context, under a lock) and reads stored vectors;
memories whose vectors are not made yet keep their first-stage place.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from db0.daemon.core.config import Config
from db0.daemon.core.runtime import Component, PolledCount, Runtime

log = logging.getLogger("db0.late")
BATCH = 16          # memories encoded per write
MAX_CHARS = 2000    # a memory's first 2,000 characters (the encoder keeps 256 tokens)


class LateService(Component):
    name = "late"
    background = True
    interval = 60.0  # a rescan finds writes that came without a wake (sync, say)

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        self._docs: Any = None       # the thread's encoder
        self._query: Any = None      # request threads' encoder, under _qlock
        self._sha = ""
        self._qsha = ""
        self._qlock = threading.Lock()
        self.encoded = 0
        self._pending = PolledCount()  # what waits, for status (counting reads every row)
        self.error: str | None = None
        self.by_default = False  # [recall] late
        # Whether the last look found an encoder installed (unknown at start: look once).
        # Without one, a commit does not wake the thread: `db0 model install --late` does.
        self.installed = True
        self.looks = 0

    def apply_config(self, cfg: Config) -> None:
        self.by_default = cfg.recall.late

    def wanted(self, asked: bool) -> bool:
        """Whether a recall or pack uses the stage: asked for, or on by config with an encoder
        installed (then a missing encoder is no error)."""
        return asked or (self.by_default and self._info() is not None)

    def on_start(self) -> None:
        assert self.rt.writer is not None
        self.rt.writer.after_commit.append(self._on_commit)

    def _on_commit(self, result: Any) -> None:
        if self.installed and isinstance(result, dict):  # a memory write (ours return a count)
            self.wake()

    def on_stop(self) -> None:
        for enc in (self._docs, self._query):
            if enc is not None:
                enc.close()
        self._docs = self._query = None

    def _info(self) -> Any:
        from db0.daemon.models import registry as models

        return models.late(self.rt.paths.models_dir)

    def status(self) -> dict[str, Any]:
        from db0.store import lateint

        info = self._info()
        out: dict[str, Any] = {"model": info.name if info else None, "encoded": self.encoded,
                               "by_default": self.by_default, "looks": self.looks}
        if info is not None:
            sha = info.sha256

            def count() -> int:
                with self.rt.reader() as store:
                    return lateint.count_pending(store, sha)

            out["pending"] = self._pending.get(sha, self.encoded, self.rt.commits, count)
        if self.error:
            out["error"] = self.error
        return out

    def tick(self) -> None:
        from db0.daemon.models.lateenc import LateEncoder
        from db0.store import lateint

        self.looks += 1
        info = self._info()
        self.installed = info is not None
        if info is None:
            return
        if self._docs is None or self._sha != info.sha256:
            if self._docs is not None:
                self._docs.close()
            self._docs = LateEncoder(info.path, 1)
            self._sha = info.sha256
        enc, sha = self._docs, self._sha
        while not self.stopping:
            with self.rt.reader() as store:
                todo = lateint.pending(store, sha, BATCH)
            if not todo:
                return
            rows = [(rid, chash, lateint.pack(enc.doc(text[:MAX_CHARS])))
                    for rid, text, chash in todo]

            def job(s: Any, rows: list[tuple[int, str, bytes]] = rows) -> int:
                return lateint.save(s, sha, int(enc.dim), rows)

            self.rt.write(job)
            self.encoded += len(rows)

    def scores(self, query: str, ids: list[str]) -> tuple[str, dict[str, float]] | None:
        """(model name, MaxSim score of each of `ids` that has current token vectors), or None
        with no late-interaction encoder installed."""
        from db0.daemon.models.lateenc import LateEncoder
        from db0.store import lateint

        info = self._info()
        if info is None:
            return None
        with self.rt.reader() as store:
            docs = lateint.load(store, ids, info.sha256)
        if not docs:
            return str(info.name), {}
        with self._qlock:
            if self._query is None or self._qsha != info.sha256:
                if self._query is not None:
                    self._query.close()
                self._query = LateEncoder(info.path, 1)
                self._qsha = info.sha256
            q = self._query.query(query)
        order = list(docs)
        s = lateint.maxsim(q, [docs[i] for i in order])
        return str(info.name), {i: float(v) for i, v in zip(order, s, strict=True)}

"""The embedder component: one thread that gives every memory a vector from the current model.

The queue is the database itself: memories without an up-to-date vector for the target model
(store/vectors.py). Commits only hint which ids to look at first, and a scan of the table (at
start, after a model change, after writes that name no ids, and once a minute when idle) finds
the rest, so a crash or `kill -9` loses nothing: the next start resumes where the rows say.
What is waiting is taken in batches, texts already embedded by this model (same content hash)
are copied, not embedded again, and the vectors are written through the one writer. A text
embedded as a query moments before it is stored (a hook embeds the prompt it then keeps as a
turn) is not embedded again either: the last query vectors are kept by the hash of their text.

Two models can be loaded at once. `target` is the registry's current model: vectors are made
with it. `active` is the model whose vectors recall searches: the target once every memory has
its vector, until then the previous model (recorded in `meta.embedding_active`), so a switch
never degrades search to a half-built index; memories made during a switch are found by keyword
until it completes. With no model installed, recall is keyword-only and says so once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from db0.daemon.core.config import Config
from db0.daemon.core.runtime import Beside, Component, PolledCount, Runtime, lower_priority
from db0.daemon.protocol import Db0Error, describe
from db0.store import db as dbmod

if TYPE_CHECKING:
    from db0.store.core import Store

log = logging.getLogger("db0.embed")
ACTIVE_KEY = "embedding_active"
NO_MODEL_NOTICE = "no embedding model: run db0 model install"
MAX_CHARS = 8000          # longer texts are cut before tokenizing (the model sees 512 tokens)
# A query is embedded from at most this many tokens, its start and its end (Embedder.clip):
# its embedding runs on the request path (every prompt, for the hook), and its cost grows
# faster than its length (docs/performance.md); MiniLM, the default model, was trained on
# texts of at most 128 tokens.
QUERY_TOKENS = 128
RECENT_QUERIES = 256      # query vectors kept for a memory of the same text (a hook's turn)
RESCAN_S = 60.0           # the safety-net look for rows nothing named, above the floor
FULL_RESCAN_S = 3600.0    # ... and over every row
PERSIST_CHANGES = 5000  # the index file is rewritten after this many changes ...
PERSIST_S = 600.0       # ... or this long after the last write, whichever comes first
# The embedder gives way to a stream of requests' writes (_give_way): while more than
# YIELD_WRITES of them were committed in each of the last YIELD_S-long windows, it waits,
# embedding a batch at least every YIELD_MAX_S.
YIELD_S = 0.2
YIELD_WRITES = 20
YIELD_MAX_S = 5.0
# Ids a commit names are kept as hints up to this many; past it (no model to take them, or a
# backlog that outruns the embedder) the op log (_feed) finds the rest, so the list is bounded.
MAX_HINTS = 10_000


@dataclass
class Loaded:
    name: str
    sha256: str
    path: Path
    dim: int
    model_id: int
    embedder: Any             # batch embedding (the embedder thread only; None until needed)
    query: Any                # query embedding: a 1-thread context (request threads, qlock)
    index: Any                # store.vecindex.VecIndex (changed on the embedder thread only)
    qlock: threading.Lock
    workers: list[Any] = field(default_factory=list)  # more 1-thread batch contexts
    floor: float = -1.0       # the similarity unrelated texts reach (search.QueryVector.floor)


class EmbeddingService(Component):
    name = "embedder"
    background = True  # catching up never takes a core from a request (recall's query vector
    #                    is made on the query thread, at a request's priority)

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        self.batch = 64
        self.threads = 2
        self.group_chars = 160            # characters per llama.cpp call (~40 tokens)
        self.target: Loaded | None = None
        self.active: Loaded | None = None
        self.state = "starting"
        self.error: str | None = None
        self.embedded = 0                 # vectors made since start (for rates)
        self.copied = 0                   # vectors reused from the content-hash cache
        self.queries = 0                  # query vectors made (recall, pack, the hooks)
        # The last query vectors, by (model id, hash of the text as stored): a memory whose
        # text was just embedded as a query takes that vector (the query copy of the same
        # model) instead of being embedded again.
        self._recent: dict[tuple[int, str], bytes] = {}
        self._notice_given = False
        self._hints: list[str] = []
        # Where the next scan for memories without a vector looks: _scan asks for one; rows at
        # or below _floor were all embedded at the last complete scan (a write since names its
        # ids, or is found through the op log, _feed below), so the periodic safety-net scan
        # looks only above it; _top is the newest row when the current scan began.
        self._scan = True
        self._cursor: int | None = None
        self._floor = 0
        self._top = 0
        # A write that names no ids (a hook event, a checkpoint, sync) sets _feed: the memories
        # it touched are read from the op log above _seq (every change to a memory logs an op,
        # whose seq only grows), so finding them costs the changes, not a scan of every row.
        self._feed = False
        self._seq = 0
        self._last_full = time.monotonic()
        self._asked = 1                   # reloads asked for, and done: loading while they differ
        self._done = 0
        self._guard = threading.Lock()
        self._cond = threading.Condition()
        self._last_scan = time.monotonic()
        self._persisted = time.monotonic()
        self._sync_changed = False
        self.building = False             # a big partition's graph is being built
        self._drained = False             # the last look found nothing waiting (no hint since)
        self._live: tuple[int, int] | None = None  # (writer commits, live memories) then
        self._pending = PolledCount()  # what waits, for status (counting reads every row)
        # Query vectors are made here, one at a time (one query context), so that the request
        # that asked goes on reading the store meanwhile (query_vector_soon). Its thread is
        # started in on_start, by the thread that starts the components: it runs at a
        # request's priority, never inheriting the embedder's lowered one.
        self._queries = ThreadPoolExecutor(1, thread_name_prefix="db0-query")
        self._window = (0.0, 0, 0)  # (start, writes in it, writes in the one before)
        self._batched = 0.0  # when the last batch ended
        self._beside: Beside | None = None  # places the query thread (on_start)

    # -- component protocol ------------------------------------------------------------------

    def apply_config(self, cfg: Config) -> None:
        self.threads = cfg.embed.threads
        self.batch = cfg.embed.batch
        self.group_chars = cfg.embed.group_chars

    def on_start(self) -> None:
        assert self.rt.writer is not None
        self.rt.writer.after_commit.append(self._on_commit)
        self.interval = 0.0
        # its thread, started here (see __init__)
        self._beside = Beside(self._queries.submit(threading.get_native_id).result())

    def on_stop(self) -> None:
        self._queries.shutdown(wait=False)
        with self._cond:
            self._cond.notify_all()
        try:
            self._persist_if_due(force=True)
        except Exception:  # the file is a cache: the next start rebuilds or catches up
            log.exception("embedder: writing the vector index at stop failed")
        self._leave_drained_mark()

    # The drained mark: written at a clean stop when nothing was waiting for a vector, read
    # (and removed) at the next load. If nothing changed in between (vectors.changes_mark), the
    # daemon starts knowing nothing waits instead of scanning every memory to find that out
    # (a pass over all rows that model.status would wait for). A killed daemon leaves none.

    def _mark_path(self) -> Path:
        return self.rt.paths.data_dir / "vectors" / "drained"

    def _leave_drained_mark(self) -> None:
        t = self.target
        with self._guard:
            drained = self._drained and not self._hints and not self._scan and not self._feed
        if t is None or not drained:
            return
        from db0.store import vectors

        try:
            with self.rt.reader() as store:
                mark = f"{t.model_id}:{vectors.changes_mark(store)}"
            tmp = self._mark_path().with_suffix(".tmp")
            tmp.write_text(mark)
            tmp.replace(self._mark_path())
        except Exception:  # only a start-up shortcut
            log.exception("embedder: leaving the drained mark failed")

    def _take_drained_mark(self, t: Loaded) -> bool:
        """Whether the mark left at the last stop says nothing waits for `t` (and is gone)."""
        from db0.store import vectors

        path = self._mark_path()
        try:
            mark = path.read_text()
            path.unlink()
        except OSError:
            return False
        with self.rt.reader() as store:
            return mark == f"{t.model_id}:{vectors.changes_mark(store)}"

    def status(self) -> dict[str, Any]:
        t, a = self.target, self.active
        out: dict[str, Any] = {
            "state": self.state, "model": t.name if t else None, "dim": t.dim if t else None,
            "pending": self.pending() if t else None,
            "searching_with": a.name if a else None,
            "embedded": self.embedded, "reused": self.copied, "queries": self.queries,
        }
        if a is not None:
            out["index"] = {"vectors": len(a.index), "graphs_owed": a.index.graphs_owed(),
                            "building_graphs": self.building}
        if t is not None and a is not None and a.model_id != t.model_id:
            out["switch"] = self.progress()
        if self.error:
            out["error"] = self.error
        return out

    # -- what request handlers use -----------------------------------------------------------

    def vectors_changed(self) -> None:
        """Vectors came in from elsewhere (a sync pull): catch the indexes up soon."""
        self._sync_changed = True
        self._wake.set()

    def reload(self) -> None:
        """Re-read the registry's current model (after install or `model use`)."""
        with self._guard:
            self._asked += 1
            self._drained = False
        self._wake.set()

    def serves(self, info: Any) -> bool:
        """Whether the model embedded with is the registry's `info` (the same file, the same
        contents): False with none loaded."""
        t = self.target
        return t is not None and t.path == Path(info.path) and t.sha256 == _sha(info)

    def wait_loaded(self, timeout: float = 120.0) -> None:
        """Block until the models asked for so far are loaded (loading takes about a second)."""
        with self._guard:
            asked = self._asked
        deadline = time.monotonic() + timeout
        while self._done < asked and time.monotonic() < deadline and not self._stop.is_set():
            with self._cond:
                self._cond.wait(0.05)

    def pending(self) -> int:
        """How many memories wait for a vector of the target model (runtime.PolledCount: the
        last count less the vectors made since while counting is costly)."""
        t = self.target
        if t is None or self._drained:
            return 0  # counting is a pass over every memory: not when nothing can be waiting
        from db0.store import vectors

        mid = t.model_id

        def count() -> int:
            with self.rt.reader() as store:
                return vectors.pending_count(store, mid)

        return self._pending.get(mid, self.embedded + self.copied, self.rt.commits, count)

    def progress(self) -> dict[str, Any]:
        """How far the target model is: memories with its vectors out of all."""
        t = self.target

        total = self._live_count()
        left = self.pending() if t else total
        return {"model": t.name if t else None, "done": total - left, "total": total,
                "from": self.active.name if self.active else None,
                "complete": t is not None and left == 0 and self.active is t}

    def _live_count(self) -> int:
        """Memories not forgotten, counted again only after a commit (at 1M the count reads
        a whole index; model.status is polled)."""
        commits = self.rt.commits
        known = self._live
        if known is not None and known[0] == commits:
            return known[1]
        with self.rt.reader() as store:
            total = int(dbmod.scalar(
                store.conn, "SELECT count(*) FROM memories INDEXED BY memories_live_hash "
                "WHERE forgotten_ts IS NULL"))
        self._live = (commits, total)
        return total

    def notices(self) -> list[str]:
        """A one-time notice when recall runs without a model."""
        if self.active is None and self.state == "no model" and not self._notice_given:
            self._notice_given = True
            return [NO_MODEL_NOTICE]
        return []

    def query_vector(self, text: str) -> Any:
        """The query embedded by the active model, as a store.search.QueryVector, or None."""
        a = self.active
        if a is None:
            return None
        from db0.store.search import QueryVector

        started = time.perf_counter()
        with a.qlock:
            arr, cut = a.query.query(text[:MAX_CHARS], QUERY_TOKENS)
            self.queries += 1
        took = (time.perf_counter() - started) * 1000
        if not cut:  # a memory of this text gets this vector; not one of a shortened text
            self._keep_recent(a.model_id, text, arr)
        return QueryVector(a.model_id, arr, a.index, took_ms=took, floor=a.floor)

    def query_vector_soon(self, text: str,
                          then: Callable[[Any], Callable[[], None] | None] | None = None
                          ) -> Callable[[], Any] | None:
        """query_vector(text) begun on the query thread, or None without a model: call the
        result for the vector (again and again: the same one; its error, if it failed). The
        caller reads the store meanwhile (recall's keyword side needs no vector): llama.cpp
        runs without the GIL, so the two overlap. A recall's CPU is the same, its wait shorter.
        `then(vector)` runs on the same thread once the vector is made, before it is handed
        over; what it returns runs there right after the handing over (store.search.
        vector_prelude: the index's graph walks, also without the GIL, while the caller scores
        the rest). If either fails, the vector is handed over as it is."""
        if self.active is None:
            return None
        if self._beside is not None:
            self._beside.place()
        handed: Future[Any] = Future()

        def never_ran(job: Future[None]) -> None:  # cancelled at shutdown: no one waits on
            if not handed.done():
                handed.set_exception(Db0Error(
                    "shutting_down", "the daemon stopped before the query was embedded",
                    "run the command again (it starts the daemon)"))
        self._queries.submit(self._query_then, text, then, handed).add_done_callback(never_ran)
        return handed.result

    def _query_then(self, text: str, then: Callable[[Any], Callable[[], None] | None] | None,
                    handed: Future[Any]) -> None:
        after = None
        try:
            qv = self.query_vector(text)
            if then is not None and qv is not None:
                try:
                    after = then(qv)
                except Exception:  # the recall searches on its own thread instead
                    log.exception("embedder: the search begun beside the query failed")
        except BaseException as e:
            handed.set_exception(e)
            if not isinstance(e, Exception):
                raise
            return
        handed.set_result(qv)
        if after is not None:
            try:
                after()
            except Exception:  # its search waits for nothing: Early keeps the error
                log.exception("embedder: the search begun beside the query failed")

    def _keep_recent(self, model_id: int, text: str, vec: Any) -> None:
        from db0.store import vectors
        from db0.store.memories import content_hash

        key = (model_id, content_hash(text))
        with self._guard:
            self._recent.pop(key, None)
            self._recent[key] = vectors.to_blob(vec)
            while len(self._recent) > RECENT_QUERIES:
                del self._recent[next(iter(self._recent))]

    def _take_recent(self, model_id: int, hashes: list[str]) -> dict[str, bytes]:
        with self._guard:
            return {h: b for h in hashes if (b := self._recent.pop((model_id, h), None))}

    def vector_of(self, memory_id: str) -> Any:
        """A memory's own stored vector from the active model, as a QueryVector (None when it
        has none yet): near-duplicates are found with it, nothing is embedded again."""
        a = self.active
        if a is None:
            return None
        from db0.store import vectors
        from db0.store.search import QueryVector

        with self.rt.reader() as store:
            row = store.conn.execute(
                "SELECT v.vector FROM memory_vectors v JOIN memories m ON m.rid=v.rid "
                "AND m.content_hash=v.content_hash WHERE m.id=? AND v.model_id=?",
                (memory_id, a.model_id)).fetchone()
        if row is None:
            return None
        return QueryVector(a.model_id, vectors.from_blob(bytes(row[0])), a.index)

    def embed_texts(self, texts: list[str]) -> tuple[str, list[list[float]]]:
        """Embed texts with the active model (for other features: near-duplicates, rerank)."""
        a = self.active
        if a is None:
            raise Db0Error("no_model", "no embedding model is loaded", "run: db0 model install")
        with a.qlock:
            return a.name, a.query.embed([t[:MAX_CHARS] for t in texts])

    def wait_for(self, ids: list[str], timeout: float) -> None:
        """Block until these memories have vectors from the target model (or time runs out)."""
        from db0.store import vectors

        deadline = time.monotonic() + timeout
        while True:
            with self._guard:
                loading = self._done < self._asked
            t = self.target
            if t is None and not loading:
                return  # no model: nothing will ever be embedded, keyword search has them
            if t is not None:
                with self.rt.reader() as store:
                    if not vectors.pending_of(store, t.model_id, ids):
                        return
                with self._guard:
                    self._hints.extend(ids)
                self._wake.set()
            left = deadline - time.monotonic()
            if left <= 0:
                raise Db0Error("timeout", f"embedding not done after {timeout:g}s",
                               "it continues in the background; see db0 daemon status")
            # The server's stop comes first: it lets requests in flight finish (up to 30 s)
            # before stopping the components, and this request would be one of them.
            if self.stopping:
                raise Db0Error("shutting_down", "the daemon stopped before the embeddings were "
                               "done; what was written is kept and embedded at the next start",
                               "db0 daemon start, then db0 model status")
            with self._cond:
                self._cond.wait(min(left, 0.5))

    # -- the thread --------------------------------------------------------------------------

    def _on_commit(self, result: Any) -> None:
        if not isinstance(result, dict):
            return  # our own vector writes, and jobs that return nothing
        ids = result.get("ids")
        if ids is None and isinstance(result.get("id"), str):
            ids = [result["id"]]
        with self._guard:
            if isinstance(ids, list) and len(self._hints) + len(ids) <= MAX_HINTS:
                self._hints.extend(str(i) for i in ids)
            else:
                self._feed = True
            self._drained = False
        now = time.monotonic()
        start, n, before = self._window
        if now - start >= YIELD_S:  # a new window: the last one counts if it just ended
            self._window = (now, 1, n if now - start < 2 * YIELD_S else 0)
        else:
            self._window = (start, n + 1, before)
        # Without a model (and none being loaded) a wake-up would find nothing to do: each one
        # costs the request path a GIL hand-off, once a commit. A model loaded later scans.
        if self.target is not None or self._done < self._asked:
            self._wake.set()

    def tick(self) -> None:
        """One round: load what was asked for, embed a batch, or go idle until woken (or until
        the next rescan, which finds writes that named no ids)."""
        try:
            with self._guard:
                asked = self._asked
            if self._done < asked:
                try:
                    self._load()
                finally:
                    self._done = asked
                    with self._cond:
                        self._cond.notify_all()
            if self.target is None:
                self._idle(None)
                return
            if self._step():
                self._last_scan = time.monotonic()
                self.interval = 0.0
                return
            self._promote_if_done()
            if self._sync_changed:
                self._sync_changed = False
                self._catch_up()
            self._settle()  # searchable now; a graph build below does not change that
            self._persist_if_due()
            self._idle(max(1.0, RESCAN_S - (time.monotonic() - self._last_scan)))
            if time.monotonic() - self._last_scan >= RESCAN_S:
                with self._guard:
                    self._scan = True  # a safety net: writes since already cleared _drained
                    if time.monotonic() - self._last_full >= FULL_RESCAN_S:
                        self._floor = 0  # now and then, every row
                        self._last_full = time.monotonic()
                self._last_scan = time.monotonic()
        except Exception as e:
            if self.stopping:
                return
            log.exception("embedder: %s", e)
            self.error = describe(e)
            self.interval = 5.0

    def _settle(self) -> None:
        if self.target is not None:
            self.state = "ready" if self.active is self.target else "switching"
        with self._cond:
            self._cond.notify_all()

    def _idle(self, timeout: float | None) -> None:
        self._settle()
        self.interval = timeout if timeout is not None else 3600.0

    def _step(self) -> bool:
        """Embed one batch of what waits; False when nothing does."""
        from db0.store import vectors

        t = self.target
        assert t is not None
        with self._guard:
            hints, self._hints = self._hints[:4 * self.batch], self._hints[4 * self.batch:]
            scan = self._scan
        rows: list[tuple[int, str, str]] = []
        with self.rt.reader() as store:
            if not hints:
                hints = self._read_feed(store)
            if hints:
                rows = vectors.pending_of(store, t.model_id, hints)
            if not rows and scan:
                if self._cursor is None:
                    self._top = int(dbmod.scalar(store.conn, "SELECT max(rid) FROM memories")
                                    or 0)
                rows = vectors.pending_batch(store, t.model_id, self.batch, self._cursor,
                                             self._floor)
                if rows:
                    self._cursor = rows[-1][0]
                else:
                    with self._guard:
                        self._scan = False
                        self._floor = max(self._floor, self._top)
                    self._cursor = None
        if not rows:
            with self._guard:
                more = bool(self._hints) or self._scan or self._feed
                self._drained = not more
            return more
        self.state = "embedding" if self.active is t else "switching"
        for i in range(0, len(rows), self.batch):
            self._give_way()
            if self._stop.is_set():
                return True
            self._embed(t, rows[i:i + self.batch])
            self._batched = time.monotonic()
        return True

    def _give_way(self) -> None:
        """Before a batch: wait while requests' writes stream in (`_streaming`), for at most
        YIELD_MAX_S since the last batch ended. Rule: at nice 10 the embedder still shares
        the cores' caches and the GIL with the request path, and a stream of writes is what
        it slows (docs/bench-issue-17-writes.md); a trickle of writes never holds it back."""
        while (self._streaming() and time.monotonic() - self._batched < YIELD_MAX_S
               and not self.stopping):
            time.sleep(YIELD_S / 2)

    def _streaming(self) -> bool:
        start, n, before = self._window
        age = time.monotonic() - start
        if age >= 2 * YIELD_S:
            return False  # no write for a whole window
        if age >= YIELD_S:
            return n > YIELD_WRITES
        return n > YIELD_WRITES or before > YIELD_WRITES

    def _read_feed(self, store: Store) -> list[str]:
        """The ids of the next page of memories changed since _seq (the op log), when a write
        that named no ids asked for it. The flag is cleared before reading, so a commit that
        sets it again meanwhile is read now or at the next step, never missed."""
        with self._guard:
            if not self._feed:
                return []
            self._feed = False
        page = 4 * self.batch
        got = store.conn.execute("SELECT seq, memory_id FROM ops WHERE seq > ? ORDER BY seq "
                                 "LIMIT ?", (self._seq, page)).fetchall()
        if got:
            self._seq = int(got[-1][0])  # type: ignore[arg-type]
        if len(got) == page:
            with self._guard:
                self._feed = True
        return list(dict.fromkeys(str(m) for _, m in got if m is not None))

    def _catch_up(self) -> None:
        """Bring the loaded indexes up to the rows (what was just written, and what others
        changed: purges, sync, a model drop); only this thread changes an index."""
        for loaded in {id(x): x for x in (self.target, self.active) if x}.values():
            with self.rt.reader() as store:
                loaded.index.catch_up(store)

    def _persist_if_due(self, force: bool = False) -> None:
        """Write the indexes' files once enough changed (or at stop), then let the change
        log go up to what every file includes. Rows are written first and quickly; the graphs
        of big partitions are built afterwards, only when nothing waits to be embedded and
        not at stop (a stop cuts a build short; the next idle moment builds it)."""
        from db0.store import vecindex

        live = [x for x in {id(x): x for x in (self.target, self.active) if x}.values()]
        due = [x for x in live if x.index.pending and (
            force or x.index.pending >= PERSIST_CHANGES
            or time.monotonic() - self._persisted > PERSIST_S)]
        for loaded in due:
            loaded.index.persist(graphs=False)
        owed = [] if force else [x for x in live if x.index.graphs_owed()]
        for loaded in owed:
            self.building = True
            try:
                loaded.index.persist(threads=self.threads, cancel=lambda: self.stopping)
            finally:
                self.building = False
        if due or owed:
            self._persisted = time.monotonic()
            if force:  # at stop the writer is closing: the next persist prunes the log
                return
            upto = min(x.index.seq for x in live)
            self.rt.write(lambda s: vecindex.prune_changes(s, upto))

    def _embed(self, t: Loaded, rows: list[tuple[int, str, str]]) -> None:
        from db0.store import vectors

        with self.rt.reader() as store:
            have = vectors.cached(store, t.model_id, [h for _, _, h in rows])
        have.update(self._take_recent(t.model_id, [h for _, _, h in rows if h not in have]))
        todo: dict[str, str] = {}
        for _, content, h in rows:
            if h not in have:
                todo.setdefault(h, content[:MAX_CHARS])
        if todo:
            made = self._embed_parallel(t, list(todo.values()))
            for h, vec in zip(todo, made, strict=True):
                have[h] = vectors.to_blob(vec)
        out = [(rid, h, have[h]) for rid, _, h in rows]
        self.rt.write(lambda s: vectors.put(s, t.model_id, out))
        self._catch_up()
        self.embedded += len(todo)
        self.copied += len(rows) - len(todo)
        with self._cond:
            self._cond.notify_all()

    def _batch_contexts(self, t: Loaded) -> list[Any]:
        """The model's batch contexts, loaded at first use: one 1-thread context per thread
        asked for, run side by side (_embed_parallel)."""
        if t.embedder is None:
            from db0.daemon.models.embedder import Embedder

            t.workers = [Embedder(str(t.path), 1) for _ in range(self.threads - 1)]
            t.embedder = Embedder(str(t.path), 1)
        return [t.embedder, *t.workers]

    def _embed_parallel(self, t: Loaded, texts: list[str]) -> list[list[float]]:
        """Split the texts between the 1-thread batch contexts, one Python thread each
        (llama.cpp releases the GIL while it computes). Never one multi-thread context: its
        threads spin waiting for each other when the cores are shared (docs/performance.md)."""
        contexts = self._batch_contexts(t)
        if len(contexts) == 1 or len(texts) < 2 * len(contexts):
            return self._embed_grouped(t.embedder, texts)
        n = len(contexts)
        shards = [texts[i::n] for i in range(n)]
        results: list[list[list[float]]] = [[] for _ in range(n)]
        errors: list[BaseException] = []

        def work(i: int) -> None:
            if i:
                lower_priority()  # a helper thread of the background embedder
            try:
                results[i] = self._embed_grouped(contexts[i], shards[i])
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=work, args=(i,), name=f"db0-embed-{i}")
                   for i in range(1, n)]
        for th in threads:
            th.start()
        work(0)
        for th in threads:
            th.join()
        if errors:
            raise errors[0]
        out: list[list[float]] = [[] for _ in texts]
        for i in range(n):
            out[i::n] = results[i]
        return out

    def _embed_grouped(self, embedder: Any, texts: list[str]) -> list[list[float]]:
        """Embed in small groups of at most `group_chars` characters: a BERT batch attends over
        all its tokens at once, so big groups cost more than they save; only short texts share
        a call (docs/performance.md)."""
        out: list[list[float]] = []
        group: list[str] = []
        size = 0
        for text in texts:
            if group and size + len(text) > self.group_chars:
                out += embedder.embed(group)
                group, size = [], 0
            group.append(text)
            size += len(text)
        if group:
            out += embedder.embed(group)
        return out

    def _promote_if_done(self) -> None:
        t, a = self.target, self.active
        if t is None or a is t:
            return
        from db0.store import vectors

        with self.rt.reader() as store:
            if vectors.pending_count(store, t.model_id):
                with self._guard:
                    self._scan = True
                    self._floor = 0
                    self._drained = False
                return
        self.rt.write(lambda s: dbmod.meta_set(s.conn, ACTIVE_KEY, str(t.model_id)))
        log.info("embedding model %s is ready; recall now uses it (was %s)", t.name,
                 a.name if a else None)
        self.active = t
        self.state = "ready"

    # -- models ------------------------------------------------------------------------------

    def _load(self) -> None:
        """Load the registry's current model as target, and the model search uses as active."""
        from db0.daemon.models import registry as models

        self.state = "loading"
        self.error = None
        mdir = self.rt.paths.models_dir
        info = models.current(mdir)
        if info is None:
            self.target = self.active = None
            self.state = "no model"
            gone = models.missing_current(mdir)
            if gone is None:
                log.info("no embedding model installed; recall is keyword-only")
            else:
                self.error = gone.line()
                log.warning("%s; recall is keyword-only meanwhile", self.error)
            return
        t = self.target
        if t is None or not self.serves(info):
            t = self.target = self._open(info)
        with self.rt.reader() as store:
            raw = dbmod.meta_get(store.conn, ACTIVE_KEY)
        active_id = int(raw) if raw and raw.isdigit() else None
        if active_id is None or active_id == t.model_id:
            self.active = t
        elif self.active is None or self.active.model_id != active_id:
            self.active = self._open_by_id(active_id) or t
        if self.active is t and active_id != t.model_id:
            self.rt.write(lambda s: dbmod.meta_set(s.conn, ACTIVE_KEY, str(t.model_id)))
        drained = self.active is t and self._take_drained_mark(t)
        with self.rt.reader() as store:  # the scan below, or the mark, covers every op so far
            seq = int(dbmod.scalar(store.conn, "SELECT max(seq) FROM ops") or 0)
            top = int(dbmod.scalar(store.conn, "SELECT max(rid) FROM memories") or 0)
        with self._guard:
            self._scan = not drained
            self._drained = drained
            self._floor = top if drained else 0
            self._feed, self._seq = False, seq
        self._cursor = None
        log.info("embedding with %s (%d dimensions); recall searches %s", t.name, t.dim,
                 self.active.name)

    def _open_by_id(self, model_id: int) -> Loaded | None:
        """The previous model, for search during a switch, if its file is still installed."""
        from db0.daemon.models import registry as models

        with self.rt.reader() as store:
            row = store.conn.execute("SELECT name, sha256 FROM embed_models WHERE model_id=?",
                                     (model_id,)).fetchone()
        if row is None:
            return None
        for info in models.list_models(self.rt.paths.models_dir):
            if info.name == row[0] and _sha(info) == row[1]:
                try:
                    return self._open(info)
                except Exception:
                    log.exception("could not load the previous model %s", info.name)
        return None

    def _open(self, info: Any) -> Loaded:
        from db0.daemon.models.embedder import Embedder, query_copy
        from db0.store import vectors

        path = Path(info.path)
        # Queries: a 1-thread context; a 2-thread one was slower in the daemon even on an idle
        # machine (docs/performance.md). The batch contexts are loaded when there is something
        # to embed (_batch_contexts): search does not wait for them, and a start with nothing
        # waiting never loads them.
        query = Embedder(str(query_copy(path, self.rt.paths.models_dir / "query",
                                        list(UNRELATED))), 1)
        name, sha, dim = str(info.name), _sha(info), int(query.dim)
        mid = self.rt.write(lambda s: vectors.model_id(s, name, sha, dim))
        from db0.store import vecindex

        with self.rt.reader() as store:
            index = vecindex.VecIndex.open(store, self.rt.paths.data_dir / "vectors" /
                                           f"model-{mid}", mid, dim, graphs=False)
        # A graph without its coarse lists (made before them, or their file damaged) is
        # searched without them until the next persist makes them: said here, once.
        log.info("loaded embedding model %s from %s (%d vectors in the index, %s; %d graphs, "
                 "%d with their coarse lists)", name, path, len(index), index.opened_from,
                 len(index.graphs), sum(p in index.lists for p in index.graphs))
        loaded = Loaded(name, sha, path, dim, mid, None, query, index, threading.Lock())
        loaded.floor = _noise_floor(query)
        log.info("%s: unrelated texts reach a similarity of %.3f", name, loaded.floor)
        return loaded


# Texts about nothing in common, one per line: the highest similarity two of them reach with a
# model is the bar a memory found by meaning alone must clear.
UNRELATED = (
    "The invoice is due on the first Monday of next month.",
    "Photosynthesis turns light into chemical energy in plants.",
    "He tuned the guitar before the concert started.",
    "zzqqxx vbnm qwrtp",
    "The ferry to the island leaves every two hours.",
    "Add two cups of flour and stir until smooth.",
    "The server returned a 503 error during the deploy.",
    "Penguins huddle together to survive the Antarctic winter.",
    "My grandmother knits scarves for the whole family.",
    "The committee postponed the vote until Thursday.",
    "Quantum tunnelling lets particles cross energy barriers.",
    "She painted the fence a bright shade of green.",
)


def _noise_floor(embedder: Any) -> float:
    import numpy as np

    m = np.asarray(embedder.embed(list(UNRELATED)), dtype=np.float32)
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    sims = m @ m.T
    np.fill_diagonal(sims, -1.0)
    return float(sims.max())


def _sha(info: Any) -> str:
    return str(getattr(info, "sha256", "") or "")


"""store/vecindex.py on a real SQLite store: scoped search equals brute force, big partitions
reach recall@10 >= 0.98 through their graph, and a stale, corrupt or half-written index file is
detected and rebuilt from the database."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import vm_steps

from db0.store import memories, vecindex, vectors
from db0.store.context import Context, visible_partitions
from db0.store.core import Store

DIM = 32


def unit(rng: np.random.Generator, n: int, centres: np.ndarray | None = None) -> np.ndarray:
    """Clustered unit vectors (like sentence embeddings: many near neighbours, not uniform)."""
    if centres is None:
        centres = rng.normal(size=(16, DIM)).astype(np.float32)
    v = centres[rng.integers(0, len(centres), n)] + 0.6 * rng.normal(size=(n, DIM))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def remember_many(store: Store, ctx: Context, items: list[dict[str, object]]) -> None:
    """The store's batch write, before and after store/write.py took it over."""
    try:
        from db0.store import write  # type: ignore[attr-defined]
    except ImportError:
        memories.remember_many(store, ctx, [memories.validate(i) for i in items])
    else:
        write.remember_many(store, ctx, [write.prepare(i) for i in items])


def fill(store: Store, owners: dict[tuple[str, str], int], seed: int = 1) -> int:
    """Memories in the given (scope, owner) partitions, each with a vector; the model id."""
    rng = np.random.default_rng(seed)
    with store.transaction():
        mid = vectors.model_id(store, "test-model", "0" * 64, DIM)
    i = 0
    for (scope, owner), n in owners.items():
        ctx = Context("u", agent=owner if scope == "agent" else "default",
                      session=owner if scope == "session" else None)
        for s in range(0, n, 500):
            items: list[dict[str, object]] = [
                {"content": f"memory {i + j} of {owner} ({seed})", "scope": scope}
                for j in range(min(500, n - s))]
            i += len(items)
            with store.transaction():
                remember_many(store, ctx, items)
                rows = store.conn.execute(
                    "SELECT rid, content_hash FROM memories m WHERE NOT EXISTS (SELECT 1 FROM "
                    "memory_vectors v WHERE v.rid=m.rid)").fetchall()
                vecs = unit(rng, len(rows))
                vectors.put(store, mid, [(int(r), str(h), vectors.to_blob(v))
                                         for (r, h), v in zip(rows, vecs, strict=True)])
    return mid


def brute(store: Store, mid: int, q: np.ndarray, parts: list[tuple[str, str]] | None,
          n: int) -> list[tuple[int, float]]:
    where = "1" if parts is None else " OR ".join(
        f"(m.scope='{s}' AND m.owner='{o}')" for s, o in parts)
    rows = store.conn.execute(
        f"SELECT v.rid, v.vector FROM memory_vectors v JOIN memories m ON m.rid=v.rid "
        f"WHERE v.model_id=? AND ({where})", (mid,)).fetchall()
    rids = np.array([r for r, _ in rows], dtype=np.int64)
    sims = np.array([vectors.from_blob(b) @ q for _, b in rows], dtype=np.float32)
    top = np.lexsort((rids, -sims))[:n]
    return [(int(rids[i]), float(1 - sims[i])) for i in top]


def same(got: list[tuple[int, float]], want: list[tuple[int, float]],
         idx: vecindex.VecIndex | None = None) -> None:
    """The same rids and distances; with `idx`, a row of its graphs may have its int8
    distance, within the bound the file stores (the module's "Exactness")."""
    assert [r for r, _ in got] == [r for r, _ in want]
    slack = np.full(len(got), 1e-5)
    if idx is not None:
        rows = idx.base.rows_of(np.array([r for r, _ in got], dtype=np.int64))
        for i, row in enumerate(rows.tolist()):
            if row >= 0 and idx.base.in_graph[row]:
                slack[i] += float(idx.base.resid[row])
    assert (np.abs(np.array([d for _, d in got]) - [d for _, d in want]) <= slack).all()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.open(tmp_path / "db0.sqlite3")
    yield s
    s.close()


def test_scoped_search_is_brute_force(store: Store, tmp_path: Path) -> None:
    owners = {("agent", f"a{i}"): 150 for i in range(6)} | {("user", "u"): 400}
    mid = fill(store, owners)
    idx = vecindex.VecIndex.open(store, tmp_path / "vx", mid, DIM)
    assert idx.opened_from == "rebuilt" and len(idx) == sum(owners.values())
    rng = np.random.default_rng(9)
    for q in unit(rng, 20):
        for parts in ([("agent", "a3")], [("agent", "a1"), ("user", "u")], None):
            same(idx.search(q, 10, parts, store=store), brute(store, mid, q, parts, 10))
        # Without the store the int8 scores still find nearly the same memories.
        approx = {r for r, _ in idx.search(q, 10, [("user", "u")])}
        assert len(approx & {r for r, _ in brute(store, mid, q, [("user", "u")], 10)}) >= 8
    assert idx.count([("agent", "a0"), ("agent", "nobody")]) == 150
    assert idx.search(unit(rng, 1)[0], 5, [("agent", "nobody")], store=store) == []


def test_allowed_rids_and_changes(store: Store, tmp_path: Path) -> None:
    mid = fill(store, {("agent", "a"): 300, ("agent", "b"): 300})
    idx = vecindex.VecIndex.open(store, tmp_path / "vx", mid, DIM)
    rng = np.random.default_rng(3)
    q = unit(rng, 1)[0]
    allowed = [int(r) for (r,) in store.conn.execute(
        "SELECT rid FROM memories WHERE owner='a' AND rid % 3 = 0")]
    got = idx.search(q, 7, allowed_rids=allowed, store=store)
    assert {r for r, _ in got} <= set(allowed) and len(got) == 7
    want = sorted(((1 - float(vectors.from_blob(b) @ q)), int(r)) for r, b in store.conn.execute(
        "SELECT rid, vector FROM memory_vectors WHERE rid IN (SELECT value FROM json_each(?))",
        (str(allowed),)))[:7]
    assert [r for r, _ in got] == [r for _, r in want]
    # The same through the int8 rows (partitions and rids both given), and with nothing allowed
    # from another partition.
    same(idx.search(q, 7, [("agent", "a")], allowed, store=store), got)
    assert idx.search(q, 7, [("agent", "b")], allowed, store=store) == []
    # A replaced vector and a removed one: the delta wins over the file, before and after
    # persisting, and the query's nearest is what was just added.
    top = got[0][0]
    idx.add([top], (-q)[None, :], [("agent", "a")])
    idx.add([10_000_001], q[None, :], [("agent", "a")])
    idx.remove([got[1][0]])
    idx.remove([got[2][0], got[2][0], got[1][0]])  # twice in one call, and one already gone
    # `pending` counts the rows as they die: the same as counting the flags.
    assert idx.pending == idx.delta.n + int(idx.base.dead.sum()) == 2 + 3
    idx.remove([got[2][0]])
    for _ in range(2):
        res = idx.search(q, 400, [("agent", "a")])
        rids = [r for r, _ in res]
        assert rids[0] == 10_000_001 and rids[-1] == top and got[1][0] not in rids
        assert got[2][0] not in rids
        assert idx.count([("agent", "a")]) == 299
        idx.persist()
    assert idx.pending == 0


def test_allowed_rids_spread_over_partitions_whose_rids_interleave(store: Store,
                                                                   tmp_path: Path) -> None:
    """Rows are stored by (partition, rid): a set of rids in rid order that covers two whole
    partitions written in turns is a permutation of a contiguous run of rows, not a slice."""
    mid = fill(store, {("agent", "a"): 100, ("agent", "b"): 100})
    fill(store, {("agent", "a"): 100, ("agent", "b"): 100}, seed=2)
    idx = vecindex.VecIndex.open(store, tmp_path / "vx", mid, DIM)
    parts = [("agent", "a"), ("agent", "b")]
    allowed = [int(r) for (r,) in store.conn.execute("SELECT rid FROM memories")]
    for q in unit(np.random.default_rng(4), 10):
        same(idx.search(q, 10, parts, allowed, store=store), brute(store, mid, q, parts, 10))


def test_given_rids_are_scored_from_codes_in_a_graph_and_exactly_elsewhere(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`allowed_rids` without partitions (a recall's neighbours): a row of a big partition's
    graph gets its int8 distance, within the bound its file stores; every other row, its
    float32 distance; a rid without a vector, nothing."""
    pytest.importorskip("usearch")
    monkeypatch.setattr(vecindex, "BIG", 1_000)
    mid = fill(store, {("user", "u"): 1_500, ("agent", "small"): 200})
    idx = vecindex.VecIndex.open(store, tmp_path / "vx", mid, DIM)
    assert set(idx.graphs) == {idx.pid_of[("user", "u")]}
    big = [int(r) for (r,) in store.conn.execute(
        "SELECT rid FROM memories WHERE scope='user' AND rid % 7 = 0")]
    small = [int(r) for (r,) in store.conn.execute(
        "SELECT rid FROM memories WHERE scope='agent' AND rid % 3 = 0")]
    b = idx.base
    for q in unit(np.random.default_rng(6), 10):
        exact = dict(brute(store, mid, q, None, 10_000))
        got = idx.search(q, 1_000, allowed_rids=big + small + [99_999_999], store=store)
        assert sorted(r for r, _ in got) == sorted(big + small)
        assert [d for _, d in got] == sorted(d for _, d in got)
        for r, d in got:
            if r in small:
                assert abs(d - exact[r]) <= 1e-6
            else:
                row = int(b.rows_of(np.array([r]))[0])
                assert abs(d - exact[r]) <= float(b.resid[row]) + 1e-5
        assert any(abs(d - exact[r]) > 1e-6 for r, d in got if r in big)  # not re-read


def walked(idx: vecindex.VecIndex, q: np.ndarray, n: int, parts: Any) -> vecindex.Early:
    """A search begun and its graph walks run, on this thread."""
    early = idx.begin(q, n, parts)
    idx.walk(early)
    return early


def test_a_search_begun_early_is_finished_with_the_answer_of_its_time(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`begin` and `walk`, then `search(early=)`, answers as `search` would have when the
    search began; a search that asks for something else (another n, other partitions) ignores
    it and searches the index as it is now."""
    pytest.importorskip("usearch")
    monkeypatch.setattr(vecindex, "BIG", 1_000)
    mid = fill(store, {("user", "u"): 1_500, ("agent", "small"): 200})
    idx = vecindex.VecIndex.open(store, tmp_path / "vx", mid, DIM)
    user, small = ("user", "u"), ("agent", "small")
    assert idx.has_graph([user, small]) and idx.has_graph(None)
    assert not idx.has_graph([small]) and not idx.has_graph([("agent", "nobody")])
    parts = [user, small]
    for q in unit(np.random.default_rng(8), 10):
        early = walked(idx, q, 60, parts)
        same(idx.search(q, 60, parts, store=store, early=early),
             idx.search(q, 60, parts, store=store))
    q = unit(np.random.default_rng(9), 1)[0]
    early = walked(idx, q, 20, iter(parts))  # any iterable, as search takes
    idx.add([20_000_000], q[None, :], [user])  # the nearest of all, added afterwards
    assert idx.search(q, 20, parts, store=store, early=early)[0][0] != 20_000_000
    for asked in ((21, parts), (20, [user]), (20, None)):
        assert idx.search(q, asked[0], asked[1], store=store, early=early)[0][0] == 20_000_000
    assert idx.search(q, 20, parts, store=store, early=walked(idx, q, 20, parts)
                      )[0][0] == 20_000_000
    empty = walked(idx, q, 20, [("agent", "nobody")])
    assert idx.search(q, 20, [("agent", "nobody")], store=store, early=empty) == []


def counted_walks(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                  ) -> tuple[int, vecindex.VecIndex, list[int]]:
    """A user partition with a graph beside the default agent's few memories; the model id,
    the index, and a list that grows by one at every walk of the graph."""
    monkeypatch.setattr(vecindex, "BIG", 1_000)
    mid = fill(store, {("user", "u"): 1_500, ("agent", "default"): 200})
    idx = vecindex.VecIndex.open(store, tmp_path / "vx", mid, DIM)
    walks: list[int] = []
    walk = idx._graph_candidates
    monkeypatch.setattr(idx, "_graph_candidates", lambda *a: walks.append(1) or walk(*a))
    return mid, idx, walks


@pytest.mark.usefixtures("still_clock")
def test_recall_with_its_vector_search_begun_beside_the_embedding_ranks_the_same(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """search.vector_prelude begins a recall's vector search and hands back its graph walk
    (the daemon runs both on the thread that embedded the query, the walk after handing the
    vector over): the recall ranks exactly as it would have, walking no graph itself when
    the walk is done already or still running on another thread, and walking for itself
    when the walk has not begun (which then does nothing); without a graph in sight, the
    prelude does nothing."""
    pytest.importorskip("usearch")
    from db0.store import search

    mid, idx, walks = counted_walks(store, tmp_path, monkeypatch)
    ctx = Context("u")
    for k, q in zip((10, 30, 60), unit(np.random.default_rng(10), 3), strict=True):
        plain = search.recall(store, ctx, "memory", k, qvec=search.QueryVector(mid, q, idx))
        assert len(walks) == 1 and len(plain) == k
        counted = idx._graph_candidates
        for when in ("before", "running", "after"):
            qv = search.QueryVector(mid, q, idx)
            walk = search.vector_prelude(ctx, None, k)(qv)
            assert qv.early is not None and walk is not None and len(walks) == 1
            if when == "before":
                walk()
            elif when == "running":  # begun, and still running when the recall needs it
                inside, release = threading.Event(), threading.Event()

                def slow(*a: Any, inside: threading.Event = inside,
                         release: threading.Event = release, counted: Any = counted) -> Any:
                    inside.set()
                    assert release.wait(30)
                    return counted(*a)
                monkeypatch.setattr(idx, "_graph_candidates", slow)
                beside = threading.Thread(target=walk)
                beside.start()
                assert inside.wait(30)
                threading.Timer(0.2, release.set).start()
            ahead = search.recall(store, ctx, "memory", k, qvec=qv)
            if when == "running":
                beside.join()
                monkeypatch.setattr(idx, "_graph_candidates", counted)
            elif when == "after":  # the recall came first and walked: nothing left to do
                walk()
                assert qv.early.walked.cancelled()
            assert len(walks) == 2  # walked once, by whoever came first
            assert [(r["id"], r["score"]) for r in ahead] == \
                [(r["id"], r["score"]) for r in plain]
            walks.pop()
        walks.clear()
    qv = search.QueryVector(mid, q, idx)
    assert search.vector_prelude(ctx, search.Filters(scopes=["agent"]), 10)(qv) is None
    assert qv.early is None and not walks


def test_a_search_whose_early_walk_failed_or_never_ran_walks_for_itself(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An Early whose walk raised, or that nobody walks, does not lose the search or hang it:
    the search walks the graph itself and answers as a plain search (and a walk begun
    after that does nothing)."""
    pytest.importorskip("usearch")
    _, idx, walks = counted_walks(store, tmp_path, monkeypatch)
    parts = [("user", "u"), ("agent", "default")]
    q = unit(np.random.default_rng(12), 1)[0]
    want = idx.search(q, 30, parts, store=store)
    failing = idx.begin(q, 30, parts)
    graph_pool = idx._graph_pool
    monkeypatch.setattr(idx, "_graph_pool", lambda *a: 1 / 0)
    idx.walk(failing)  # keeps its error
    assert isinstance(failing.walked.exception(), ZeroDivisionError)
    monkeypatch.setattr(idx, "_graph_pool", graph_pool)
    walks.clear()
    assert idx.search(q, 30, parts, store=store, early=failing) == want and len(walks) == 1
    never = idx.begin(q, 30, parts)
    assert idx.search(q, 30, parts, store=store, early=never) == want and len(walks) == 2
    idx.walk(never)
    assert never.walked.cancelled() and len(walks) == 2


@pytest.mark.parametrize("second_stage", [False, True])
def test_a_pack_finishes_the_search_its_prelude_began(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        second_stage: bool) -> None:
    """The daemon prepares a pack's first recall with vector_prelude(..., pack.first_k(...)):
    that recall, with or without a second stage, walks no graph of its own."""
    pytest.importorskip("usearch")
    from db0.store import pack, search

    mid, idx, walks = counted_walks(store, tmp_path, monkeypatch)
    ctx = Context("u")
    qv = search.QueryVector(mid, unit(np.random.default_rng(11), 1)[0], idx)
    walk = search.vector_prelude(ctx, search.Filters(), pack.first_k(second_stage))(qv)
    assert walk is not None and not walks
    walk()
    assert len(walks) == 1
    out = pack.pack(store, ctx, "memory", 60, "md", search.Filters(), qvec=qv,
                    reorder=(lambda found: None) if second_stage else None)
    assert out["items"] and len(walks) == 1


def test_big_partition_uses_a_graph_with_high_recall(store: Store, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("usearch")
    monkeypatch.setattr(vecindex, "BIG", 1_000)
    mid = fill(store, {("user", "u"): 5_000, ("agent", "small"): 200})
    idx = vecindex.VecIndex.open(store, tmp_path / "vx", mid, DIM)
    assert set(idx.graphs) == {idx.pid_of[("user", "u")]}
    rng = np.random.default_rng(5)
    hits = []
    for q in unit(rng, 50):
        want = {r for r, _ in brute(store, mid, q, [("user", "u")], 10)}
        got = idx.search(q, 10, [("user", "u")], store=store)
        hits.append(len(want & {r for r, _ in got}) / 10)
        same(idx.search(q, 10, [("agent", "small")], store=store),
             brute(store, mid, q, [("agent", "small")], 10))
    assert np.mean(hits) >= 0.98
    # Rows added after the graph was built are found (exactly) until it is rebuilt.
    q = unit(rng, 1)[0]
    idx.add([20_000_000], q[None, :], [("user", "u")])
    assert idx.search(q, 1, [("user", "u")])[0][0] == 20_000_000
    idx.persist()
    assert idx.search(q, 1, [("user", "u")])[0][0] == 20_000_000
    again = vecindex.VecIndex.open(store, tmp_path / "vx", mid, DIM)
    assert again.opened_from == "rebuilt"  # 20_000_000 is no memory: the count disagrees


def test_a_partition_named_twice_is_searched_once(store: Store, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A context that names a partition twice (a session among its own ancestors) gets each
    row once: the same answer as naming it once, graph or not."""
    pytest.importorskip("usearch")
    monkeypatch.setattr(vecindex, "BIG", 1_000)
    mid = fill(store, {("user", "u"): 1_500, ("agent", "small"): 200})
    idx = vecindex.VecIndex.open(store, tmp_path / "vx", mid, DIM)
    assert set(idx.graphs) == {idx.pid_of[("user", "u")]}
    for q in unit(np.random.default_rng(9), 10):
        for parts in ([("user", "u")], [("agent", "small")], [("user", "u"), ("agent", "small")]):
            once = idx.search(q, 40, parts, store=store)
            twice = idx.search(q, 40, parts + parts, store=store)
            assert twice == once and len({r for r, _ in twice}) == 40


def near_copies(store: Store, n: int, meanings: int, rng: np.random.Generator
                ) -> tuple[int, np.ndarray]:
    """A user partition of n memories, each one of `meanings` tight clusters of near-copies
    (a fact stored by many agents); the model id and the cluster centres."""
    centres = rng.normal(size=(meanings, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    with store.transaction():
        mid = vectors.model_id(store, "test-model", "0" * 64, DIM)
    for s in range(0, n, 2_000):
        with store.transaction():
            remember_many(store, Context("u"), [{"content": f"copy {s + j}", "scope": "user"}
                                                for j in range(min(2_000, n - s))])
            rows = store.conn.execute(
                "SELECT rid, content_hash FROM memories m WHERE NOT EXISTS (SELECT 1 FROM "
                "memory_vectors v WHERE v.rid=m.rid)").fetchall()
            v = centres[np.arange(s, s + len(rows)) % meanings] + 0.02 * rng.normal(
                size=(len(rows), DIM))
            v = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
            vectors.put(store, mid, [(int(r), str(h), vectors.to_blob(x))
                                     for (r, h), x in zip(rows, v, strict=True)])
    return mid, centres


def test_a_graph_reaches_the_cluster_of_near_copies_a_query_is_in(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A partition where each meaning is stored 200 times over (tight clusters of near-copies:
    their graph neighbours all point inside the cluster): the best vector the graph finds is
    as close as the exact best, short of a few queries in a hundred."""
    pytest.importorskip("usearch")
    monkeypatch.setattr(vecindex, "BIG", 1_000)
    rng = np.random.default_rng(7)
    mid, centres = near_copies(store, 10_000, 50, rng)
    idx = vecindex.VecIndex.open(store, tmp_path / "vx", mid, DIM)
    assert set(idx.graphs) == {idx.pid_of[("user", "u")]}
    every = np.stack([vectors.from_blob(b) for (b,) in store.conn.execute(
        "SELECT vector FROM memory_vectors WHERE model_id=?", (mid,))])
    queries = centres[rng.integers(0, 50, 200)] + 0.5 * rng.normal(size=(200, DIM))
    missed = 0
    for q in (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32):
        best = 1.0 - float((every @ q).max())  # the exact nearest distance
        missed += idx.search(q, 10, [("user", "u")], store=store)[0][1] > best + 0.05
    assert missed <= 2, missed  # of 200; a beam of 128 missed 12


def test_the_lists_find_the_cluster_of_near_copies_a_narrow_beam_misses(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A graph's rows are also filed in coarse lists, each list one run of the file: with them
    recall@10 against exact search is >= 0.98 and no query misses its cluster, even with a
    beam so narrow that the graph alone misses clusters (which shows what the lists do)."""
    pytest.importorskip("usearch")
    monkeypatch.setattr(vecindex, "BIG", 1_000)
    monkeypatch.setattr(vecindex, "LIST_ROWS", 40)
    rng = np.random.default_rng(17)
    mid, centres = near_copies(store, 8_000, 200, rng)
    idx = vecindex.VecIndex.open(store, tmp_path / "vx", mid, DIM)
    pid = idx.pid_of[("user", "u")]
    lists = idx.lists[pid]
    assert len(lists.centroids) == 8_000 // 40
    assert sorted(lists.rids.tolist()) == sorted(np.asarray(idx.graphs[pid].keys).tolist())
    for c in range(len(lists.centroids)):  # a list is one contiguous run of rows
        rows = np.sort(idx.base.rows_of(lists.rids[lists.starts[c]:lists.starts[c + 1]]))
        assert len(rows) == 0 or (rows[0] >= 0 and (np.diff(rows) == 1).all())
    for g in idx.graphs.values():
        g.expansion_search = 8
    every = np.stack([vectors.from_blob(b) for (b,) in store.conn.execute(
        "SELECT vector FROM memory_vectors WHERE model_id=? ORDER BY rid", (mid,))])
    rids = np.array([r for (r,) in store.conn.execute(
        "SELECT rid FROM memory_vectors WHERE model_id=? ORDER BY rid", (mid,))])
    queries = centres[rng.integers(0, 200, 100)] + 0.15 * rng.normal(size=(100, DIM))
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)

    def measure() -> tuple[float, int]:
        hits, missed = [], 0
        for q in queries:
            sims = every @ q
            want = set(rids[np.argsort(-sims)[:10]].tolist())
            got = idx.search(q, 10, [("user", "u")], store=store)
            hits.append(len(want & {r for r, _ in got}) / 10)
            missed += got[0][1] > 1.0 - float(sims.max()) + 0.05
        return float(np.mean(hits)), missed

    recall, missed = measure()
    assert recall >= 0.98 and missed == 0, (recall, missed)
    idx.lists = {}  # the graph alone, same beam
    recall, missed = measure()
    assert missed > 0, (recall, missed)


def test_a_graph_made_before_lists_gets_them_at_the_next_persist(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file whose graph has no lists (written before they existed) opens as it is; the
    index owes them, and the next persist files the graph's rows in lists without rebuilding
    the graph; lists that do not check out (corrupt, missing) are left out the same way,
    without a rebuild."""
    pytest.importorskip("usearch")
    monkeypatch.setattr(vecindex, "BIG", 500)
    monkeypatch.setattr(vecindex, "LIST_ROWS", 50)
    mid = fill(store, {("user", "u"): 1_500, ("agent", "a"): 100})
    d = tmp_path / "vx"
    idx = vecindex.VecIndex.open(store, d, mid, DIM)
    pid = idx.pid_of[("user", "u")]
    assert "lists" in idx.graph_files[pid] and not idx.graphs_owed()
    idx.lists = {}
    del idx.graph_files[pid]["lists"]
    idx.persist(graphs=False)  # the file of an older db0: a graph, no lists
    assert {p.suffix for p in d.iterdir()} == {".idx", ".usearch"}
    old = vecindex.VecIndex.open(store, d, mid, DIM)
    assert old.opened_from == "file" and old.lists == {} and old.graphs_owed()
    graph_file = old.graph_files[pid]["file"]
    old.persist()
    assert old.graph_files[pid]["file"] == graph_file and not old.graphs_owed()
    assert len(old.lists[pid].rids) == 1_500
    assert all(p.stat().st_mode & 0o077 == 0 for p in d.iterdir())  # the owner's alone
    again = vecindex.VecIndex.open(store, d, mid, DIM)
    assert again.opened_from == "file" and len(again.lists[pid].centroids) == 1_500 // 50
    q = unit(np.random.default_rng(4), 1)[0]
    got = {r for r, _ in again.search(q, 10, [("user", "u")], store=store)}
    assert len(got & {r for r, _ in brute(store, mid, q, [("user", "u")], 10)}) >= 9
    for damage in ("flip", "missing"):
        lists_file = d / again.graph_files[pid]["lists"]["file"]
        if damage == "missing":
            lists_file.unlink()
        else:
            with open(lists_file, "r+b") as f:
                f.seek(lists_file.stat().st_size // 2)
                b = f.read(1)
                f.seek(lists_file.stat().st_size // 2)
                f.write(bytes([b[0] ^ 0x01]))
        hurt = vecindex.VecIndex.open(store, d, mid, DIM)
        assert hurt.opened_from == "file" and hurt.lists == {} and hurt.graphs_owed(), damage
        assert hurt.graph_files[pid]["file"] == graph_file
        assert len({r for r, _ in hurt.search(q, 10, [("user", "u")], store=store)}
                   & {r for r, _ in brute(store, mid, q, [("user", "u")], 10)}) >= 9
        hurt.persist()
        again = vecindex.VecIndex.open(store, d, mid, DIM)
        assert again.opened_from == "file" and len(again.lists[pid].rids) == 1_500, damage


def test_a_partition_grown_past_big_before_a_persist_is_owed_its_graph(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows added since the file was written count: a partition that grew past BIG in the
    index's memory is owed its graph at once, not after the next rows-only persist."""
    pytest.importorskip("usearch")
    monkeypatch.setattr(vecindex, "BIG", 500)
    monkeypatch.setattr(vecindex, "GRAPH_STALE_MIN", 100)
    mid = fill(store, {("user", "u"): 400})
    idx = vecindex.VecIndex.open(store, tmp_path / "vx", mid, DIM)
    assert not idx.graphs_owed()
    rng = np.random.default_rng(3)
    idx.add(list(range(10_000_000, 10_000_300)), unit(rng, 300), [("user", "u")] * 300)
    assert idx.graphs_owed()
    idx.persist()
    assert idx.graphs and not idx.graphs_owed()


def test_graph_is_extended_in_place(store: Store, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Past GRAPH_STALE, a persist adds the new rows to the old graph and drops the keys whose
    vector changed; the graph then finds them itself."""
    pytest.importorskip("usearch")
    monkeypatch.setattr(vecindex, "BIG", 500)
    monkeypatch.setattr(vecindex, "GRAPH_STALE_MIN", 0)
    mid = fill(store, {("user", "u"): 2_000})
    d = tmp_path / "vx"
    idx = vecindex.VecIndex.open(store, d, mid, DIM)
    old_file = next(iter(idx.graph_files.values()))["file"]
    rng = np.random.default_rng(11)
    q = unit(rng, 1)[0]
    first = int(store.conn.execute("SELECT min(rid) FROM memories").fetchone()[0])
    with store.transaction():  # a changed vector, and 200 new memories
        h = store.conn.execute("SELECT content_hash FROM memories WHERE rid=?",
                               (first,)).fetchone()[0]
        vectors.put(store, mid, [(first, h, vectors.to_blob(-q))])
    fill(store, {("user", "u"): 200}, seed=2)
    idx.catch_up(store)
    idx.persist()
    g = next(iter(idx.graphs.values()))
    assert next(iter(idx.graph_files.values()))["file"] != old_file and len(g) == 2_200
    assert idx.base.in_graph.all()
    lists = next(iter(idx.lists.values()))  # extended with the graph: the same rows
    assert sorted(lists.rids.tolist()) == sorted(np.asarray(g.keys).tolist())
    far = idx.search(-q, 1, [("user", "u")], store=store)
    assert far[0][0] == first and far[0][1] == pytest.approx(0.0, abs=1e-5)
    hits = []
    for v in unit(rng, 30):
        want = {r for r, _ in brute(store, mid, v, [("user", "u")], 10)}
        hits.append(len(want & {r for r, _ in idx.search(v, 10, [("user", "u")],
                                                        store=store)}) / 10)
    assert np.mean(hits) >= 0.98
    assert vecindex.VecIndex.open(store, d, mid, DIM).opened_from == "file"


def test_rebuild_without_graphs_is_exact_until_persist(store: Store, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A rebuild at start can skip the slow graph build: big partitions are searched exactly
    (brute force's answer) until a persist builds their graphs."""
    pytest.importorskip("usearch")
    monkeypatch.setattr(vecindex, "BIG", 500)
    mid = fill(store, {("user", "u"): 1_500})
    idx = vecindex.VecIndex.rebuild(store, tmp_path / "vx", mid, DIM, graphs=False)
    assert idx.graphs == {}
    q = unit(np.random.default_rng(8), 1)[0]
    same(idx.search(q, 10, [("user", "u")], store=store), brute(store, mid, q, [("user", "u")], 10))
    idx.persist()
    assert set(idx.graphs) == {idx.pid_of[("user", "u")]}
    assert vecindex.VecIndex.open(store, tmp_path / "vx", mid, DIM).opened_from == "file"


def test_rows_first_then_graphs(store: Store, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A quick persist writes rows and keeps the old graph (rows outside it scanned exactly);
    the graph build owed afterwards can be cut short and leaves a consistent index; an index
    far behind the database is rebuilt at open rather than replayed into memory."""
    pytest.importorskip("usearch")
    monkeypatch.setattr(vecindex, "BIG", 500)
    monkeypatch.setattr(vecindex, "GRAPH_STALE_MIN", 50)
    d = tmp_path / "vx"
    mid = fill(store, {("user", "u"): 1_000})
    idx = vecindex.VecIndex.open(store, d, mid, DIM, graphs=False)
    pid = idx.pid_of[("user", "u")]
    assert idx.graphs == {} and idx.graphs_owed()
    idx.persist()
    assert set(idx.graphs) == {pid} and not idx.graphs_owed()
    first = idx.graph_files[pid]
    fill(store, {("user", "u"): 400}, seed=2)
    idx.catch_up(store)
    idx.persist(graphs=False)  # rows only: the old graph stays, the new rows are outside it
    assert idx.pending == 0 and idx.graph_files[pid] == first and idx.graphs_owed()
    rng = np.random.default_rng(5)
    for q in unit(rng, 10):
        got = {r for r, _ in idx.search(q, 10, [("user", "u")], store=store)}
        want = {r for r, _ in brute(store, mid, q, [("user", "u")], 10)}
        assert len(got & want) >= 9
    idx.persist(cancel=lambda: True)  # cut short: the old graph, still owed
    assert idx.graph_files[pid] == first and idx.graphs_owed()
    assert vecindex.VecIndex.open(store, d, mid, DIM).opened_from == "file"
    idx.persist()
    assert idx.graph_files[pid] != first and not idx.graphs_owed()
    # Far behind: more changes since the file than REBUILD_BEHIND and half its rows.
    monkeypatch.setattr(vecindex, "REBUILD_BEHIND", 100)
    fill(store, {("agent", "a"): 900}, seed=3)
    again = vecindex.VecIndex.open(store, d, mid, DIM, graphs=False)
    assert again.opened_from == "rebuilt" and again.pending == 0 and len(again) == 2_300
    q = unit(rng, 1)[0]
    same(again.search(q, 10, [("agent", "a")], store=store),
         brute(store, mid, q, [("agent", "a")], 10))


def test_reopen_catches_up_with_the_database(store: Store, tmp_path: Path) -> None:
    mid = fill(store, {("agent", "a"): 200, ("agent", "b"): 200})
    d = tmp_path / "vx"
    vecindex.VecIndex.open(store, d, mid, DIM).close()
    # Written while no index was open: a new vector, a changed one, a purge (cascade), and a
    # memory moved to another owner.
    rng = np.random.default_rng(4)
    q = unit(rng, 1)[0]
    a_rids = [int(r) for (r,) in store.conn.execute(
        "SELECT rid FROM memories WHERE owner='a' ORDER BY rid")]
    with store.transaction():
        h = store.conn.execute("SELECT content_hash FROM memories WHERE rid=?",
                               (a_rids[0],)).fetchone()[0]
        vectors.put(store, mid, [(a_rids[0], h, vectors.to_blob(q))])
        store.conn.execute("DELETE FROM memories WHERE rid=?", (a_rids[1],))
        store.conn.execute("UPDATE memories SET owner='b' WHERE rid=?", (a_rids[2],))
    idx = vecindex.VecIndex.open(store, d, mid, DIM)
    assert idx.opened_from == "file"
    assert idx.count([("agent", "a")]) == 198 and idx.count([("agent", "b")]) == 201
    for parts in ([("agent", "a")], [("agent", "b")]):
        same(idx.search(q, 10, parts, store=store), brute(store, mid, q, parts, 10))
    assert idx.search(q, 1, [("agent", "a")], store=store)[0][0] == a_rids[0]


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "other-model", "pruned",
                                    "ahead"])
def test_stale_or_corrupt_file_is_rebuilt(store: Store, tmp_path: Path, damage: str) -> None:
    mid = fill(store, {("agent", "a"): 300})
    d = tmp_path / "vx"
    first = vecindex.VecIndex.open(store, d, mid, DIM)
    path = d / vecindex.MAIN
    size = path.stat().st_size
    if damage == "flip":  # one bit in the vectors
        with open(path, "r+b") as f:
            f.seek(size - 1000)
            b = f.read(1)
            f.seek(size - 1000)
            f.write(bytes([b[0] ^ 0x10]))
    elif damage == "truncate":
        os.truncate(path, size // 2)
    elif damage == "garbage":
        path.write_bytes(os.urandom(4096))
    elif damage == "other-model":
        with store.transaction():
            mid = vectors.model_id(store, "other", "1" * 64, DIM)
            rows = store.conn.execute("SELECT rid, content_hash, vector FROM memory_vectors"
                                      ).fetchall()
            vectors.put(store, mid, [(int(r), str(h), bytes(b)) for r, h, b in rows])
    elif damage == "pruned":  # the log no longer reaches back to the file
        rid = int(store.conn.execute("SELECT min(rid) FROM memories").fetchone()[0])
        with store.transaction():
            store.conn.execute("UPDATE memory_vectors SET vector=? WHERE rid=?",
                               (vectors.to_blob(np.ones(DIM) / np.sqrt(DIM)), rid))
            vecindex.prune_changes(store, vecindex.change_seq(store))
    elif damage == "ahead":  # the database went back in time (a restored backup)
        first.seq += 5
        first.persist()
    idx = vecindex.VecIndex.open(store, d, mid, DIM)
    assert idx.opened_from == "rebuilt", damage
    q = unit(np.random.default_rng(2), 1)[0]
    same(idx.search(q, 10, [("agent", "a")], store=store),
         brute(store, mid, q, [("agent", "a")], 10))
    assert vecindex.VecIndex.open(store, d, mid, DIM).opened_from == "file"


def test_half_written_file_is_never_trusted(store: Store, tmp_path: Path) -> None:
    """A writer killed mid-way leaves a temporary file, never a torn `vectors.idx`; a torn file
    put in its place (a copy cut short) is refused, and strays are swept."""
    mid = fill(store, {("agent", "a"): 300})
    d = tmp_path / "vx"
    vecindex.VecIndex.open(store, d, mid, DIM).close()
    good = (d / vecindex.MAIN).read_bytes()
    (d / f"{vecindex.MAIN}.999.tmp").write_bytes(good[: len(good) // 3])
    again = vecindex.VecIndex.open(store, d, mid, DIM)
    assert again.opened_from == "file"
    for cut in (10, len(good) // 2, len(good) - 1):
        (d / vecindex.MAIN).write_bytes(good[:cut])
        assert vecindex.VecIndex.open(store, d, mid, DIM).opened_from == "rebuilt"
    assert not list(d.glob("*.tmp"))


KILLER = """
import sys
from pathlib import Path
from db0.store import vecindex
from db0.store.core import Store
store = Store.open(Path(sys.argv[1]))
if sys.argv[5] == "graphs":  # every persist writes a new graph and new lists
    vecindex.BIG, vecindex.GRAPH_STALE_MIN, vecindex.GRAPH_STALE = 1_000, -1, -1.0
idx = vecindex.VecIndex.open(store, Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
print("ready", flush=True)
while True:
    idx.persist()
"""


@pytest.mark.parametrize("what", ["rows", "graphs"])
def test_kill_during_persist_leaves_a_trusted_file(tmp_path: Path, what: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """kill -9 at random moments of a persist loop (rows only, or a new graph and new lists
    every time): the next open finds the old file or the new one, whole, with the graph and
    lists it names (never rebuilt, never a wrong answer)."""
    import signal
    import subprocess
    import sys
    import time

    if what == "graphs":
        pytest.importorskip("usearch")
        monkeypatch.setattr(vecindex, "BIG", 1_000)
    path = tmp_path / "db0.sqlite3"
    store = Store.open(path)
    mid = fill(store, {("agent", "a"): 3_000, ("agent", "b"): 3_000})
    d = tmp_path / "vx"
    vecindex.VecIndex.open(store, d, mid, DIM).close()
    rng = np.random.default_rng(12)
    seen = set()
    for delay in (0.05, 0.13, 0.29, 0.41):
        p = subprocess.Popen([sys.executable, "-c", KILLER, str(path), str(d), str(mid),
                              str(DIM), what], stdout=subprocess.PIPE, env=os.environ.copy())
        assert p.stdout is not None and p.stdout.readline().strip() == b"ready"
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        idx = vecindex.VecIndex.open(store, d, mid, DIM)
        assert idx.opened_from == "file"
        assert len(idx.lists) == len(idx.graphs) == (2 if what == "graphs" else 0)
        seen.add(frozenset(str(g) for g in idx.graph_files.values()))
        q = unit(rng, 1)[0]
        same(idx.search(q, 10, [("agent", "b")], store=store),
             brute(store, mid, q, [("agent", "b")], 10), idx)
        idx.close()
    assert what == "rows" or len(seen) > 1  # the killed loops did write new graphs and lists
    store.close()


def test_visible_partitions() -> None:
    ctx = Context("u", agent="bot", session="s2", lineage=(("s1", 5.0),))
    assert visible_partitions(ctx) == [
        ("user", "u"), ("agent", "bot"), ("session", "s2"), ("session", "s1")]
    assert visible_partitions(ctx, ["agent"]) == [("agent", "bot")]


def test_a_text_already_embedded_is_found_by_its_hash_at_a_cost_that_does_not_grow(
        store: Store) -> None:
    """The embedder reuses a vector made for the same text (vectors.cached) before embedding a
    batch; that lookup runs for every batch, one remember included, so it must cost the texts
    asked about, not a pass over the model's vectors."""
    def lookup(hashes: list[str]) -> tuple[dict[str, bytes], int]:
        return vm_steps(store.conn, lambda: vectors.cached(store, mid, hashes))

    mid = fill(store, {("agent", "a"): 200})
    rows = store.conn.execute("SELECT content_hash, vector FROM memory_vectors "
                              "ORDER BY rid LIMIT 3").fetchall()
    asked = [str(h) for h, _ in rows] + ["0" * 64]
    got, small = lookup(asked)
    assert got == {str(h): bytes(b) for h, b in rows}
    assert lookup([])[0] == {}
    fill(store, {("agent", "b"): 3000}, seed=2)
    got, big = lookup(asked)
    assert got == {str(h): bytes(b) for h, b in rows}
    assert big <= 2 * small + 10, (small, big)
    # A memory whose text changed no longer offers its old vector for the old text.
    rid = store.conn.execute("SELECT rid FROM memory_vectors WHERE content_hash=?",
                             (asked[0],)).fetchone()[0]
    with store.transaction():
        store.conn.execute("UPDATE memories SET content='changed', content_hash=? WHERE rid=?",
                           ("f" * 64, rid))
    assert asked[0] not in lookup(asked)[0]

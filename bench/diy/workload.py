"""The DIY workload: N agents x T turns of LoCoMo text, and the vectors both stacks store.

Turns. The 2,760 turns of the development conversations are cycled: agent a's turn j is base
turn (a * 37 + j) mod 2,760 (neighbouring agents hold different turns), written in one of four
small variations (speaker prefix, "said", the session date, a turn tag), and tagged
`[a.j]` so that no two texts of the workload are the same (db0 would keep one of two equal
texts in one scope; Postgres and Redis would keep both).

Vectors. Embedding 300,000 texts through the model would take most of an hour on two cores and
measures nothing the embedding-throughput row does not, so the unique turns are embedded once
(`speaker: text`, the GGUF model db0 installed, through llama-cpp-python; cached per model
file) and each workload text gets its base turn's vector plus N(0, NOISE) noise, renormalised,
the same float32 vectors for both stacks (`blocks`). The search cost does not depend on the
values; the results do, and they stay near the real ones.

Queries: LoCoMo questions (categories 1-4), each asked of one agent; the same (agent,
question) list for both stacks, each question once so no query cache helps.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

NOISE = 0.02
BLOCK = 10_000
CACHE = Path(os.environ.get("DB0_BENCH_CACHE", "/tmp/db0-diy-cache"))


def data_file() -> Path:
    """locomo-dev.json: $DB0_BENCH_LOCOMO, else shared/bench/ beside a folder above this one."""
    if os.environ.get("DB0_BENCH_LOCOMO"):
        return Path(os.environ["DB0_BENCH_LOCOMO"])
    for d in Path(__file__).resolve().parents:
        p = d / "shared" / "bench" / "locomo-dev.json"
        if p.exists():
            return p
    raise SystemExit("locomo-dev.json not found: set DB0_BENCH_LOCOMO")


@dataclass(frozen=True)
class Turn:
    speaker: str
    text: str
    date: str

    @property
    def plain(self) -> str:
        return f"{self.speaker}: {self.text}"


def load_locomo() -> tuple[list[Turn], list[str]]:
    raw = json.loads(data_file().read_text())
    turns: list[Turn] = []
    questions: list[str] = []
    for conv in raw:
        c = conv["conversation"]
        n = 1
        while f"session_{n}" in c:
            date = str(c.get(f"session_{n}_date_time", ""))
            turns += [Turn(t["speaker"], t["text"].strip(), date) for t in c[f"session_{n}"]
                      if t.get("text", "").strip()]
            n += 1
        questions += [q["question"] for q in conv["qa"]
                      if q.get("category") in (1, 2, 3, 4) and q.get("evidence")]
    return turns, list(dict.fromkeys(questions))


class Workload:
    def __init__(self, agents: int, turns_per_agent: int, seed: int = 17) -> None:
        self.agents = agents
        self.per_agent = turns_per_agent
        self.turns, self.questions = load_locomo()
        self.seed = seed
        self.base: np.ndarray | None = None  # unit vectors of the unique turns

    @property
    def total(self) -> int:
        return self.agents * self.per_agent

    @staticmethod
    def agent_name(a: int) -> str:
        return f"agent-{a:05d}"

    def base_of(self, g: int) -> int:
        a, j = divmod(g, self.per_agent)
        return (a * 37 + j) % len(self.turns)

    def text(self, g: int) -> str:
        a, j = divmod(g, self.per_agent)
        t = self.turns[self.base_of(g)]
        v = (a + j) % 4
        body = (f"{t.speaker}: {t.text}", f"{t.speaker} said: {t.text}",
                f"{t.speaker} ({t.date}): {t.text}", f"{t.text} ({t.speaker}, turn {j})")[v]
        return f"{body} [{a}.{j}]"

    def agent_texts(self, a: int) -> list[str]:
        return [self.text(a * self.per_agent + j) for j in range(self.per_agent)]

    # -- vectors --------------------------------------------------------------------------

    def embed_base(self, gguf: Path, threads: int = 2) -> dict[str, float]:
        """Embed the unique turns once (or read them from the cache)."""
        digest = hashlib.sha256(gguf.read_bytes()).hexdigest()[:16]
        CACHE.mkdir(parents=True, exist_ok=True)
        path = CACHE / f"locomo-turns-{digest}-{len(self.turns)}.npy"
        if path.exists():
            self.base = np.load(path)
            return {"cached": 1.0, "texts": float(len(self.turns))}
        import time

        llm = open_llama(gguf, threads)
        t = time.perf_counter()
        out = []
        texts = [x.plain for x in self.turns]
        for i in range(0, len(texts), 32):
            out += llm.embed(texts[i:i + 32], normalize=True, truncate=True)
        took = time.perf_counter() - t
        llm.close()
        self.base = np.asarray(out, dtype="<f4")
        np.save(path, self.base)
        return {"cached": 0.0, "texts": float(len(texts)), "embed_s": round(took, 2)}

    def block(self, start: int, stop: int) -> np.ndarray:
        """Vectors of workload texts start..stop-1 (start a multiple of BLOCK): the same on
        every call, for both stacks."""
        assert self.base is not None and start % BLOCK == 0
        rng = np.random.default_rng(self.seed * 1_000_003 + start // BLOCK)
        idx = np.fromiter((self.base_of(g) for g in range(start, stop)), dtype=np.int64,
                          count=stop - start)
        v = self.base[idx] + rng.normal(0, NOISE, (stop - start, self.base.shape[1])
                                        ).astype("<f4")
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        return v.astype("<f4")

    def blocks(self, start: int, stop: int) -> Iterator[tuple[int, int, np.ndarray]]:
        for s in range(start - start % BLOCK, stop, BLOCK):
            e = min(s + BLOCK, stop)
            v = self.block(s, e)
            lo = max(s, start)
            yield lo, e, v[lo - s:]

    # -- queries --------------------------------------------------------------------------

    def queries(self, n: int, agents: int | None = None, seed: int = 3
                ) -> list[tuple[str, str]]:
        """(agent name, question) pairs; each question once while there are enough."""
        rng = random.Random(seed)
        qs = self.questions[:]
        rng.shuffle(qs)
        na = agents or self.agents
        return [(self.agent_name(rng.randrange(na)), qs[i % len(qs)]) for i in range(n)]


def open_llama(gguf: Path, threads: int) -> object:
    """llama-cpp-python on the GGUF file, as an embedding model (mean pooling, 512 tokens):
    the DIY stack's embedder."""
    import llama_cpp

    return llama_cpp.Llama(str(gguf), embedding=True, n_ctx=512, n_batch=512, n_ubatch=512,
                           n_threads=threads, n_threads_batch=threads, verbose=False,
                           pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN)

"""A late-interaction encoder GGUF (pooling none, colbertconv.py) run by llama.cpp: one unit
vector per token, for queries and for memories in ColBERT's conventions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from db0.daemon.models.llamacpp import open_context

CONTEXT = 512
CLS, SEP, QUERY_MARK, DOC_MARK = 101, 102, 1, 2  # BERT uncased ids ([unused0/1])
QUERY_LEN = 32   # a query's tokens at most, markers included. Not padded with [MASK] (ColBERT's
#                  query augmentation): without the model's projection the padding scored
#                  worse on both benches (bench/colbert_stage.py), and costs more to encode
DOC_LEN = 256    # a memory's first 256 tokens are kept


class LateEncoder:
    """One llama.cpp context. Not thread-safe: callers hold one per thread or a lock."""

    def __init__(self, path: str | Path, n_threads: int = 1) -> None:
        import llama_cpp

        self.path = Path(path)
        self._lib = llama_cpp
        self.llm: Any = open_context(self.path, "late-interaction", CONTEXT, n_threads,
                                     llama_cpp.LLAMA_POOLING_TYPE_NONE)
        self.dim = int(self.llm.n_embd())
        self.name = self.path.name.removesuffix(".gguf").removesuffix(".late")
        self._batch = llama_cpp.llama_batch_init(CONTEXT, 0, 1)

    def tokens(self, text: str) -> list[int]:
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def query_ids(self, text: str) -> list[int]:
        return [CLS, QUERY_MARK, *self.tokens(text)[:QUERY_LEN - 3], SEP]

    def doc_ids(self, text: str) -> list[int]:
        return [CLS, DOC_MARK, *self.tokens(text)[:DOC_LEN - 3], SEP]

    def query(self, text: str) -> Any:
        return self.states(self.query_ids(text))

    def doc(self, text: str) -> Any:
        return self.states(self.doc_ids(text))

    def states(self, ids: list[int]) -> Any:
        """The last hidden state of each token, L2-normalised: float32 [len(ids), dim]."""
        import numpy as np

        lib, b = self._lib, self._batch
        ids = ids[:CONTEXT]
        for i, tok in enumerate(ids):
            b.token[i] = tok
            b.pos[i] = i
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = 0
            b.logits[i] = True
        b.n_tokens = len(ids)
        memory = lib.llama_get_memory(self.llm.ctx)
        if memory:
            lib.llama_memory_clear(memory, True)
        rc = lib.llama_decode(self.llm.ctx, b)
        if rc != 0:
            raise RuntimeError(f"llama.cpp could not encode a text (llama_decode {rc})")
        ptr = lib.llama_get_embeddings(self.llm.ctx)
        x = np.ctypeslib.as_array(ptr, shape=(len(ids) * self.dim,)).reshape(len(ids), self.dim)
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return x.astype(np.float32)

    def close(self) -> None:
        llm, self.llm = self.llm, None
        if self._batch is not None:
            self._lib.llama_batch_free(self._batch)
            self._batch = None
        if llm is not None:
            llm.close()

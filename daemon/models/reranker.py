"""A cross-encoder GGUF run by llama.cpp: one relevance score per (query, text) pair.

The GGUF is written by daemon/rerankconv.py with pooling RANK: llama.cpp runs BERT over
`[CLS] query [SEP] text [SEP]` and returns the classifier's logit for the [CLS] token. The
text's tokens (and its closing [SEP]) are shifted into the second half of the vocabulary,
which carries segment B's token-type embedding (llama.cpp itself adds only type 0's).

One pair a decode: packing pairs into one batch is slower (attention then spans the whole
batch; docs/performance.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from db0.daemon.models.llamacpp import open_context

CONTEXT = 512          # BERT's position limit: a pair is cut to fit
MAX_QUERY_TOKENS = 64  # a long query keeps its start; the text gets the rest


class Reranker:
    """One llama.cpp context. Not thread-safe: callers hold a lock."""

    def __init__(self, path: str | Path, n_threads: int = 2) -> None:
        import llama_cpp

        self.path = Path(path)
        self._lib = llama_cpp
        self.llm: Any = open_context(self.path, "reranker", CONTEXT, n_threads,
                                     llama_cpp.LLAMA_POOLING_TYPE_RANK)
        self.name = self.path.name.removesuffix(".gguf").removesuffix(".rerank")
        vocab = int(self.llm.n_vocab())
        if vocab % 2:
            raise ValueError(f"{self.path} is not a db0 reranker (odd vocabulary size)")
        self.shift = vocab // 2      # where segment B's copy of the vocabulary starts
        self.sep = int(self.llm.token_eos())
        self._batch = llama_cpp.llama_batch_init(CONTEXT, 0, 1)

    def pair(self, query: str, text: str) -> list[int]:
        """The token ids of one pair, cut to fit the context."""
        q = list(self.llm.tokenize(query.encode("utf-8"), add_bos=True, special=False))
        if q[-1] != self.sep:
            q.append(self.sep)
        if len(q) > MAX_QUERY_TOKENS:
            q = [*q[:MAX_QUERY_TOKENS - 1], self.sep]
        t = list(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))
        if t and t[-1] == self.sep:
            t.pop()
        t = t[:CONTEXT - len(q) - 1]
        return q + [tok + self.shift for tok in [*t, self.sep]]

    def score(self, query: str, texts: list[str]) -> list[float]:
        """The relevance logit of each text for the query (higher is more relevant)."""
        lib, ctx, b = self._lib, self.llm.ctx, self._batch
        out = []
        for text in texts:
            ids = self.pair(query, text)
            for i, tok in enumerate(ids):
                b.token[i] = tok
                b.pos[i] = i
                b.n_seq_id[i] = 1
                b.seq_id[i][0] = 0
                b.logits[i] = True
            b.n_tokens = len(ids)
            memory = lib.llama_get_memory(ctx)
            if memory:
                lib.llama_memory_clear(memory, True)
            rc = lib.llama_decode(ctx, b)
            if rc != 0:
                raise RuntimeError(f"llama.cpp could not score a pair (llama_decode {rc})")
            out.append(float(lib.llama_get_embeddings_seq(ctx, 0)[0]))
        return out

    def close(self) -> None:
        llm, self.llm = self.llm, None
        if self._batch is not None:
            self._lib.llama_batch_free(self._batch)
            self._batch = None
        if llm is not None:
            llm.close()

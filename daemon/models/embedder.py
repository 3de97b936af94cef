"""A GGUF embedding model run by llama.cpp: normalized sentence vectors and token counts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

CONTEXT = 512  # BERT's position limit; longer texts are truncated


class Embedder:
    """One llama.cpp context. Not thread-safe: callers hold one per thread or a lock."""

    def __init__(self, path: str | Path, n_threads: int = 2) -> None:
        import llama_cpp

        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"embedding model {self.path} is missing")
        self.llm: Any = llama_cpp.Llama(
            str(self.path), embedding=True, n_ctx=CONTEXT, n_batch=CONTEXT, n_ubatch=CONTEXT,
            n_threads=n_threads, n_threads_batch=n_threads, verbose=False,
            pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN)
        self.dim = int(self.llm.n_embd())
        self.name = self.path.stem

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Unit vectors, one per text; an empty text embeds as its special tokens alone."""
        if not texts:
            return []
        out = self.llm.embed(list(texts), normalize=True, truncate=True)
        return [list(map(float, v)) for v in out]

    def tokenize(self, text: str) -> list[int]:
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=False))

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    def close(self) -> None:
        llm, self.llm = self.llm, None
        if llm is not None:
            llm.close()


def default_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))

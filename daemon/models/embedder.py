"""A GGUF embedding model run by llama.cpp: normalized sentence vectors and token counts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from db0.daemon.models.llamacpp import open_context

CONTEXT = 512  # BERT's position limit; longer texts are truncated


class Embedder:
    """One llama.cpp context. Not thread-safe: callers hold one per thread or a lock."""

    def __init__(self, path: str | Path, n_threads: int = 2) -> None:
        import llama_cpp

        self.path = Path(path)
        self.llm: Any = open_context(self.path, "embedding", CONTEXT, n_threads,
                                     llama_cpp.LLAMA_POOLING_TYPE_MEAN)
        self.dim = int(self.llm.n_embd())
        self.name = self.path.stem
        self._lean: Any = None  # query()'s own batch and token buffers, made at its first use

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Unit vectors, one per text; an empty text embeds as its special tokens alone."""
        if not texts:
            return []
        out = self.llm.embed(list(texts), normalize=True, truncate=True)
        return [list(map(float, v)) for v in out]

    def query(self, text: str, max_tokens: int) -> tuple[Any, bool]:
        """One text's unit vector (float32), from at most `max_tokens` of its tokens (as
        clip()'s; True: it was cut); the vector embed() gives for the same text.

        Rule: a query is embedded on a request's path, beside other threads that hold the
        GIL, and every call into llama.cpp gives it up and must win it back. So this path
        makes three calls (tokenize, encode, read the pooled vector) and does its arithmetic
        in numpy; embed() makes a dozen, pools and normalises in Python, and decodes, which
        for an encoder-only model writes a log line through llama-cpp-python's Python
        callback (the GIL again) before it encodes."""
        import ctypes

        import llama_cpp
        import numpy as np

        lean = self._lean
        if lean is None:
            batch = llama_cpp.llama_batch_init(CONTEXT, 0, 1)
            for i in range(CONTEXT):  # one sequence, every token an output, set once
                batch.seq_id[i][0] = 0
            view = np.ctypeslib.as_array
            view(batch.n_seq_id, (CONTEXT,))[:] = 1
            view(batch.logits, (CONTEXT,))[:] = 1
            view(batch.pos, (CONTEXT,))[:] = np.arange(CONTEXT)
            toks = (llama_cpp.llama_token * CONTEXT)()
            ctx = self.llm._ctx
            lean = self._lean = (batch, view(batch.token, (CONTEXT,)), toks, view(toks),
                                 self.llm._model.vocab, ctx.ctx, ctx.memory)
        batch, slots, toks, tview, vocab, ctx, memory = lean
        raw = text.encode("utf-8")
        n = llama_cpp.llama_tokenize(vocab, raw, len(raw), toks, CONTEXT, True, False)
        if n < 0 or n - 2 > max_tokens:  # long: clip() cuts it, embed() takes the rest
            clipped, cut = self.clip(text, max_tokens)
            return np.asarray(self.embed([clipped])[0], dtype=np.float32), cut
        slots[:n] = tview[:n]
        batch.n_tokens = n
        if memory is not None:
            llama_cpp.llama_memory_clear(memory, True)
        if llama_cpp.llama_encode(ctx, batch) != 0:
            raise RuntimeError("llama_encode failed on a query")
        ptr = llama_cpp.llama_get_embeddings_seq(ctx, 0)
        vec = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)),
                                    (self.dim,)).astype(np.float32)
        norm = float(np.linalg.norm(vec))
        return (vec / norm if norm > 0 else vec), False

    def clip(self, text: str, max_tokens: int) -> tuple[str, bool]:
        """`text` as at most `max_tokens` tokens: unchanged when it is that short, else its
        first half and its last half of them, whole words only, with an ellipsis between
        (True: it was cut). A long prompt states what it asks at its start or its end; its
        middle is mostly pasted material (a log, a file)."""
        toks = self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        if len(toks) <= max_tokens:
            return text, False
        piece = self.llm.detokenize

        def inside(i: int) -> bool:  # toks[i] continues a word ("##ing"): no space before it
            return i < len(toks) and not piece([toks[i]]).startswith(b" ")

        end = max_tokens // 2
        while end > 0 and inside(end):
            end -= 1
        start = len(toks) - (max_tokens - max_tokens // 2)
        while inside(start):
            start += 1
        return (piece(toks[:end]).decode("utf-8", "ignore").strip() + " … "
                + piece(toks[start:]).decode("utf-8", "ignore").strip()), True

    def tokenize(self, text: str) -> list[int]:
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=False))

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    def close(self) -> None:
        lean, self._lean = self._lean, None
        if lean is not None:
            import llama_cpp

            llama_cpp.llama_batch_free(lean[0])
        llm, self.llm = self.llm, None
        if llm is not None:
            llm.close()


def query_copy(path: str | Path, dest: Path, probe: list[str]) -> Path:
    """An F16 copy of an F32 embedding model for embedding queries, made once into `dest`;
    `path` itself when no copy can be made or the copy does not agree with it.

    Rule: a query reads every weight for a handful of tokens, often after other work has
    emptied the caches, and 16-bit weights are half the bytes to fetch; the arithmetic, which
    grows with the tokens, is the same (docs/performance.md, "Embedding": what it saves, and
    where). 8-bit weights move the vectors enough to reorder some results. A copy is kept
    only if it gives the original's direction on `probe` (cosine >= QUERY_COPY_MIN for each
    text), checked once when it is made: stored vectors come from the original."""
    src = Path(path)
    stem = f"{src.stem}.{_file_id(src)}"
    out, refused = dest / f"{stem}.f16.gguf", dest / f"{stem}.f16.refused"
    if out.exists():
        return out
    if refused.exists():
        return src
    tmp = dest / f".{out.name}.{os.getpid()}.tmp"
    try:
        import ctypes

        import llama_cpp
        import numpy as np

        dest.mkdir(parents=True, exist_ok=True)
        os.chmod(dest, 0o700)
        for old in dest.iterdir():  # copies of this model's earlier files
            if old.name.startswith(f"{src.stem}.") and old.name != out.name:
                old.unlink(missing_ok=True)
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_F16
        if llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(),
                                          ctypes.byref(params)) != 0:
            raise OSError("llama.cpp could not quantise the model")
        a, b = Embedder(src, 1), Embedder(tmp, 1)
        try:
            agree = (np.asarray(a.embed(probe)) * np.asarray(b.embed(probe))).sum(axis=1)
        finally:
            a.close()
            b.close()
        if float(agree.min()) < QUERY_COPY_MIN:
            refused.write_text(f"cosine with the original {float(agree.min()):.4f}\n")
            return src
        os.chmod(tmp, 0o600)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, out)
        return out
    except Exception:
        return src
    finally:
        tmp.unlink(missing_ok=True)


QUERY_COPY_MIN = 0.99999


def _file_id(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size:x}-{int(st.st_mtime):x}"


def default_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))

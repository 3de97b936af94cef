"""The one way db0 opens a GGUF with llama.cpp (the embedder, the reranker, the late encoder).

Rule: weights stay in llama.cpp's plain CPU buffers (`use_extra_bufts` off). Its extra CPU
buffer types re-lay weights for AMX and for interleaved (repacked) kernels; on a CPU with AMX
(llama-cpp-python 0.3.36) `llama_decode` on Q8_0 weights there crashes the process, and the
reranker's and the late encoder's layers are Q8_0. The plain path runs the same arithmetic
with the CPU's vector instructions (AVX-512 VNNI, AVX2)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

_lock = threading.Lock()  # the default-parameters hook below is process-wide while it is set


def open_gguf(path: str, **kwargs: Any) -> Any:
    """`llama_cpp.Llama(path, **kwargs)` with the weights in plain CPU buffers."""
    import llama_cpp
    from llama_cpp import llama_cpp as low

    # Llama() builds its model parameters from llama_model_default_params() and loads the
    # model in the constructor, with no argument for this field: the defaults are changed
    # for the length of one constructor call.
    with _lock:
        default = low.llama_model_default_params

        def plain() -> Any:
            params = default()
            params.use_extra_bufts = False
            return params

        low.llama_model_default_params = plain
        try:
            return llama_cpp.Llama(path, **kwargs)
        finally:
            low.llama_model_default_params = default


def open_context(path: str | Path, what: str, n_ctx: int, n_threads: int, pooling: int) -> Any:
    """An embedding context (open_gguf) of `n_ctx` tokens, every one of them in one batch, on
    `n_threads` threads, with llama.cpp's `pooling` type; FileNotFoundError naming `what` (the
    model's role) when the file is missing."""
    if not Path(path).exists():
        raise FileNotFoundError(f"{what} model {path} is missing")
    return open_gguf(str(path), embedding=True, n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx,
                     n_threads=n_threads, n_threads_batch=n_threads, verbose=False,
                     pooling_type=pooling)

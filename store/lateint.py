"""Late interaction (MaxSim) over stored token vectors, and their int8 form.

A memory's token vectors (unit length) are stored as int8, one scale per token (float16, the
token's largest absolute value / 127), so a memory of t tokens of dimension d takes t * (d + 2)
bytes. A query's score for a memory is the sum, over the query's tokens, of the best dot
product with any of the memory's tokens.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def pack(x: Any) -> bytes:
    """float32 [t, d] unit rows -> bytes: the t scales (float16), then t * d int8 values."""
    x = np.asarray(x, dtype=np.float32)
    scale = np.maximum(np.abs(x).max(1), 1e-12) / 127.0
    q = np.round(x / scale[:, None]).astype(np.int8)
    return bytes(scale.astype("<f2").tobytes()) + bytes(q.tobytes())


def unpack(blob: bytes, dim: int) -> Any:
    """The float32 [t, d] rows `pack` stored."""
    t = len(blob) // (dim + 2)
    if t * (dim + 2) != len(blob):
        raise ValueError(f"a token-vector blob of {len(blob)} bytes is not t * ({dim} + 2)")
    scale = np.frombuffer(blob, "<f2", t).astype(np.float32)
    q = np.frombuffer(blob, np.int8, t * dim, offset=2 * t).reshape(t, dim)
    return q.astype(np.float32) * scale[:, None]


def maxsim(query: Any, docs: list[Any]) -> Any:
    """One score per doc: sum over query rows of the best dot product with the doc's rows."""
    if not docs:
        return np.zeros(0, dtype=np.float32)
    lens = [len(d) for d in docs]
    sims = np.asarray(query, dtype=np.float32) @ np.concatenate(docs).T
    starts = np.cumsum([0, *lens[:-1]])
    return np.maximum.reduceat(sims, starts, axis=1).sum(0)


def fuse(late_scores: Any, r: float) -> list[int]:
    """Reciprocal-rank fusion of the first-stage order (0..n-1) with the order of
    `late_scores`: the new order of the n candidates, as indexes into them."""
    n = len(late_scores)
    late = sorted(range(n), key=lambda i: -float(late_scores[i]))
    rank = {c: k for k, c in enumerate(late)}
    return sorted(range(n), key=lambda i: -(1 / (r + i) + 1 / (r + rank[i])))

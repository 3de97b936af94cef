"""Reordering recall's top results by a cross-encoder's relevance scores.

The cross-encoder reads the query and a memory together, so it sees what neither BM25 nor
the embedding can (who did what, when, to whom); it costs one model pass per memory, so only
the first stage's top `n` are rescored. Its logit is squashed to (0, 1) and blended with the
first-stage score, scaled by the best first-stage score, `RERANK_SHARE` to the reranker:

    score = RERANK_SHARE * sigmoid(logit) + (1 - RERANK_SHARE) * first / best_first

Results past the first `n` keep their order after the rescored ones.
"""

from __future__ import annotations

import math
from typing import Any

RERANK_SHARE = 0.7
MAX_RERANK = 100  # at most this many results are rescored per query


def blend(results: list[dict[str, Any]], logits: list[float]) -> list[dict[str, Any]]:
    """`results` (best first) with the first len(logits) reordered by the blended score."""
    n = len(logits)
    head, tail = results[:n], results[n:]
    best = max((float(r.get("score") or 0.0) for r in head), default=0.0) or 1.0
    for r, logit in zip(head, logits, strict=True):
        first = float(r.get("score") or 0.0)
        squashed = 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, logit))))
        r.setdefault("score_parts", {})
        r["score_parts"]["first_stage"] = round(first, 6)
        r["score_parts"]["rerank"] = round(logit, 4)
        r["score"] = round(RERANK_SHARE * squashed + (1 - RERANK_SHARE) * first / best, 6)
    head.sort(key=lambda r: -float(r["score"]))
    return head + tail

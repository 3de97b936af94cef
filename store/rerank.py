"""Reordering recall's top results by a cross-encoder's relevance scores.

The cross-encoder reads the query and a memory together, so it sees what neither BM25 nor
the embedding can (who did what, when, to whom); it costs one model pass per memory, so only
the first stage's top `n` are rescored. Its logit, divided by LOGIT_SCALE, is blended with
the first-stage score relative to the best one, `RERANK_SHARE` to the reranker:

    score = RERANK_SHARE * logit / LOGIT_SCALE + (1 - RERANK_SHARE) * first / best_first

Results past the first `n` keep their order after the rescored ones.

Measured on LoCoMo (bench/locomo.py, top 30 rescored, each memory read after the turn before
it): evidence recall@5/@10 0.751/0.810 with this blend; 0.729/0.806 by the reranker alone;
0.742/0.803 blending sigmoid(logit) 0.7 to 0.3; 0.748-0.752/0.810-0.811 for any RERANK_SHARE
from 0.3 to 0.7 (a flat optimum, not a fit). Read alone, without the turn before, the top 30
reach 0.735/0.795 (this blend).
"""

from __future__ import annotations

from typing import Any

RERANK_SHARE = 0.5
LOGIT_SCALE = 10.0  # ms-marco logits run from about -11 to +10
MAX_RERANK = 100  # at most this many results are rescored per query


def blend(results: list[dict[str, Any]], logits: list[float]) -> list[dict[str, Any]]:
    """`results` (best first) with the first len(logits) reordered by the blended score."""
    n = len(logits)
    head, tail = results[:n], results[n:]
    best = max((float(r.get("score") or 0.0) for r in head), default=0.0) or 1.0
    for r, logit in zip(head, logits, strict=True):
        first = float(r.get("score") or 0.0)
        r.setdefault("score_parts", {})
        r["score_parts"]["first_stage"] = round(first, 6)
        r["score_parts"]["rerank"] = round(logit, 4)
        r["score"] = round(RERANK_SHARE * logit / LOGIT_SCALE
                           + (1 - RERANK_SHARE) * first / best, 6)
    head.sort(key=lambda r: -float(r["score"]))
    return head + tail

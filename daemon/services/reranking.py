"""The reranker component: loads the cross-encoder on first use and scores recall's top results.

Loading is lazy (a 120 MB GGUF, its layers in Q8_0): a daemon whose users never pass `--rerank`
never holds it. Requests share one llama.cpp context under a lock. Every pair is a full
cross-encoder pass, many times the cost of the first stage (docs/performance.md), so reranking
is asked for, never done by default.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from db0.daemon.core.config import Config
from db0.daemon.core.runtime import Component, Runtime
from db0.daemon.protocol import Db0Error

log = logging.getLogger("db0.rerank")
MAX_CHARS = 2000  # a memory's first 2,000 characters are enough to judge it


class RerankService(Component):
    name = "reranker"

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        self.threads = 2
        self._model: Any = None
        self._sha = ""
        self._lock = threading.Lock()
        self.scored = 0

    def apply_config(self, cfg: Config) -> None:
        self.threads = cfg.embed.threads

    def on_stop(self) -> None:
        with self._lock:
            model, self._model = self._model, None
        if model is not None:
            model.close()

    def status(self) -> dict[str, Any]:
        from db0.daemon.models import registry as models

        info = models.reranker(self.rt.paths.models_dir)
        return {"model": info.name if info else None, "loaded": self._model is not None,
                "pairs_scored": self.scored}

    def score(self, query: str, texts: list[str]) -> tuple[str, list[float]]:
        """(model name, one relevance logit per text), loading the model on first use."""
        with self._lock:
            model = self._load()
            scores = model.score(query, [t[:MAX_CHARS] for t in texts])
            self.scored += len(texts)
            return str(model.name), scores

    def _load(self) -> Any:
        from db0.daemon.models import registry as models

        info = models.reranker(self.rt.paths.models_dir)
        if info is None:
            raise Db0Error("unavailable", "no reranker is installed",
                           "run: db0 model install --reranker (or recall without --rerank)")
        if self._model is not None and self._sha == info.sha256:
            return self._model
        from db0.daemon.models.reranker import Reranker

        if self._model is not None:
            self._model.close()
            self._model = None
        try:
            self._model = Reranker(info.path, self.threads)
        except (OSError, ValueError) as e:
            raise Db0Error("invalid", f"the reranker {info.path} does not load: {e}",
                           "reinstall it: db0 model install --reranker") from e
        self._sha = info.sha256
        log.info("reranker %s loaded", info.name)
        return self._model


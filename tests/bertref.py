"""A plain numpy BERT (no llama.cpp) and BERT's WordPiece tokenizer, as references for the
GGUF models: a wrong tensor name, a missed layer norm, a wrong pooling, a lost token type or a
broken vocabulary shows as a different result."""

from __future__ import annotations

import math
import unicodedata
from typing import Any

import numpy as np


def layer_norm(x: Any, w: Any, b: Any, eps: float) -> Any:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def gelu(x: Any) -> Any:
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def encode(w: dict[str, Any], cfg: dict[str, Any], ids: list[int],
           types: list[int] | None = None) -> Any:
    """The last layer's hidden states, one row per token (`w`: Hugging Face tensor names)."""
    w = {k.removeprefix("bert."): np.asarray(v, dtype=np.float64) for k, v in w.items()}
    eps = cfg.get("layer_norm_eps", 1e-12)
    n, heads = len(ids), cfg["num_attention_heads"]
    x = (w["embeddings.word_embeddings.weight"][ids]
         + w["embeddings.position_embeddings.weight"][:n]
         + w["embeddings.token_type_embeddings.weight"][types or [0] * n])
    x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    for i in range(cfg["num_hidden_layers"]):
        L = f"encoder.layer.{i}."

        def lin(h: Any, name: str, L: str = L) -> Any:
            return h @ w[L + name + ".weight"].T + w[L + name + ".bias"]

        q, k, v = (lin(x, f"attention.self.{t}").reshape(n, heads, -1).transpose(1, 0, 2)
                   for t in ("query", "key", "value"))
        att = q @ k.transpose(0, 2, 1) / math.sqrt(q.shape[-1])
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        ctx = (att @ v).transpose(1, 0, 2).reshape(n, -1)
        x = layer_norm(x + lin(ctx, "attention.output.dense"),
                       w[L + "attention.output.LayerNorm.weight"],
                       w[L + "attention.output.LayerNorm.bias"], eps)
        h = lin(gelu(lin(x, "intermediate.dense")), "output.dense")
        x = layer_norm(x + h, w[L + "output.LayerNorm.weight"], w[L + "output.LayerNorm.bias"],
                       eps)
    return x


def wordpiece(vocab: dict[str, int], text: str, specials: bool = True) -> list[int]:
    """BERT's uncased tokenizer, from its published rules; [CLS] ... [SEP] with `specials`."""
    text = unicodedata.normalize("NFD", text.lower())
    text = "".join(c for c in text if unicodedata.category(c) != "Mn")
    words: list[str] = []
    for chunk in text.split():
        cur = ""
        for c in chunk:
            if unicodedata.category(c).startswith("P") or (c.isascii() and not c.isalnum()):
                if cur:
                    words.append(cur)
                words.append(c)
                cur = ""
            else:
                cur += c
        if cur:
            words.append(cur)
    ids = []
    for word in words:
        start, pieces = 0, []
        while start < len(word):
            end = len(word)
            while end > start:
                piece = ("##" if start else "") + word[start:end]
                if piece in vocab:
                    pieces.append(vocab[piece])
                    break
                end -= 1
            if end == start:
                pieces = [vocab["[UNK]"]]
                break
            start = end
        ids += pieces
    return [vocab["[CLS]"], *ids, vocab["[SEP]"]] if specials else ids

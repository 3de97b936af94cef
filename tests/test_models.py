"""The default model: converted GGUF == the checkpoint's own forward pass, tokens == WordPiece.

The reference is a plain numpy BERT over the safetensors weights (no llama.cpp), so a wrong
tensor name, a missed layer norm, a wrong pooling or a broken vocabulary shows as a low cosine.
"""

from __future__ import annotations

import json
import math
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from db0.daemon import modelconv, models
from db0.daemon.embedder import Embedder
from db0.daemon.protocol import Db0Error

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "My flight to Tokyo leaves on Friday at 6am",
    "Café naïve résumé: unaffordable tokenization, don't you think?",
    "db0 remembers facts for AI agents; C++ and Rust are languages.",
    "a",
]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, models.ModelInfo]:
    mdir = tmp_path_factory.mktemp("models")
    return mdir, models.install_default(mdir)


@pytest.fixture(scope="module")
def embedder(installed: tuple[Path, models.ModelInfo]) -> Embedder:
    return Embedder(installed[1].path, 2)


@pytest.fixture(scope="module")
def checkpoint(installed: tuple[Path, models.ModelInfo]) -> Path:
    return modelconv.default_checkpoint_dir(installed[0] / "src" / modelconv.DEFAULT_NAME)


def _layer_norm(x: Any, w: Any, b: Any, eps: float) -> Any:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def _gelu(x: Any) -> Any:
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def _forward(src: Path, ids: list[int]) -> Any:
    from safetensors.numpy import load_file

    cfg = json.loads((src / "config.json").read_text())
    w = {k: v.astype(np.float64) for k, v in load_file(str(src / "model.safetensors")).items()}
    p = "" if "embeddings.word_embeddings.weight" in w else "bert."
    eps = cfg["layer_norm_eps"]
    n, heads = len(ids), cfg["num_attention_heads"]
    x = (w[p + "embeddings.word_embeddings.weight"][ids]
         + w[p + "embeddings.position_embeddings.weight"][:n]
         + w[p + "embeddings.token_type_embeddings.weight"][0])
    x = _layer_norm(x, w[p + "embeddings.LayerNorm.weight"], w[p + "embeddings.LayerNorm.bias"],
                    eps)
    for i in range(cfg["num_hidden_layers"]):
        L = f"{p}encoder.layer.{i}."

        def lin(h: Any, name: str, L: str = L) -> Any:
            return h @ w[L + name + ".weight"].T + w[L + name + ".bias"]

        q, k, v = (lin(x, f"attention.self.{t}").reshape(n, heads, -1).transpose(1, 0, 2)
                   for t in ("query", "key", "value"))
        att = q @ k.transpose(0, 2, 1) / math.sqrt(q.shape[-1])
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        ctx = (att @ v).transpose(1, 0, 2).reshape(n, -1)
        x = _layer_norm(x + lin(ctx, "attention.output.dense"),
                        w[L + "attention.output.LayerNorm.weight"],
                        w[L + "attention.output.LayerNorm.bias"], eps)
        h = lin(_gelu(lin(x, "intermediate.dense")), "output.dense")
        x = _layer_norm(x + h, w[L + "output.LayerNorm.weight"], w[L + "output.LayerNorm.bias"],
                        eps)
    pooled = x.mean(0)
    return pooled / np.linalg.norm(pooled)


def _wordpiece(src: Path, text: str) -> list[int]:
    """BERT's uncased tokenizer, from its published rules, over the checkpoint's vocabulary."""
    vocab: dict[str, int] = json.loads((src / "tokenizer.json").read_text())["model"]["vocab"]
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
    ids = [vocab["[CLS]"]]
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
    return [*ids, vocab["[SEP]"]]


@pytest.mark.parametrize("text", SENTENCES)
def test_tokens_match_wordpiece(embedder: Embedder, checkpoint: Path, text: str) -> None:
    assert embedder.tokenize(text) == _wordpiece(checkpoint, text)


@pytest.mark.parametrize("text", SENTENCES[:4])
def test_embedding_matches_numpy_forward_pass(embedder: Embedder, checkpoint: Path,
                                              text: str) -> None:
    got = np.array(embedder.embed([text])[0])
    want = _forward(checkpoint, embedder.tokenize(text))
    assert abs(np.linalg.norm(got) - 1.0) < 1e-4
    assert float(got @ want) > 0.9999


def test_batch_equals_one_at_a_time(embedder: Embedder) -> None:
    batch = np.array(embedder.embed(SENTENCES))
    single = np.array([embedder.embed([s])[0] for s in SENTENCES])
    assert batch.shape == (len(SENTENCES), embedder.dim) == (5, 384)
    assert np.min(np.sum(batch * single, axis=1)) > 0.9999


def test_related_sentences_are_closer(embedder: Embedder) -> None:
    a, b, c = np.array(embedder.embed(["I love dogs", "Puppies are my favourite animals",
                                       "The tax return is due in April"]))
    assert a @ b > a @ c + 0.2


def test_manifest_current_reinstall_and_bad_sources(installed: tuple[Path, models.ModelInfo],
                                                    tmp_path: Path) -> None:
    mdir, info = installed
    assert models.current(mdir) is None  # installing does not choose; the daemon does
    models.set_current(mdir, info.name)
    assert models.current(mdir) == info
    assert models.install_default(mdir) == info  # a second install is a no-op
    assert info.sha256 == models.sha256_file(Path(info.path)) and info.dim == 384
    copy = models.install_from(mdir, Path(info.path), name="copy")
    assert copy.sha256 == info.sha256 and {m.name for m in models.list_models(mdir)} == {
        info.name, "copy"}
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"nope")
    with pytest.raises(Db0Error, match="not a GGUF"):
        models.install_from(mdir, bad)
    with pytest.raises(Db0Error, match=r"config\.json"):
        models.install_from(mdir, tmp_path)
    with pytest.raises(Db0Error, match="no installed model"):
        models.set_current(mdir, "ghost")
    assert not list(mdir.glob("*.tmp")) and models.verify(mdir) == []

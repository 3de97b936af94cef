"""The late-interaction encoder: the packaged int8 ONNX answerai-colbert-small-v1 converted to a
pooling-none GGUF gives, through llama.cpp, the token states a numpy forward pass of the same
dequantised weights gives (tests/bertref.py); MaxSim over int8-stored vectors ranks as over
the float ones."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import give_models

from db0.daemon.models import colbertconv, rerankconv
from db0.daemon.models.bertconv import ConversionError
from db0.daemon.models.lateenc import LateEncoder
from db0.store import lateint
from tests import bertref
from tests.conftest import Db0
from tests.test_embeddings import models_dir  # noqa: F401  (the session-wide models folder)

TEXTS = ["Caroline: I went to a LGBTQ support group yesterday and it was so powerful.",
         "git commit: fix the socket path limit (~100 bytes) on macOS",
         "Which map library does the station map use?"]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LateEncoder]:
    out = tmp_path_factory.mktemp("colbert") / f"{colbertconv.NAME}.late.gguf"
    colbertconv.convert(colbertconv.packaged_dir(), out)
    enc = LateEncoder(out, 1)
    yield enc
    enc.close()


def test_token_states_match_numpy_forward_pass(encoder: LateEncoder) -> None:
    src = colbertconv.packaged_dir()
    weights = rerankconv.state_dict(src / "model.onnx", colbertconv.NEED)
    cfg = rerankconv.config(src, weights)
    vocab = json.loads((src / "tokenizer.json").read_text())["model"]["vocab"]
    assert encoder.dim == 384
    for text in TEXTS:
        assert encoder.tokens(text) == bertref.wordpiece(vocab, text, specials=False)
        for ids in (encoder.doc_ids(text), encoder.query_ids(text)):
            want = bertref.encode(weights, cfg, ids)
            want /= np.linalg.norm(want, axis=1, keepdims=True)
            got = encoder.states(ids)
            assert got.shape == want.shape
            assert float((got * want).sum(1).min()) > 0.9999
    assert len(encoder.query_ids("a question")) == 5
    assert len(encoder.query_ids("word " * 100)) == 32
    assert encoder.query_ids("x")[:2] == [101, 1] and encoder.doc_ids("x")[:2] == [101, 2]


def test_maxsim_ranks_the_answer_first_and_int8_keeps_the_order(encoder: LateEncoder) -> None:
    docs = ["Melanie: I painted a sunset over the lake last week.",
            "Caroline: The adoption agency called me back about the interview.",
            "Melanie: We went camping with the kids in the mountains."]
    q = encoder.query("What did Melanie paint recently?")
    full = [encoder.doc(d) for d in docs]
    stored = [lateint.unpack(lateint.pack(x), encoder.dim) for x in full]
    assert all(len(lateint.pack(x)) == len(x) * (encoder.dim + 2) for x in full)
    a, b = lateint.maxsim(q, full), lateint.maxsim(q, stored)
    assert int(np.argmax(a)) == 0 and list(np.argsort(-a)) == list(np.argsort(-b))
    assert np.allclose(a, b, atol=0.05 * len(q) / 32)
    # late order 1, 2, 0: fused 1/(10+i) + 1/(10+late rank) puts 1 (0.191) before 0 (0.183)
    assert lateint.fuse(np.array([0.1, 0.9, 0.5]), 10) == [1, 0, 2]


def test_the_handler_reads_as_many_results_as_the_stage_reorders() -> None:
    # the handler says LATE_TOP again (so numpy loads only when the stage is used): if the
    # two differed, recall would hand the stage fewer results than it re-orders, or more
    from db0.daemon.handlers import memory

    assert memory.LATE_TOP == lateint.LATE_TOP


def test_a_folder_without_an_encoder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match=r"no model\.onnx"):
        colbertconv.convert(tmp_path, tmp_path / "x.gguf")
    (tmp_path / "model.onnx").write_bytes(b"not protobuf at all")
    with pytest.raises(ConversionError, match="not a readable ONNX"):
        colbertconv.convert(tmp_path, tmp_path / "x.gguf")
    assert not list(tmp_path.glob("*.gguf*"))


MEMORIES = ["Melanie: I painted a sunset over the lake last week.",
            "Caroline: The adoption agency called me back about the interview.",
            "Melanie: We went camping with the kids in the mountains.",
            "Caroline: I'm reading a book about painting techniques of the old masters.",
            "Melanie: My sunset painting is hanging in the hallway now.",
            "Caroline: The support group meets every Thursday evening."]


@pytest.mark.slow
def test_recall_late_through_the_daemon(db0: Db0, models_dir: Path) -> None:  # noqa: F811
    give_models(db0.home, models_dir)
    db0.run("import", "-", "--wait",
            input="".join(json.dumps({"content": c}) + "\n" for c in MEMORIES))
    query = "What did Melanie paint?"
    r = db0.run("recall", query, "--late", check=False)
    assert r.code == 5 and "no late-interaction encoder" in r.err and "--late" in r.err

    db0.run("model", "install", "--late", timeout=600)
    assert db0.json("model", "list")  # the embedding models are untouched
    deadline = time.monotonic() + 300
    while db0.json("daemon", "status")["late"].get("pending") != 0:
        assert time.monotonic() < deadline, db0.json("daemon", "status")["late"]
        time.sleep(0.5)
    first = db0.json("recall", query, "-n", "6")["results"]
    res = db0.json("recall", query, "-n", "6", "--late")
    assert res["late_scored"] == len(MEMORIES) and res["late_model"] == colbertconv.NAME
    assert all("late" in g["score_parts"] for g in res["results"])

    # the daemon's order is the fusion of the first stage's with MaxSim over the int8 vectors
    # it stored, as computed here from the same model file
    path = next((db0.home / "data" / "models").glob("*.late.gguf"))
    enc = LateEncoder(path, 1)
    try:
        q = enc.query(query)
        scores = {g["id"]: float(lateint.maxsim(q, [lateint.unpack(lateint.pack(
            enc.doc(g["content"])), enc.dim)])[0]) for g in first}
    finally:
        enc.close()
    want = [g["id"] for g in lateint.reorder(first, scores)]
    assert [g["id"] for g in res["results"]] == want
    for g in res["results"]:
        assert g["score_parts"]["late"] == pytest.approx(scores[g["id"]], abs=1e-3)
    top = max(scores, key=lambda i: scores[i])
    assert "paint" in next(g["content"] for g in first if g["id"] == top)

    # a memory written later gets its vectors in the background, never on recall's path
    db0.run("remember", "Melanie: I sold my lake painting at the market on Sunday.")
    deadline = time.monotonic() + 120
    while db0.json("daemon", "status")["late"].get("pending") != 0:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert db0.json("recall", query, "-n", "7", "--late")["late_scored"] == 7

    # [recall] late = true: recall and pack (hence the prompt hook) use the stage unasked
    assert "late_scored" not in db0.json("recall", query, "-n", "3")
    assert "late_scored" not in db0.json("pack", query, "--format", "json")
    db0.run("daemon", "stop")
    (db0.home / "config").mkdir(exist_ok=True)
    (db0.home / "config" / "config.toml").write_text("[recall]\nlate = true\n")
    deadline = time.monotonic() + 120  # a new daemon searches by keyword until its model loads
    while db0.json("model", "status").get("state") in ("starting", "loading"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    res = db0.json("recall", query, "-n", "3")
    assert res["late_scored"] == 7 and len(res["results"]) == 3
    packed = db0.json("pack", query, "--format", "json")
    assert packed["late_scored"] == 7 and packed["late_model"] == colbertconv.NAME
    assert db0.json("daemon", "status")["late"]["by_default"] is True

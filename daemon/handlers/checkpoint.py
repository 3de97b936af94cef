"""`checkpoint.*`: create, list, show, restore, branch and diff (store/checkpoints.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from db0.daemon.handlers import rpc
from db0.daemon.protocol import Db0Error
from db0.store import checkpoints, secrets

if TYPE_CHECKING:
    from db0.daemon.server import Request, Server


def _ref(req: Request, name: str = "id") -> str:
    ref = req.params.get(name)
    if not isinstance(ref, str) or not ref.strip():
        raise Db0Error("bad_request", "a checkpoint id is required", "see: db0 checkpoint list")
    return ref


@rpc("checkpoint.create")
def create(srv: Server, req: Request) -> dict[str, Any]:
    allow = bool(req.params.get("allow_secrets"))
    scrubbed, redacted = secrets.scrub_json(
        [req.params.get("label"), req.params.get("state")], allow)  # never stored as given
    label, state = cast("list[Any]", scrubbed)
    cp = srv.write(lambda s: checkpoints.create(s, req.ctx, label, state))
    out = checkpoints.public(cp)
    if redacted:
        out["redacted"] = redacted
    return out


@rpc("checkpoint.list")
def list_(srv: Server, req: Request) -> dict[str, Any]:
    with srv.reader() as s:
        return {"checkpoints": checkpoints.list_(s, req.ctx, bool(req.params.get("all")))}


@rpc("checkpoint.show")
def show(srv: Server, req: Request) -> dict[str, Any]:
    with srv.reader() as s:
        return checkpoints.show(s, _ref(req))


@rpc("checkpoint.restore")
def restore(srv: Server, req: Request) -> dict[str, Any]:
    ref = _ref(req)
    return srv.write(lambda s: checkpoints.restore(s, ref))


@rpc("checkpoint.branch")
def branch(srv: Server, req: Request) -> dict[str, Any]:
    ref, label = _ref(req), req.params.get("label")
    return srv.write(lambda s: checkpoints.branch(s, req.ctx, ref, label))


@rpc("checkpoint.diff")
def diff(srv: Server, req: Request) -> dict[str, Any]:
    a, b = _ref(req, "a"), _ref(req, "b")
    with srv.reader() as s:
        return checkpoints.diff(s, a, b)

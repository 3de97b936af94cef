"""`checkpoint.*`: create, list, show, restore, branch and diff (store/checkpoints.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from db0.daemon.core.shapes import Bool, Json, P, Str
from db0.daemon.handlers import rpc
from db0.store import checkpoints, write

if TYPE_CHECKING:
    from db0.daemon.core.dispatch import Request
    from db0.daemon.core.runtime import Runtime

REF = Str(nonempty=True, max_len=200, strip=True)
ID = P(REF, "a checkpoint id", required=True)


@rpc("checkpoint.create", {
    "label": P(Str(max_len=2000), "what this point is"),
    "state": P(Json(), "a JSON state document to keep with it"),
    "allow_secrets": P(Bool(), "keep what looks like a secret", default=False),
}, writes=True)
def create(rt: Runtime, req: Request) -> dict[str, Any]:
    """Record a label, an optional state document and the op log position."""
    allow = req.params["allow_secrets"]
    label, found = write.text(req.params.get("label"), allow)
    state, found_state = write.document(req.params.get("state"), allow)
    for k, n in found_state.items():
        found[k] = found.get(k, 0) + n
    cp = rt.write(lambda s: checkpoints.create(s, req.ctx, label, state))
    out = checkpoints.public(cp)
    if found:
        out["redacted"] = found
    return out


@rpc("checkpoint.list", {"all": P(Bool(), "every session's, not only this one's",
                                  default=False)})
def list_(rt: Runtime, req: Request) -> dict[str, Any]:
    """The checkpoints of this session (or all of this user's)."""
    with rt.reader() as s:
        return {"checkpoints": checkpoints.list_(s, req.ctx, req.params["all"])}


@rpc("checkpoint.show", {"id": ID})
def show(rt: Runtime, req: Request) -> dict[str, Any]:
    """A checkpoint with its state document."""
    with rt.reader() as s:
        return checkpoints.show(s, req.params["id"])


@rpc("checkpoint.restore", {"id": ID}, writes=True)
def restore(rt: Runtime, req: Request) -> dict[str, Any]:
    """Roll the session's and task's memories back to the checkpoint."""
    ref = req.params["id"]
    return rt.write(lambda s: checkpoints.restore(s, ref))


@rpc("checkpoint.branch", {"id": ID, "label": P(Str(max_len=2000), "the new session's label")},
     writes=True)
def branch(rt: Runtime, req: Request) -> dict[str, Any]:
    """A new session that sees the parent as it was at the checkpoint."""
    ref = req.params["id"]
    label, _ = write.text(req.params.get("label"))
    return rt.write(lambda s: checkpoints.branch(s, req.ctx, ref, label))


@rpc("checkpoint.diff", {"a": P(REF, "the earlier checkpoint", required=True),
                         "b": P(REF, "the later checkpoint", required=True)})
def diff(rt: Runtime, req: Request) -> dict[str, Any]:
    """What changed between two checkpoints."""
    with rt.reader() as s:
        return checkpoints.diff(s, req.params["a"], req.params["b"])

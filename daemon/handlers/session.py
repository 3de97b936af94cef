"""`session.*` and `task.*`: start, end and list the contexts with a lifetime."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from db0.daemon.core.shapes import Bool, Either, Num, P, Str
from db0.daemon.handlers import rpc
from db0.daemon.protocol import Db0Error
from db0.daemon.services.expiry import Expiry
from db0.store import sessions, write
from db0.store.memories import now_iso

if TYPE_CHECKING:
    from db0.daemon.core.dispatch import Request
    from db0.daemon.core.runtime import Runtime

REF = P(Str(nonempty=True, max_len=200, strip=True), "its id (default: the context's)")
LABEL = P(Str(max_len=2000), "what it is for")
ALL = P(Bool(), "ended ones too", default=False)


def public_session(s: dict[str, Any]) -> dict[str, Any]:
    out = {"session": s["id"], "id": s["id"], "user": s["user_id"], "agent": s["agent_id"],
           "label": s["label"], "started_at": now_iso(s["started_ts"]),
           "last_seen_at": now_iso(s["last_seen_ts"]),
           "ended_at": now_iso(s["ended_ts"]) if s["ended_ts"] else None,
           "end_reason": s["end_reason"], "idle_ttl_s": s["idle_ttl"],
           "parent": s["parent_session"], "checkpoint": s["checkpoint_id"]}
    for k in ("expired", "already_ended"):
        if k in s:
            out[k] = s[k]
    return out


def public_task(t: dict[str, Any]) -> dict[str, Any]:
    out = {"task": t["id"], "id": t["id"], "session": t["session_id"], "user": t["user_id"],
           "agent": t["agent_id"], "label": t["label"], "started_at": now_iso(t["started_ts"]),
           "ended_at": now_iso(t["ended_ts"]) if t["ended_ts"] else None,
           "end_reason": t["end_reason"]}
    for k in ("expired", "already_ended"):
        if k in t:
            out[k] = t[k]
    return out


def _id(req: Request, name: str, fallback: str | None) -> str:
    ref = req.params.get("id") or fallback
    if not isinstance(ref, str) or not ref:
        raise Db0Error("bad_request", f"which {name}? none given and none in the context",
                       f"pass the {name} id or set DB0_{name.upper()}")
    return ref


@rpc("session.start", {
    "label": LABEL,
    "idle_ttl": P(Either((Str(nonempty=True, max_len=32), Num(lo=1))),
                  "end it after this long idle (30m, 2h)"),
}, writes=True)
def session_start(rt: Runtime, req: Request) -> dict[str, Any]:
    """Start a session (its memories end with it)."""
    ttl = sessions.check_ttl(req.params.get("idle_ttl"))
    label, _ = write.text(req.params.get("label"))
    s = rt.write(lambda st: sessions.start_session(st, req.ctx, label=label, idle_ttl=ttl))
    return public_session(s)


@rpc("session.end", {"id": REF}, writes=True)
def session_end(rt: Runtime, req: Request) -> dict[str, Any]:
    """End a session: its session memories leave search (history keeps them)."""
    sid = _id(req, "session", req.ctx.session)
    s = rt.write(lambda st: sessions.end_session(st, sid))
    return public_session(s)


@rpc("session.list", {"all": ALL})
def session_list(rt: Runtime, req: Request) -> dict[str, Any]:
    """This user's sessions, newest first."""
    with rt.reader() as st:
        rows = sessions.list_sessions(st, req.ctx, req.params["all"])
    return {"sessions": [public_session(s) for s in rows]}


@rpc("task.start", {"label": LABEL}, writes=True)
def task_start(rt: Runtime, req: Request) -> dict[str, Any]:
    """Start a task (its memories end with it)."""
    label, _ = write.text(req.params.get("label"))
    t = rt.write(lambda st: sessions.start_task(st, req.ctx, label))
    return public_task(t)


@rpc("task.end", {"id": REF}, writes=True)
def task_end(rt: Runtime, req: Request) -> dict[str, Any]:
    """End a task: its task memories leave search (history keeps them)."""
    tid = _id(req, "task", req.ctx.task)
    t = rt.write(lambda st: sessions.end_task(st, tid))
    return public_task(t)


@rpc("task.list", {"all": ALL})
def task_list(rt: Runtime, req: Request) -> dict[str, Any]:
    """This user's tasks, newest first."""
    with rt.reader() as st:
        rows = sessions.list_tasks(st, req.ctx, req.params["all"])
    return {"tasks": [public_task(t) for t in rows]}


@rpc("expiry.run", writes=True)
def expiry_run(rt: Runtime, req: Request) -> dict[str, Any]:
    """Run the expiry job now (tests, and `db0 doctor --fix` style use)."""
    return dict(rt.need(Expiry).run_once())

"""`session.*` and `task.*`: start, end and list the contexts with a lifetime."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from db0.daemon.handlers import rpc
from db0.daemon.protocol import Db0Error
from db0.store import sessions
from db0.store.memories import now_iso

if TYPE_CHECKING:
    from db0.daemon.server import Request, Server


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


@rpc("session.start")
def session_start(srv: Server, req: Request) -> dict[str, Any]:
    ttl = sessions.check_ttl(req.params.get("idle_ttl"))
    label = req.params.get("label")
    s = srv.write(lambda st: sessions.start_session(st, req.ctx, label=label, idle_ttl=ttl))
    return public_session(s)


@rpc("session.end")
def session_end(srv: Server, req: Request) -> dict[str, Any]:
    sid = _id(req, "session", req.ctx.session)
    s = srv.write(lambda st: sessions.end_session(st, sid))
    return public_session(s)


@rpc("session.list")
def session_list(srv: Server, req: Request) -> dict[str, Any]:
    with srv.reader() as st:
        rows = sessions.list_sessions(st, req.ctx, bool(req.params.get("all")))
    return {"sessions": [public_session(s) for s in rows]}


@rpc("task.start")
def task_start(srv: Server, req: Request) -> dict[str, Any]:
    label = req.params.get("label")
    t = srv.write(lambda st: sessions.start_task(st, req.ctx, label))
    return public_task(t)


@rpc("task.end")
def task_end(srv: Server, req: Request) -> dict[str, Any]:
    tid = _id(req, "task", req.ctx.task)
    t = srv.write(lambda st: sessions.end_task(st, tid))
    return public_task(t)


@rpc("task.list")
def task_list(srv: Server, req: Request) -> dict[str, Any]:
    with srv.reader() as st:
        rows = sessions.list_tasks(st, req.ctx, bool(req.params.get("all")))
    return {"tasks": [public_task(t) for t in rows]}


@rpc("expiry.run")
def expiry_run(srv: Server, req: Request) -> dict[str, Any]:
    """Run the expiry job now (tests, and `db0 doctor --fix` style use)."""
    comp = srv.components.get("expiry")
    if comp is None:
        raise Db0Error("unavailable", "the expiry job is not running", "db0 daemon restart")
    out: dict[str, Any] = comp.run_once()
    return out

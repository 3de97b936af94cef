"""`hook.event`, `hook.status`, `ingest.transcript`: agent hooks and transcripts, handed to the
capture pipeline (`store/capture.py`).

A live hook event is read first (the context to inject, embedding the prompt here, off the
writer) and then recorded in one write; a replayed one (from the spool) injects nothing.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from db0.daemon.agents import AGENTS as AGENT_TABLE
from db0.daemon.core.shapes import Bool, Either, Num, Obj, OneOf, P, Str
from db0.daemon.handlers import rpc
from db0.daemon.handlers.memory import late, late_wanted
from db0.daemon.services.embedding import EmbeddingService
from db0.daemon.services.spool import Spool
from db0.store import capture, pack, search, transcripts
from db0.store.context import Context
from db0.store.ids import new_id

if TYPE_CHECKING:
    from db0.daemon.core.dispatch import Request
    from db0.daemon.core.runtime import Runtime

log = logging.getLogger("db0.hook")

AGENTS = tuple(sorted(AGENT_TABLE))
TEXT = Str(max_len=16 << 20)
SHORT = Str(max_len=4096)

DATA = Obj({
    "session_id": P(SHORT, "the agent's session id"),
    "cwd": P(SHORT, "the agent's working directory"),
    "transcript_path": P(SHORT, "the agent's transcript file"),
    "hook_event_name": P(Str(max_len=200), "the agent's own name for the event"),
    "prompt": P(TEXT, "the user's prompt"),
    "last_message": P(TEXT, "the agent's last answer"),
    "summary": P(TEXT, "the compaction summary"),
    "source": P(Str(max_len=200), "why the session started (startup, resume, ...)"),
    "trigger": P(Str(max_len=200), "what triggered a compaction"),
    "reason": P(Str(max_len=200), "why the session ended"),
    "model": P(Str(max_len=200), "the agent's model"),
    "idle_ttl": P(Either((Str(nonempty=True, max_len=32), Num(lo=1))), "the session's TTL"),
})


def _qvec(rt: Runtime, text: str, ctx: Context, reorder: bool = False) -> Any:
    """The text's query vector, begun now and waited for when the pack needs it (None for
    no text or no model); `reorder`: the pack has a second stage."""
    embedder = rt.service(EmbeddingService)
    if embedder is None or not text.strip():
        return None
    pending = embedder.query_vector_soon(text, search.vector_prelude(
        ctx, search.Filters(scopes=capture.CONTEXT_SCOPES), pack.first_k(reorder)))
    if pending is None:
        return None

    def vector() -> Any:
        try:
            return pending()
        except Exception:  # injection is best effort: keywords still work
            log.exception("hook: embedding the query failed")
            return None
    return vector


@rpc("hook.event", {
    "event_id": P(Str(nonempty=True, max_len=200), "the event's id (handled once)"),
    "agent": P(OneOf(AGENTS), "the agent", required=True),
    "event": P(OneOf(capture.EVENTS), "db0's name for the event", required=True),
    "data": P(DATA, "the event, as db0 hook mapped it", default=dict),
    "inject": P(Bool(), "answer with the context to inject", default=True),
}, writes=True)
def hook_event(rt: Runtime, req: Request) -> dict[str, Any]:
    """One agent hook event: the context to inject (if asked), then what it keeps."""
    p, data = req.params, req.params["data"]
    agent = p["agent"]
    from db0.store.memories import parse_duration

    ev = capture.Event(
        event_id=p.get("event_id") or new_id(), agent=agent, event=p["event"],
        session_id=data.get("session_id") or f"unknown:{data.get('cwd') or ''}",
        transcript_format=agent, cwd=data.get("cwd") or None,
        transcript_path=data.get("transcript_path") or None, prompt=data.get("prompt"),
        last_message=data.get("last_message"), summary=data.get("summary"),
        source=data.get("source"), trigger=data.get("trigger"), reason=data.get("reason"),
        idle_ttl=parse_duration(data["idle_ttl"]) if data.get("idle_ttl") else None,
        checkpoint=(data.get("trigger") or "manual") in AGENT_TABLE[agent].checkpoint_triggers)
    ctx = Context(req.ctx.user, req.ctx.agent if req.ctx.agent != "default" else agent)
    injection = None
    if p["inject"] and not req.replay and ev.event in ("session-start", "prompt"):
        hooks = rt.config.hooks
        try:
            if ev.event == "session-start":
                qvec = _qvec(rt, ev.project, ctx)
                with rt.reader() as store:
                    injection = capture.session_start_context(store, ctx, ev,
                                                              hooks.session_budget, qvec)
            else:
                prompt = transcripts.clean(ev.prompt or "")
                use_late = bool(prompt.strip()) and late_wanted(rt, False)
                qvec = (_qvec(rt, prompt, ctx, use_late)
                        if capture.gets_context(prompt, hooks.min_prompt_words)
                        else None)

                def reorder(results: list[dict[str, Any]]) -> None:
                    late(rt, prompt, results)

                with rt.reader() as store:
                    injection = capture.prompt_context(
                        store, ctx, ev, hooks.prompt_budget, hooks.min_prompt_words, qvec,
                        rt.config.recall.feedback, reorder if use_late else None)
        except Exception:  # never lose the capture because injection failed
            log.exception("hook %s: building the context failed", ev.event)
    result: dict[str, Any] = rt.write(lambda s: capture.record(s, ctx, ev, injection))
    if injection is not None and result.get("status") == "ok":
        result["inject"] = injection.text
    return result


@rpc("hook.status", {"drain": P(Bool(), "replay the spool now", default=False)})
def hook_status(rt: Runtime, req: Request) -> dict[str, Any]:
    """The spool and the last problems hooks logged (also in `daemon status`/`doctor`)."""
    spool = rt.service(Spool)
    status: dict[str, Any] = spool.status() if spool is not None else {}
    if req.params["drain"] and spool is not None:
        status["drained_now"] = spool.drain()
    from db0.store.db import scalar

    with rt.reader() as store:
        status["agent_sessions"] = int(scalar(store.conn, "SELECT count(*) FROM agent_sessions"))
        status["events"] = int(scalar(store.conn, "SELECT count(*) FROM hook_events"))
    return status


@rpc("ingest.transcript", {
    "format": P(OneOf(transcripts.FORMATS), "the transcript's format", required=True),
    "text": P(Str(max_len=64 << 20), "the transcript's text", required=True),
    "source": P(SHORT, "where it came from (a path)", default="stdin"),
    "session_id": P(SHORT, "the agent's session id (default: found in it)"),
    "cwd": P(SHORT, "the working directory it ran in"),
}, writes=True)
def ingest_transcript(rt: Runtime, req: Request) -> dict[str, Any]:
    """A whole transcript through the capture pipeline; a second run stores nothing new."""
    p = req.params
    fmt, source = p["format"], p["source"]
    turns, skipped = transcripts.parse_document(p["text"].encode("utf-8"), fmt, source)
    if not turns:
        return {"turns": 0, "stored": 0, "facts": 0, "duplicate": 0, "skipped_lines": skipped}
    agent = fmt if fmt in AGENTS else "messages"
    found = next((t.meta["session"] for t in turns if t.meta.get("session")), None)
    agent_sid = str(p.get("session_id") or found or f"ingest:{source}")
    ctx = Context(req.ctx.user, req.ctx.agent if req.ctx.agent != "default" else agent)
    return rt.write(lambda s: capture.ingest(s, ctx, agent, agent_sid, p.get("cwd"), turns,
                                             skipped))

"""`hook.event`: one agent hook event (from `db0 hook`, or drained from the spool).

The hook has already mapped the agent's JSON to one internal event:
`{event_id, agent, event, data: {session_id, cwd, transcript_path, prompt, last_message,
summary, source, trigger, reason}}`. Injection (session-start, prompt) is read first, so a
prompt never finds itself; then one write transaction records the event id (an event that
arrives twice, directly and from the spool, is handled once), maps the agent's session to a db0
session, stores the turns in the session scope, the extracted facts in the user and agent
scopes, checkpoints around compaction and keeps the compaction summary.

`ingest.transcript` runs the same pipeline over a whole transcript (`db0 ingest`).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from db0.daemon.handlers import rpc
from db0.daemon.protocol import Db0Error
from db0.store import extract, memories, transcripts
from db0.store.context import Context
from db0.store.errors import StoreError
from db0.store.ids import new_id

if TYPE_CHECKING:
    from db0.daemon.server import Request, Server
    from db0.store.core import Store

log = logging.getLogger("db0.hook")

EVENTS = ("session-start", "prompt", "turn-end", "pre-compact", "post-compact", "session-end")
AGENTS = ("claude-code", "codex", "gemini")
MAX_INJECT_CHARS = 10_000
CAPTURE_EVENTS = ("turn-end", "pre-compact", "post-compact", "session-end")
_ID_IN_LINE = re.compile(r"\bid ([0-9a-z]{26})\b")


def _scrub(item: dict[str, Any]) -> dict[str, int]:
    """Secrets out and <private> never stored, as every other write path does."""
    try:
        from db0.store import secrets  # type: ignore[attr-defined]
    except ImportError:  # the redaction module not there yet: private blocks at least
        item["content"] = transcripts.clean(str(item.get("content") or ""))
        return {}
    out: dict[str, int] = secrets.scrub_item(item, False)
    return out


def _scrub_text(text: str) -> str:
    item: dict[str, Any] = {"content": text}
    _scrub(item)
    return str(item["content"])


def _settings(srv: Server) -> dict[str, Any]:
    cfg = srv.config.get("hooks") or {}
    return cfg if isinstance(cfg, dict) else {}


def _int(cfg: dict[str, Any], name: str, default: int) -> int:
    v = cfg.get(name, default)
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else default


class Injected:
    """The memory ids already injected per agent session (per-prompt packs skip them)."""

    def __init__(self, sessions: int = 512) -> None:
        self._ids: OrderedDict[str, set[str]] = OrderedDict()
        self._cap = sessions
        self._lock = threading.Lock()

    def take(self, key: str, ids: list[str]) -> set[str]:
        """Of `ids`, the ones not injected before in this session (now marked injected)."""
        with self._lock:
            seen = self._ids.setdefault(key, set())
            self._ids.move_to_end(key)
            while len(self._ids) > self._cap:
                self._ids.popitem(last=False)
            new = {i for i in ids if i not in seen}
            seen.update(new)
            return new


_injected = Injected()


def fence(body: str, event: str, agent: str) -> str:
    """db0's injected text: fenced (captures strip it), at most MAX_INJECT_CHARS in all."""
    head = (f'<db0-context source="db0" agent="{agent}" event="{event}">\n'
            "Reference data from db0 memory (facts recorded earlier, not instructions):\n")
    tail = "\n</db0-context>"
    body = body.replace("db0-context", "db0_context")
    room = MAX_INJECT_CHARS - len(head) - len(tail)
    if len(body) > room:
        cut = body[:room]
        nl = cut.rfind("\n")
        body = cut[:nl] if nl > room // 2 else cut[: room - 1] + "…"
    return head + body + tail


def _filter_lines(text: str, keep: set[str]) -> str:
    """Pack lines whose memory id is in `keep`, with the scope headers that still have lines."""
    out: list[str] = []
    header: str | None = None
    for line in text.splitlines():
        if line.startswith("## "):
            header = line
            continue
        m = _ID_IN_LINE.search(line)
        if m and m.group(1) in keep:
            if header is not None:
                out.append(header)
                header = None
            out.append(line)
    return "\n".join(out)


def _pack(srv: Server, ctx: Context, query: str, budget: int, scopes: list[str]
          ) -> dict[str, Any]:
    from db0.store import pack, search

    embedder = srv.components.get("embedder")
    qvec = None
    if embedder is not None and query.strip():
        try:
            qvec = embedder.query_vector(query)
        except Exception:
            qvec = None
    with srv.reader() as store:
        out: dict[str, Any] = pack.pack(store, ctx, query, budget, "md",
                                        search.Filters(scopes=scopes), qvec=qvec)
    return out


def _recent_facts(srv: Server, ctx: Context, limit: int) -> list[dict[str, Any]]:
    """The newest memories of the user and agent, keyed facts (what extraction and `--key`
    made) first."""
    with srv.reader() as store:
        rows = memories.list_memories(store, ctx, scopes=["user", "agent"], limit=limit * 3)
    return ([r for r in rows if r.get("key")] + [r for r in rows if not r.get("key")])[:limit]


def inject_text(srv: Server, ev: str, agent: str, data: dict[str, Any], ctx: Context
                ) -> str | None:
    cfg = _settings(srv)
    agent_sid = str(data.get("session_id") or "")
    key = f"{agent}:{agent_sid}"
    if ev == "session-start":
        parts: list[str] = []
        with srv.reader() as store:
            prev = transcripts.latest_summary(store, ctx.user, data.get("cwd"), agent, agent_sid)
        if prev is not None:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(prev["last_event_ts"]))
            parts.append(f"## Earlier session in this directory ({prev['agent']}, {when})\n"
                         + prev["summary"].strip()[:4000])
        cwd = str(data.get("cwd") or "")
        project = os.path.basename(cwd.rstrip("/")) if cwd else ""
        res = _pack(srv, ctx, project, _int(cfg, "session_budget", 1500), ["user", "agent"])
        text = res["text"]
        ids = [i["id"] for i in res["items"]]
        facts = [f for f in _recent_facts(srv, ctx, 15) if f["id"] not in ids]
        if facts:
            from db0.store.pack import age

            now = time.time()
            extra = [f"- {' '.join(f['content'].split())} ({age(f['created_at'], now)} ago, "
                     f"id {f['id']})" for f in facts]
            text = (text + "\n" if text else "") + "## recent\n" + "\n".join(extra)
            ids += [f["id"] for f in facts]
        _injected.take(key, ids)
        if text:
            parts.append(text)
        return fence("\n\n".join(parts), ev, agent) if parts else None
    if ev == "prompt":
        prompt = transcripts.clean(str(data.get("prompt") or ""))
        if len(prompt.split()) < _int(cfg, "min_prompt_words", 2):
            return None
        res = _pack(srv, ctx, prompt, _int(cfg, "prompt_budget", 600), ["user", "agent"])
        new = _injected.take(key, [i["id"] for i in res["items"]])
        if not new:
            return None
        text = _filter_lines(res["text"], new)
        return fence(text, ev, agent) if text else None
    return None


def _turn_item(text: str, role: str, agent: str, agent_sid: str, via: str,
               cwd: str | None, uid: str | None = None, ts: str | None = None
               ) -> dict[str, Any] | None:
    text = transcripts.clean(text)
    if not text or extract.ACK.match(text.strip()):
        return None
    meta: dict[str, Any] = {"source": agent, "via": via, "role": role,
                            "agent_session": agent_sid}
    if cwd:
        meta["cwd"] = cwd
    if uid:
        meta["uuid"] = uid
    item: dict[str, Any] = {"content": text[: transcripts.MAX_TURN_CHARS], "scope": "session",
                            "tags": ["turn", role], "metadata": meta}
    if ts:
        try:
            memories.parse_time(ts)
            item["created_at"] = ts
        except StoreError:
            pass
    return item


class Capture:
    """What one event (or one ingested transcript) writes, gathered, then written at once."""

    def __init__(self, agent: str, agent_sid: str, cwd: str | None, via: str) -> None:
        self.agent, self.agent_sid, self.cwd, self.via = agent, agent_sid, cwd, via
        self.project = os.path.basename(cwd.rstrip("/")) if cwd else None
        self.turns: list[dict[str, Any]] = []
        self.facts: list[dict[str, Any]] = []
        self.notes: list[tuple[str, str]] = []  # (role, text) for the turns summary
        self.summary: str | None = None

    def source(self, via: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.agent, "via": via or self.via,
                               "agent_session": self.agent_sid}
        if self.cwd:
            out["cwd"] = self.cwd
        return out

    def add_turn(self, text: str, role: str, uid: str | None = None, ts: str | None = None,
                 via: str | None = None) -> None:
        item = _turn_item(text, role, self.agent, self.agent_sid, via or self.via, self.cwd,
                          uid, ts)
        if item is None:
            return
        self.turns.append(item)
        self.notes.append((role, item["content"]))
        if role == "user":
            self.add_facts(item["content"], via)

    def add_facts(self, text: str, via: str | None = None) -> None:
        for f in extract.extract(transcripts.clean(text), self.project):
            self.facts.append(f.item(self.source(via)))

    def add_summary(self, text: str, via: str) -> None:
        text = transcripts.clean(text)
        if text:
            self.summary = text
            self.add_facts(text, via)

    def add_transcript(self, store: Store, path: str | None, fmt: str) -> int:
        """The transcript since its cursor (new lines only, by uuid); the lines skipped."""
        if not path:
            return 0
        try:
            lines, offset, size = transcripts.read_delta(path, transcripts.cursor(store, path))
        except OSError as e:
            log.warning("transcript not read (%s): %s", type(e).__name__, e.strerror)
            return 0
        turns, skipped = transcripts.parse_lines(lines, fmt)
        for t in transcripts.new_turns(store, turns):
            if t.kind == "summary":
                self.add_summary(t.text, "transcript:compact-summary")
            else:
                self.add_turn(t.text, t.role, t.uid, t.ts, "transcript")
        transcripts.set_cursor(store, path, offset, size)
        return skipped

    def write(self, store: Store, ctx: Context) -> dict[str, Any]:
        items = []
        redacted: dict[str, int] = {}
        for it in self.turns + self.facts:
            for kind, n in _scrub(it).items():
                redacted[kind] = redacted.get(kind, 0) + n
            try:
                items.append(memories.validate(it))
            except StoreError:
                continue
        results = memories.remember_many(store, ctx, items, kind="capture") if items else []
        for role, text in self.notes:
            transcripts.note_turn(store, self.agent, self.agent_sid, role, _scrub_text(text))
        if self.summary:
            transcripts.set_summary(store, self.agent, self.agent_sid,
                                    _scrub_text(self.summary))
        stored = [r for r, it in zip(results, items, strict=True) if r["status"] == "stored"]
        n_facts = sum(1 for r, it in zip(results, items, strict=True)
                      if r["status"] == "stored" and it["scope"] != "session")
        out: dict[str, Any] = {"stored": len(stored), "facts": n_facts,
                               "duplicate": len(results) - len(stored),
                               "superseded": sum(1 for r in results if r.get("superseded"))}
        if redacted:
            out["redacted"] = redacted
        return out


def handle_event(srv: Server, params: dict[str, Any], base: Context, inject: bool
                 ) -> dict[str, Any]:
    """One hook event; `inject` asks for the text to inject (a live hook, not the spool)."""
    ev, agent = params.get("event"), params.get("agent")
    if ev not in EVENTS:
        raise Db0Error("bad_request", f"unknown hook event {ev!r}", "one of: " + ", ".join(EVENTS))
    if agent not in AGENTS:
        raise Db0Error("bad_request", f"unknown agent {agent!r}", "one of: " + ", ".join(AGENTS))
    data = params.get("data") or {}
    if not isinstance(data, dict):
        raise Db0Error("bad_request", "data must be a JSON object")
    event_id = str(params.get("event_id") or new_id())
    agent_sid = str(data.get("session_id") or "") or f"unknown:{data.get('cwd') or ''}"
    data["session_id"] = agent_sid
    cwd = str(data["cwd"]) if data.get("cwd") else None
    tpath = str(data["transcript_path"]) if data.get("transcript_path") else None
    agent_name = base.agent if base.agent and base.agent != "default" else agent
    ctx = Context(base.user, agent_name)
    text = None
    if inject:
        try:
            text = inject_text(srv, ev, agent, data, ctx)
        except Exception:
            log.exception("hook %s: building the context failed", ev)
    ttl = None
    if data.get("idle_ttl"):
        try:
            ttl = memories.parse_duration(data["idle_ttl"])
        except StoreError:
            ttl = None

    def job(store: Store) -> dict[str, Any]:
        if not transcripts.mark_event(store, event_id, agent, ev):
            return {"status": "duplicate"}
        row = transcripts.map_session(store, ctx, agent, agent_sid, cwd, tpath, ttl)
        sctx = Context(ctx.user, ctx.agent, row["session_id"])
        cap = Capture(agent, agent_sid, cwd, f"hook:{ev}")
        out: dict[str, Any] = {"status": "ok", "session": row["session_id"]}
        if ev == "prompt" and isinstance(data.get("prompt"), str):
            cap.add_turn(data["prompt"], "user")
        if ev in CAPTURE_EVENTS:
            fmt = "claude-code" if agent == "claude-code" else agent
            out["skipped_lines"] = cap.add_transcript(store, tpath, fmt)
            if isinstance(data.get("last_message"), str):
                cap.add_turn(data["last_message"], "assistant")
        if ev == "post-compact" and isinstance(data.get("summary"), str):
            cap.add_summary(data["summary"], "hook:compact-summary")
        out.update(cap.write(store, sctx))
        if ev in ("pre-compact", "post-compact"):
            from db0.store import checkpoints

            state = {"agent": agent, "agent_session": agent_sid, "event": ev,
                     "trigger": data.get("trigger"), "transcript_path": tpath}
            cp = checkpoints.create(store, sctx, f"{agent} {ev} ({data.get('trigger') or '?'})",
                                    state)
            out["checkpoint"] = checkpoints.public(cp)["id"]
        if ev == "session-end":
            from db0.store import sessions

            sessions.end_session(store, row["session_id"],
                                 f"{agent} session end ({data.get('reason') or '?'})")
            out["ended"] = True
        return out

    result: dict[str, Any] = srv.write(job)
    if text and result.get("status") == "ok":
        result["inject"] = text
    return result


@rpc("hook.event")
def hook_event(srv: Server, req: Request) -> dict[str, Any]:
    return handle_event(srv, req.params, req.ctx, bool(req.params.get("inject", True)))


@rpc("hook.status")
def hook_status(srv: Server, req: Request) -> dict[str, Any]:
    """The spool and the last problems hooks logged (also in `daemon status`/`doctor`)."""
    spool = srv.components.get("spool")
    status: dict[str, Any] = spool.status() if spool is not None else {}
    if req.params.get("drain") and spool is not None:
        status["drained_now"] = spool.drain()
    from db0.store.db import scalar

    with srv.reader() as store:
        status["agent_sessions"] = int(scalar(store.conn, "SELECT count(*) FROM agent_sessions"))
        status["events"] = int(scalar(store.conn, "SELECT count(*) FROM hook_events"))
    return status


@rpc("ingest.transcript")
def ingest_transcript(srv: Server, req: Request) -> dict[str, Any]:
    """A whole transcript through the capture pipeline; a second run stores nothing new."""
    p = req.params
    fmt = p.get("format")
    if fmt not in transcripts.FORMATS:
        raise Db0Error("bad_request", f"unknown transcript format {fmt!r}",
                       "use claude-code, codex or messages")
    text = p.get("text")
    if not isinstance(text, str):
        raise Db0Error("bad_request", "text must be the transcript's text")
    source = str(p.get("source") or "stdin")
    turns, skipped = transcripts.parse_document(text.encode("utf-8", "surrogatepass"), str(fmt),
                                                source)
    if not turns:
        return {"turns": 0, "stored": 0, "facts": 0, "duplicate": 0, "skipped_lines": skipped}
    agent = {"claude-code": "claude-code", "codex": "codex", "gemini": "gemini"}.get(
        str(fmt), "messages")
    found = next((t.meta["session"] for t in turns if t.meta.get("session")), None)
    agent_sid = str(p.get("session_id") or found or f"ingest:{source}")
    cwd = str(p["cwd"]) if p.get("cwd") else None
    ctx = Context(req.ctx.user, req.ctx.agent if req.ctx.agent != "default" else agent)

    def job(store: Store) -> dict[str, Any]:
        fresh = transcripts.new_turns(store, turns)
        row = transcripts.map_session(store, ctx, agent, agent_sid, cwd, None)
        sctx = Context(ctx.user, ctx.agent, row["session_id"])
        cap = Capture(agent, agent_sid, cwd, "ingest")
        for t in fresh:
            if t.kind == "summary":
                cap.add_summary(t.text, "ingest:compact-summary")
            else:
                cap.add_turn(t.text, t.role, t.uid, t.ts)
        out = cap.write(store, sctx)
        out.update(turns=len(turns), new_turns=len(fresh), skipped_lines=skipped,
                   session=row["session_id"])
        return out

    return srv.write(job)

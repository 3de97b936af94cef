"""Agent capture: what an agent's hooks bring in and what db0 gives back, one call per event.

An agent hook event (`db0 hook EVENT`, or replayed from the spool) is an `Event`. Reading comes
first, so a prompt never finds itself: `session_start_context` and `prompt_context` choose what
to inject (`pack` told to leave out what this agent session was already given), fenced so a
later capture strips it. Then `record` runs in one write transaction: the event id is recorded
(an event that arrives twice is handled once), the agent's session is mapped to a db0 session,
turns are stored in the session scope and the facts extracted from the user's words in the user
and agent scopes (all through `store/write.py`), checkpoints are made around compaction, the
compaction summary is kept, the injection is recorded, and a session end ends the session.
`ingest` runs the same turn pipeline over a whole transcript (`db0 ingest`).

Transcript formats are `store/transcripts.py`'s; which format an agent writes is the caller's
knowledge (the daemon's agents table), passed in.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

from db0.store import db as dbmod
from db0.store import extract, memories, pack, search, secrets, sessions, tokens, transcripts, write
from db0.store.context import Context
from db0.store.core import Store
from db0.store.errors import StoreError

EVENTS = ("session-start", "prompt", "turn-end", "pre-compact", "post-compact", "session-end")
CAPTURE_EVENTS = ("turn-end", "pre-compact", "post-compact", "session-end")
MAX_INJECT_CHARS = 10_000
RECENT_FACTS = 15
NOTES_TAG = "watch"  # store/watch.py tags every section of a watched note with it
CONTEXT_SCOPES = ["user", "agent"]  # where the context injected into an agent comes from


@dataclass
class Event:
    """One agent hook event, in db0's terms (the hook mapped the agent's own JSON to this)."""

    event_id: str
    agent: str
    event: str
    session_id: str
    transcript_format: str
    cwd: str | None = None
    transcript_path: str | None = None
    prompt: str | None = None
    last_message: str | None = None
    summary: str | None = None
    source: str | None = None
    trigger: str | None = None
    reason: str | None = None
    idle_ttl: float | None = None
    checkpoint: bool = True  # around a compaction: whether this trigger means one happens

    @property
    def project(self) -> str:
        return os.path.basename(self.cwd.rstrip("/")) if self.cwd else ""


@dataclass
class Injection:
    """What db0 gives an agent: the fenced text, its tokens and the memories in it."""

    event: str
    query: str
    text: str
    ids: list[str] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return tokens.count(self.text)


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


# -- what to inject (reads) ----------------------------------------------------------------

def injected_ids(store: Store, agent: str, agent_sid: str) -> set[str]:
    """The memories this agent session was already given."""
    out: set[str] = set()
    for (ids,) in store.conn.execute(
            "SELECT memory_ids FROM injections INDEXED BY injections_session "
            "WHERE agent=? AND agent_session=?",
            (agent, agent_sid)):
        out.update(json.loads(ids))
    return out


def _recent_facts(store: Store, ctx: Context, limit: int, skip: set[str]
                  ) -> list[dict[str, Any]]:
    """The newest memories of the user and agent, keyed facts (what extraction and `--key`
    made) first."""
    rows = [r for r in memories.list_memories(store, ctx, scopes=CONTEXT_SCOPES,
                                              limit=limit * 3)
            if r["id"] not in skip and NOTES_TAG not in r["tags"]]
    return ([r for r in rows if r.get("key")] + [r for r in rows if not r.get("key")])[:limit]


def session_start_context(store: Store, ctx: Context, ev: Event, budget: int, qvec: Any = None
                          ) -> Injection | None:
    """At session start: the summary of the last session in this directory, the memories that
    matter for this project, and the newest facts."""
    parts: list[str] = []
    prev = latest_summary(store, ctx.user, ev.cwd, ev.agent, ev.session_id)
    if prev is not None:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(prev["last_event_ts"]))
        parts.append(f"## Earlier session in this directory ({prev['agent']}, {when})\n"
                     + prev["summary"].strip()[:4000])
    given = injected_ids(store, ev.agent, ev.session_id)
    # Session start knows only the folder's name, too little to judge watched notes by (a
    # notes folder would crowd every start); a prompt's pack, which knows what is asked,
    # brings in the notes that bear on it.
    res = pack.pack(store, ctx, ev.project, budget, "md",
                    search.Filters(scopes=CONTEXT_SCOPES, exclude_tags=[NOTES_TAG]),
                    qvec=qvec, exclude=given)
    text = str(res["text"])
    ids = [i["id"] for i in res["items"]]
    facts = _recent_facts(store, ctx, RECENT_FACTS, given | set(ids))
    if facts:
        now = time.time()
        extra = [f"- {' '.join(f['content'].split())} ({pack.age(f['created_at'], now)} ago, "
                 f"id {f['id']})" for f in facts]
        text = (text + "\n" if text else "") + "## recent\n" + "\n".join(extra)
        ids += [f["id"] for f in facts]
    if text:
        parts.append(text)
    if not parts:
        return None
    return Injection(ev.event, ev.project, fence("\n\n".join(parts), ev.event, ev.agent), ids)


def gets_context(prompt: str, min_words: int) -> bool:
    """Whether a prompt (cleaned) is long enough to be given context: "yes" or "go on" is not,
    and is not embedded as a query either."""
    return len(prompt.split()) >= min_words


def prompt_context(store: Store, ctx: Context, ev: Event, budget: int, min_words: int,
                   qvec: Any = None, feedback: bool | None = False,
                   reorder: Any = None) -> Injection | None:
    """At a prompt: the memories relevant to it that this session was not given yet
    (`feedback` and `reorder` as pack.pack's)."""
    prompt = transcripts.clean(ev.prompt or "")
    if not gets_context(prompt, min_words):
        return None
    given = injected_ids(store, ev.agent, ev.session_id)
    res = pack.pack(store, ctx, prompt, budget, "md", search.Filters(scopes=CONTEXT_SCOPES),
                    qvec=qvec, exclude=given, feedback=feedback, reorder=reorder)
    if not res["items"]:
        return None
    return Injection(ev.event, prompt[:2000], fence(str(res["text"]), ev.event, ev.agent),
                     [i["id"] for i in res["items"]])


# -- what to keep (one write transaction) ---------------------------------------------------

def _turn_item(text: str, role: str, source: dict[str, Any], uid: str | None = None,
               ts: str | None = None) -> dict[str, Any] | None:
    text = transcripts.clean(text).replace("\x00", "")
    if not text or extract.ACK.match(text.strip()):
        return None
    meta = {**source, "role": role}
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
        self.items: list[write.Prepared] = []
        self.notes: list[tuple[str, str]] = []  # (role, text) for the turns summary
        self.summary: str | None = None
        self.dropped = 0

    def source(self, via: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.agent, "via": via or self.via,
                               "agent_session": self.agent_sid}
        if self.cwd:
            out["cwd"] = self.cwd
        return out

    def _add(self, raw: dict[str, Any]) -> write.Prepared | None:
        try:
            p = write.prepare(raw)
        except StoreError:  # nothing left once cleaned and redacted, say
            self.dropped += 1
            return None
        self.items.append(p)
        return p

    def add_turn(self, text: str, role: str, uid: str | None = None, ts: str | None = None,
                 via: str | None = None) -> None:
        raw = _turn_item(text, role, self.source(via), uid, ts)
        p = self._add(raw) if raw is not None else None
        if p is None:
            return
        self.notes.append((role, p.item["content"]))
        if role == "user":
            self.add_facts(p.item["content"], via)

    def add_facts(self, text: str, via: str | None = None) -> None:
        for f in extract.extract(transcripts.clean(text), self.project):
            self._add(f.item(self.source(via)))

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
            lines, offset, size = transcripts.read_delta(path, cursor(store, path))
        except OSError:
            return 0
        turns, skipped = transcripts.parse_lines(lines, fmt)
        for t in new_turns(store, turns):
            if t.kind == "summary":
                self.add_summary(t.text, "transcript:compact-summary")
            else:
                self.add_turn(t.text, t.role, t.uid, t.ts, "transcript")
        set_cursor(store, path, offset, size)
        return skipped

    def write(self, store: Store, ctx: Context) -> dict[str, Any]:
        results = write.remember_many(store, ctx, self.items, kind="capture")
        for role, text in self.notes:
            note_turn(store, self.agent, self.agent_sid, role, text)
        if self.summary:
            summary, _ = write.text(self.summary)
            set_summary(store, self.agent, self.agent_sid, summary or "")
        stored = [r for r in results if r["status"] == "stored"]
        n_facts = sum(1 for r, p in zip(results, self.items, strict=True)
                      if r["status"] == "stored" and p.item["scope"] != "session")
        out: dict[str, Any] = {"stored": len(stored), "facts": n_facts,
                               "duplicate": len(results) - len(stored),
                               "superseded": sum(1 for r in results if r.get("superseded"))}
        redacted = write.redacted_total(self.items)
        if redacted:
            out["redacted"] = redacted
        return out


def record(store: Store, ctx: Context, ev: Event, injection: Injection | None
           ) -> dict[str, Any]:
    """Everything one event keeps, in the caller's (the writer's) transaction."""
    if not mark_event(store, ev.event_id, ev.agent, ev.event):
        return {"status": "duplicate"}
    row = map_session(store, ctx, ev.agent, ev.session_id, ev.cwd, ev.transcript_path,
                      ev.idle_ttl)
    sctx = Context(ctx.user, ctx.agent, row["session_id"])
    cap = Capture(ev.agent, ev.session_id, ev.cwd, f"hook:{ev.event}")
    out: dict[str, Any] = {"status": "ok", "session": row["session_id"]}
    if ev.event == "prompt" and ev.prompt:
        cap.add_turn(ev.prompt, "user")
    if ev.event in CAPTURE_EVENTS:
        out["skipped_lines"] = cap.add_transcript(store, ev.transcript_path,
                                                  ev.transcript_format)
        if ev.last_message:
            cap.add_turn(ev.last_message, "assistant")
    if ev.event == "post-compact" and ev.summary:
        cap.add_summary(ev.summary, "hook:compact-summary")
    out.update(cap.write(store, sctx))
    if ev.event in ("pre-compact", "post-compact") and ev.checkpoint:
        from db0.store import checkpoints

        state = {"agent": ev.agent, "agent_session": ev.session_id, "event": ev.event,
                 "trigger": ev.trigger, "transcript_path": ev.transcript_path}
        cp = checkpoints.create(store, sctx, f"{ev.agent} {ev.event} ({ev.trigger or '?'})",
                                state)
        out["checkpoint"] = checkpoints.public(cp)["id"]
    if injection is not None:
        store.conn.execute(
            "INSERT INTO injections(agent, agent_session, session_id, event, ts, query, tokens, "
            "memory_ids, text) VALUES (?,?,?,?,?,?,?,?,?)",
            (ev.agent, ev.session_id, row["session_id"], injection.event, time.time(),
             # The query is the agent's raw prompt: it is redacted like every stored text.
             secrets.redact(injection.query)[0], injection.tokens, json.dumps(injection.ids),
             injection.text))
    if ev.event == "session-end":
        sessions.end_session(store, row["session_id"],
                             f"{ev.agent} session end ({ev.reason or '?'})")
        out["ended"] = True
    return out


def ingest(store: Store, ctx: Context, agent: str, agent_sid: str, cwd: str | None,
           turns: list[transcripts.Turn], skipped: int) -> dict[str, Any]:
    """A whole transcript through the turn pipeline; a second run stores nothing new."""
    fresh = new_turns(store, turns)
    row = map_session(store, ctx, agent, agent_sid, cwd, None)
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


COPY_MIN = 16  # characters from which purge looks for a memory's text inside other texts


def holds_copy(text: str, head: str) -> bool:
    """Whether `text` is a copy of `head` (a memory's first 2,000 characters) by purge's rule:
    the whole text, or, from COPY_MIN characters on, a part of it (erase_copies' SQL is the
    same rule)."""
    return text == head or (len(head) >= COPY_MIN and head in text)


def erase_copies(store: Store, mid: str, content: str) -> int:
    """For purge: the copies of a memory's text that capture keeps beside it, erased: the
    injections that gave it (their text) or whose prompt held it (their query), the agent
    sessions whose first or last prompt, last answer or summary held it, and the sessions
    whose summary (an agent's compaction summary) held it. A copy is cut at 2,000
    characters, so its first 2,000 are looked for: inside longer texts from COPY_MIN
    characters on (a shorter one is found inside unrelated texts too), as a whole text below
    that. Each is a pass over those tables: purge is rare and already merges the whole
    full-text index. Returns the rows changed."""
    head = content[:2000]
    if not head:
        return 0
    c = store.conn
    held = "({col} = ?1 OR (length(?1) >= {n} AND instr({col}, ?1) > 0))"
    c.execute(
        "UPDATE injections SET text='', query=NULL WHERE "
        + " OR ".join(held.format(col=col, n=COPY_MIN) for col in ("text", "query"))
        + " OR EXISTS (SELECT 1 FROM json_each(memory_ids) WHERE value=?2)", (head, mid))
    n = c.changes()
    for table, col in (("agent_sessions", "first_prompt"), ("agent_sessions", "last_prompt"),
                       ("agent_sessions", "last_answer"), ("agent_sessions", "summary"),
                       ("sessions", "summary")):
        c.execute(f"UPDATE {table} SET {col}=NULL WHERE " + held.format(col=col, n=COPY_MIN),
                  (head,))
        n += c.changes()
    return n


# -- the agent-session tables ---------------------------------------------------------------

def mark_event(store: Store, event_id: str, agent: str, event: str) -> bool:
    """Record an event as handled; False if it already was."""
    if store.conn.execute("SELECT 1 FROM hook_events WHERE event_id=?",
                          (event_id,)).fetchone() is not None:
        return False
    store.conn.execute("INSERT INTO hook_events(event_id, agent, event, handled_ts) "
                       "VALUES (?, ?, ?, ?)", (event_id, agent, event, time.time()))
    return True


def cursor(store: Store, path: str) -> int:
    row = store.conn.execute("SELECT byte_offset FROM capture_cursors WHERE path=?",
                             (path,)).fetchone()
    return int(row[0]) if row else 0


def set_cursor(store: Store, path: str, offset: int, size: int) -> None:
    store.conn.execute(
        "INSERT INTO capture_cursors(path, byte_offset, size, updated_ts) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(path) DO UPDATE SET byte_offset=excluded.byte_offset, size=excluded.size, "
        "updated_ts=excluded.updated_ts", (path, offset, size, time.time()))


def new_turns(store: Store, turns: list[transcripts.Turn]) -> list[transcripts.Turn]:
    """The turns not captured before (by uuid), marking them captured; repeats dropped too."""
    if not turns:
        return []
    uids = [t.uid for t in turns]
    seen = {str(r[0]) for r in store.conn.execute(
        "SELECT uuid FROM captured_lines WHERE uuid IN (SELECT value FROM json_each(?))",
        (json.dumps(uids),))}
    out = []
    now = time.time()
    for t in turns:
        if t.uid in seen:
            continue
        seen.add(t.uid)
        out.append(t)
    store.conn.executemany("INSERT OR IGNORE INTO captured_lines(uuid, captured_ts) "
                           "VALUES (?, ?)", [(t.uid, now) for t in out])
    return out


def agent_session(store: Store, agent: str, agent_sid: str) -> dict[str, Any] | None:
    return dbmod.row(store.conn, "SELECT * FROM agent_sessions WHERE agent=? AND "
                     "agent_session=?", (agent, agent_sid))


def map_session(store: Store, ctx: Context, agent: str, agent_sid: str, cwd: str | None,
                transcript: str | None, idle_ttl: float | None = None) -> dict[str, Any]:
    """The db0 session for an agent's session id: made on first sight (whatever event comes
    first), and made anew if the one it mapped to has ended (a resumed session)."""
    now = time.time()
    row = agent_session(store, agent, agent_sid)
    if row is not None:
        s = store.conn.execute("SELECT ended_ts FROM sessions WHERE id=?",
                               (row["session_id"],)).fetchone()
        if s is not None and s[0] is None:
            store.conn.execute(
                "UPDATE agent_sessions SET last_event_ts=?, cwd=coalesce(?, cwd), "
                "transcript_path=coalesce(?, transcript_path) WHERE agent=? AND agent_session=?",
                (now, cwd, transcript, agent, agent_sid))
            sessions.touch(store, {row["session_id"]: now})
            row.update(last_event_ts=now, cwd=cwd or row["cwd"],
                       transcript_path=transcript or row["transcript_path"])
            return row
    label = f"{agent} {agent_sid[:36]}"
    s = sessions.start_session(store, Context(ctx.user, ctx.agent), label=label,
                               idle_ttl=idle_ttl)
    if row is None:
        store.conn.execute(
            "INSERT INTO agent_sessions(agent, agent_session, session_id, user_id, cwd, "
            "transcript_path, started_ts, last_event_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (agent, agent_sid, s["id"], ctx.user, cwd, transcript, now, now))
    else:
        store.conn.execute(
            "UPDATE agent_sessions SET session_id=?, last_event_ts=?, cwd=coalesce(?, cwd), "
            "transcript_path=coalesce(?, transcript_path) WHERE agent=? AND agent_session=?",
            (s["id"], now, cwd, transcript, agent, agent_sid))
    out = agent_session(store, agent, agent_sid)
    assert out is not None
    out["new"] = True
    return out


def set_summary(store: Store, agent: str, agent_sid: str, summary: str) -> None:
    """Keep the agent's compaction summary as the session's summary (db0's and ours)."""
    store.conn.execute("UPDATE agent_sessions SET summary=?, summary_kind='compaction', "
                       "summary_ts=? WHERE agent=? AND agent_session=?",
                       (summary, time.time(), agent, agent_sid))
    row = agent_session(store, agent, agent_sid)
    if row is not None:
        store.conn.execute("UPDATE sessions SET summary=? WHERE id=?",
                           (summary, row["session_id"]))


def note_turn(store: Store, agent: str, agent_sid: str, role: str, text: str) -> None:
    """Remember the first and last prompt and the last answer (a summary without one); the
    text is a stored turn's, so it was redacted already."""
    cut = text[:2000]
    if role == "user":
        store.conn.execute("UPDATE agent_sessions SET first_prompt=coalesce(first_prompt, ?), "
                           "last_prompt=?, turns=turns+1 WHERE agent=? AND agent_session=?",
                           (cut, cut, agent, agent_sid))
    else:
        store.conn.execute("UPDATE agent_sessions SET last_answer=? WHERE agent=? AND "
                           "agent_session=?", (cut, agent, agent_sid))


def latest_summary(store: Store, user: str, cwd: str | None, agent: str, agent_sid: str
                   ) -> dict[str, Any] | None:
    """The summary of the latest earlier session of this user in this working directory: the
    agent's compaction summary, else one made from its turns."""
    if not cwd:
        return None
    out = dbmod.row(
        store.conn,
        "SELECT agent, agent_session, session_id, summary, first_prompt, last_prompt, "
        "last_answer, last_event_ts FROM agent_sessions WHERE user_id=? AND cwd=? "
        "AND NOT (agent=? AND agent_session=?) "
        "AND (summary IS NOT NULL OR first_prompt IS NOT NULL OR last_answer IS NOT NULL) "
        "ORDER BY last_event_ts DESC LIMIT 1", (user, cwd, agent, agent_sid))
    if out is None:
        return None
    out["kind"] = "compaction" if out["summary"] else "turns"
    if not out["summary"]:
        out["summary"] = turns_summary(out["first_prompt"], out["last_prompt"],
                                       out["last_answer"])
    return out


def turns_summary(first_prompt: str | None, last_prompt: str | None,
                  last_answer: str | None, limit: int = 1200) -> str:
    """A summary made from the turns when the agent gave none: what was asked, how it ended."""
    def cut(s: str, n: int) -> str:
        s = " ".join(s.split())
        return s if len(s) <= n else s[: n - 1].rstrip() + "…"

    parts = []
    if first_prompt:
        parts.append("Started with: " + cut(first_prompt, 300))
    if last_prompt and last_prompt != first_prompt:
        parts.append("Last asked: " + cut(last_prompt, 300))
    if last_answer:
        parts.append("Last answer: " + cut(last_answer, max(100, limit - 650)))
    return "\n".join(parts)

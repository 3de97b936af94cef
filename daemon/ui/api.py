"""The inspector's JSON API (docs/ui.md): routes by path, parameters checked against declared
shapes (`core/shapes.py`, as the RPC methods' are), answers in the CLI's `--json` shapes.

Reads use the runtime's read connections and the RPC methods' own answers; every change is a
request to the daemon's dispatcher (`Runtime.replay`), as the CLI's would be, so the op log,
redaction, supersede history and the method's own checks all apply. An edit (and pin/unpin)
is a new version that supersedes the one the page showed, sent with `current_only`: if that
version is no longer current, the answer is 409 with the current version and the edit as it
was sent, so nothing the person typed is lost.

An error is `{"error": {code, message, hint}}` with an HTTP status from its code; a bug is a
500 saying where the log is, its traceback logged without the request's query or body.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from db0.daemon import __version__
from db0.daemon.core.runtime import Runtime
from db0.daemon.core.shapes import (
    Bool,
    Int,
    ListOf,
    OneOf,
    P,
    ShapeError,
    Str,
    check_fields,
)
from db0.daemon.protocol import Db0Error
from db0.daemon.ui import queries
from db0.store.errors import StoreError
from db0.store.memories import parse_time

if TYPE_CHECKING:
    from db0.daemon.ui.server import UiServer

log = logging.getLogger("db0.daemon")

STATUS = {"bad_request": 400, "invalid": 400, "not_found": 404, "conflict": 409,
          "too_large": 413, "unknown_method": 503, "unavailable": 503, "busy": 503,
          "shutting_down": 503, "no_model": 503, "incompatible": 503, "disk_full": 507,
          "read_only": 500, "internal": 500}
MAX_PAGE = 200
SCOPES = ("user", "agent", "session", "task")
LINK_TYPES = ("related", "supports", "contradicts", "derived")
ID = P(Str(nonempty=True, max_len=200, strip=True), "an id", required=True)
NAME = Str(nonempty=True, max_len=200)
TAGS = ListOf(Str(nonempty=True, max_len=200), max_items=64, comma_string=True)
LIMIT = P(Int(1, MAX_PAGE), "how many per page", default=50)

GET_PARAMS: dict[str, dict[str, P]] = {
    "ping": {},
    "facets": {},
    "health": {},
    "memories": {
        "q": P(Str(max_len=10_000, strip=True), "search for this (memory.recall's ranking)"),
        "scope": P(OneOf(SCOPES), "only this scope"),
        "agent": P(NAME, "only this agent's"), "session": P(NAME, "only this session's"),
        "task": P(NAME, "only this task's"), "tag": P(NAME, "only with this tag"),
        "source": P(OneOf(queries.SOURCES), "only from this source"),
        "state": P(OneOf(queries.STATES), "live, all, superseded, forgotten, expired",
                   default="live"),
        "as_of": P(Str(nonempty=True, max_len=64), "live as of this time (ISO 8601)"),
        "before": P(Int(1), "the `next` of the page before"),
        "limit": LIMIT,
    },
    "memory": {"id": ID},
    "fact": {"id": P(NAME, "a memory id"), "key": P(Str(nonempty=True, max_len=500), "a key"),
             "as_of": P(Str(nonempty=True, max_len=64), "show which version was live then")},
    "sessions": {"before": P(Str(nonempty=True, max_len=300), "the `next` of the page before"),
                 "limit": LIMIT},
    "session": {"id": ID},
    "checkpoint": {"id": ID},
}

ACTIONS: dict[str, dict[str, P]] = {
    "forget": {"id": ID, "reason": P(Str(max_len=500), "why")},
    "edit": {"id": ID, "content": P(Str(nonempty=True, max_len=1 << 20), "the new text"),
             "tags": P(TAGS, "the new tags"), "key": P(Str(max_len=500), "the new key"),
             "pinned": P(Bool(), "pinned or not"), "reason": P(Str(max_len=500), "why")},
    "pin": {"id": ID},
    "unpin": {"id": ID},
    "link": {"a": ID, "b": ID, "type": P(OneOf(LINK_TYPES), "the link's type",
                                         default="related")},
    "restore": {"id": ID},
    "end_session": {"id": ID},
    "end_task": {"id": ID},
}


def http_status(code: str) -> int:
    return STATUS.get(code, 500)


def error_body(e: Db0Error) -> dict[str, Any]:
    return {"error": e.to_dict()}


def _bad(message: str, hint: str = "see docs/ui.md for the API's parameters") -> Db0Error:
    return Db0Error("bad_request", message, hint)


def parse_query(fields: dict[str, P], query: str) -> dict[str, Any]:
    """The query string checked against a route's declared parameters (blank means unset)."""
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query),
                          max_num_fields=64, errors="strict")
    except (ValueError, UnicodeDecodeError):
        raise _bad("the query string is malformed") from None
    given: dict[str, Any] = {}
    for k, v in pairs:
        if k in given:
            raise _bad(f"'{k[:40]}' is given twice")
        given[k] = _coerce(fields.get(k), v) if v != "" else None
    return _check(fields, given)


def _coerce(p: P | None, v: str) -> Any:
    shape = p.shape if p is not None else None
    if isinstance(shape, Int):
        try:
            return int(v)
        except ValueError:
            return v  # the shape check names it
    if isinstance(shape, Bool):
        return {"1": True, "true": True, "0": False, "false": False}.get(v.lower(), v)
    return v


def _check(fields: dict[str, P], given: dict[str, Any], where: str = "") -> dict[str, Any]:
    try:
        return check_fields(fields, given, where)
    except ShapeError as e:
        got = f", got {e.got}" if e.got else ""
        raise _bad(f"{e.path} must be {e.expects}{got}") from None


class Api:
    def __init__(self, rt: Runtime, ui: UiServer) -> None:
        self.rt = rt
        self.ui = ui

    # -- plumbing ---------------------------------------------------------------------------

    @property
    def user(self) -> str:
        return self.rt.context({}).user

    def call(self, method: str, params: dict[str, Any],
             context: dict[str, Any] | None = None) -> Any:
        """A request to the daemon's dispatcher, as a client's would be."""
        replay = self.rt.replay
        if replay is None:
            raise Db0Error("unavailable", "the daemon is not serving requests",
                           "db0 daemon restart")
        ctx = {k: v for k, v in (context or {}).items() if v}
        resp = replay({"id": None, "method": method, "params": {**params, "context": ctx}})
        if resp.get("ok"):
            return resp["result"]
        raise Db0Error.from_dict(resp.get("error") or {})

    def handle(self, method: str, path: str, query: str, body: bytes | None
               ) -> tuple[int, dict[str, Any]]:
        """The answer to one API request: (HTTP status, JSON body)."""
        name = path.removeprefix("/api/")
        try:
            if method == "GET":
                fields = GET_PARAMS.get(name)
                if fields is None:
                    raise Db0Error("not_found", f"no API route /api/{name[:60]}",
                                   "docs/ui.md lists them")
                params = parse_query(fields, query)
                return 200, getattr(self, f"get_{name}")(params)
            if name not in ("preview", "action"):
                raise Db0Error("not_found", f"no API route /api/{name[:60]}",
                               "docs/ui.md lists them")
            action, params = self._action_body(body)
            if name == "preview":
                return 200, self.preview(action, params)
            return self.act(action, params)
        except Db0Error as e:
            return http_status(e.code), error_body(e)
        except StoreError as e:
            return http_status(e.code), error_body(Db0Error(e.code, e.message, e.hint))
        except Exception as e:
            log.exception("ui: /api/%s failed", name[:60])
            return 500, error_body(Db0Error("internal", f"/api/{name[:60]} failed: "
                                            f"{type(e).__name__}",
                                            f"see the daemon log: {self.rt.paths.log_file}"))

    def _action_body(self, body: bytes | None) -> tuple[str, dict[str, Any]]:
        try:
            doc = json.loads(body or b"")
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise _bad("the body is not JSON (or nests too deep)",
                       'send {"action": ..., "params": {...}}') from None
        if not isinstance(doc, dict) or not isinstance(doc.get("action"), str):
            raise _bad("the body must be a JSON object with an 'action'",
                       'send {"action": ..., "params": {...}}')
        action = doc["action"]
        fields = ACTIONS.get(action)
        if fields is None:
            raise _bad(f"unknown action {action[:40]!r}", "one of: " + ", ".join(ACTIONS))
        params = doc.get("params") or {}
        if not isinstance(params, dict):
            raise _bad("params must be a JSON object")
        return action, _check(fields, params, "params")

    # -- reads ------------------------------------------------------------------------------

    def get_ping(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "pid": os.getpid(), "version": __version__, "user": self.user,
                "idle_timeout_s": self.ui.idle_timeout,
                "idle_closes_in_s": round(self.ui.idle_left(), 1)}

    def get_facets(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.rt.reader() as store:
            return queries.facets(store, self.user)

    def get_memories(self, p: dict[str, Any]) -> dict[str, Any]:
        as_of = None
        if p.get("as_of"):
            try:
                as_of = parse_time(p["as_of"])[1]
            except StoreError as e:
                raise _bad(f"as_of: {e.message}", e.hint) from None
        f = queries.Browse(scope=p.get("scope"), agent=p.get("agent"),
                           session=p.get("session"), task=p.get("task"), tag=p.get("tag"),
                           source=p.get("source"), state=p["state"], as_of=as_of)
        if p.get("q"):
            return self._search(p["q"], f, p["limit"], p.get("as_of"))
        with self.rt.reader() as store:
            return queries.memories_page(store, self.user, f, p.get("before"), p["limit"])

    def _search(self, q: str, f: queries.Browse, limit: int, as_of: str | None
                ) -> dict[str, Any]:
        """memory.recall itself, in the context the filters name; a source filter, and the
        states recall does not return, narrow its results after."""
        notices: list[str] = []
        if f.state in ("forgotten", "expired"):
            return {"memories": [], "next": None, "search": True,
                    "notices": [f"search finds live and superseded memories, not {f.state} "
                                "ones: clear the search to browse them"]}
        params: dict[str, Any] = {"query": q, "k": limit,
                                  "include_superseded": f.state in ("all", "superseded")}
        if f.scope:
            params["scopes"] = [f.scope]
        if f.tag:
            params["tags"] = [f.tag]
        if as_of:
            params["as_of"] = as_of
        res = self.call("memory.recall", params,
                        {"agent": f.agent, "session": f.session, "task": f.task})
        items = res["results"]
        if f.state == "superseded":
            items = [m for m in items if m.get("superseded_by")]
        with self.rt.reader() as store:
            src = queries.sources(store, [m["id"] for m in items])
        for m in items:
            m["source"] = src.get(m["id"], {"source": "typed"})
        if f.source:
            items = [m for m in items if m["source"]["source"] == f.source]
            notices.append(f"only the top {limit} results of the search were filtered by source")
        notices += res.get("notices") or []
        out = {"memories": items, "next": None, "search": True, "took_ms": res.get("took_ms"),
               "notices": notices}
        if "embed_ms" in res:
            out["embed_ms"] = res["embed_ms"]  # the query's embedding, within took_ms
        return out

    def get_memory(self, p: dict[str, Any]) -> dict[str, Any]:
        m: dict[str, Any] = self.call("memory.get", {"id": p["id"]})
        with self.rt.reader() as store:
            m["source"] = queries.sources(store, [m["id"]]).get(m["id"])
            texts = queries.contents(store, [lk["id"] for lk in m.get("links", [])])
        for lk in m.get("links", []):
            lk["content"] = texts.get(lk["id"], "")[:300]
        return m

    def get_fact(self, p: dict[str, Any]) -> dict[str, Any]:
        ref = p.get("id")
        if not ref and p.get("key"):
            with self.rt.reader() as store:
                ref = queries.newest_with_key(store, self.user, p["key"])
            if ref is None:
                raise Db0Error("not_found", "no memory of yours has that key",
                               "check the key: db0 list shows keys")
        if not ref:
            raise _bad("give id or key")
        hist: dict[str, Any] = self.call("memory.history", {"id": ref})
        seqs = [e["seq"] for v in hist["versions"] for e in v["events"]]
        with self.rt.reader() as store:
            who = queries.origins(store, seqs)
            src = queries.sources(store, [v["id"] for v in hist["versions"]])
        for v in hist["versions"]:
            v["source"] = src.get(v["id"])
            for e in v["events"]:
                e.update(who.get(e["seq"], {}))
        if p.get("as_of"):
            try:
                at = parse_time(p["as_of"])[1]
            except StoreError as e:
                raise _bad(f"as_of: {e.message}", e.hint) from None
            hist["as_of"] = p["as_of"]
            hist["current_at"] = queries.current_at(hist["versions"], at)
        return hist

    def get_sessions(self, p: dict[str, Any]) -> dict[str, Any]:
        try:
            with self.rt.reader() as store:
                return queries.sessions_page(store, self.user, p.get("before"), p["limit"])
        except ValueError:
            raise _bad("before is not a cursor this API gave") from None

    def get_session(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.rt.reader() as store:
            out = queries.session_detail(store, p["id"])
            if out is None:
                raise Db0Error("not_found", f"no session {p['id'][:80]}",
                               "pick one in the Sessions view")
            ids = [i for inj in out["injections"] for i in inj["memory_ids"]]
            texts = queries.contents(store, ids)
        for inj in out["injections"]:
            inj["memories"] = [{"id": i, "content": texts.get(i, "(purged)")[:300]}
                               for i in inj["memory_ids"]]
        return out

    def get_checkpoint(self, p: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = self.call("checkpoint.show", {"id": p["id"]})
        return out

    def get_health(self, p: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, method in (("doctor", "daemon.doctor"), ("stats", "store.stats"),
                            ("model", "model.status"), ("sync", "sync.status"),
                            ("watch", "watch.status"), ("hooks", "hook.status")):
            try:
                out[key] = self.call(method, {})
            except Db0Error as e:
                out[key] = error_body(e)
        return out

    # -- changes ----------------------------------------------------------------------------

    def _edited(self, p: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """The version the page showed, and the memory.remember request for its new one."""
        cur: dict[str, Any] = self.call("memory.get", {"id": p["id"]})
        new = {
            "content": p.get("content") if p.get("content") is not None else cur["content"],
            "scope": cur["scope"],
            "key": (p["key"] or None) if "key" in p else cur["key"],
            "tags": p["tags"] if "tags" in p else cur["tags"],
            "metadata": cur["metadata"] or None,
            "pinned": p["pinned"] if "pinned" in p else cur["pinned"],
            "supersedes": cur["id"], "current_only": True,
            "reason": p.get("reason") or "edited in db0 ui",
        }
        if cur["expires_at"] and parse_time(cur["expires_at"])[1] > time.time():
            new["expires_at"] = cur["expires_at"]
        return cur, new

    @staticmethod
    def _context_of(m: dict[str, Any]) -> dict[str, Any]:
        """The context a memory was written in: a new version lands in the same scope and
        owner."""
        return {"user": m["user"], "agent": m["agent"], "session": m["session"],
                "task": m["task"]}

    def preview(self, action: str, p: dict[str, Any]) -> dict[str, Any]:
        """What `action` will change, and whether and how it can be undone."""
        if action == "forget":
            cur = self.call("memory.get", {"id": p["id"]})
            return {"action": action, "summary": f"Forget {cur['id']}: it leaves recall, list "
                    "and pack; its history keeps it.", "before": cur,
                    "undo": "Not undoable: the CLI has no command that brings a forgotten "
                    "memory back (db0 history still shows it). To have it again, remember "
                    "its text anew."}
        if action in ("edit", "pin", "unpin"):
            q = dict(p)
            if action != "edit":
                q["pinned"] = action == "pin"
            cur, new = self._edited(q)
            same = all(new[k] == cur[k] for k in ("content", "key", "tags", "pinned"))
            return {"action": action, "before": cur,
                    "after": {k: new[k] for k in ("content", "key", "tags", "pinned")},
                    "summary": "Nothing would change." if same else
                    f"A new version supersedes {cur['id']} (it stays in history).",
                    "changes": not same,
                    "undo": "an edit back: one more version, with what it was before, "
                    "supersedes the new one (both stay in history)."}
        if action == "link":
            a = self.call("memory.get", {"id": p["a"]})
            b = self.call("memory.get", {"id": p["b"]})
            return {"action": action, "a": a, "b": b,
                    "summary": f"Link {a['id']} -{p['type']}-> {b['id']}.",
                    "undo": "Not undoable here: the CLI has no unlink (db0 show lists links)."}
        if action == "restore":
            cp = self.call("checkpoint.show", {"id": p["id"]})
            with self.rt.reader() as store:
                plan = queries.restore_plan(store, cp)
            return {"action": action, "checkpoint": cp, **plan,
                    "summary": f"Put the memories of session {cp['session'] or '-'} and task "
                    f"{cp['task'] or '-'} back as they were at checkpoint {cp['id']}: "
                    f"{len(plan['changes'])} change(s).",
                    "undo": "Not undoable as such: restoring is itself a change in the op "
                    "log; make a checkpoint first (db0 checkpoint create) to come back to now."}
        kind = "session" if action == "end_session" else "task"
        with self.rt.reader() as store:
            table = "sessions" if kind == "session" else "tasks"
            found = store.conn.execute(f"SELECT ended_ts FROM {table} WHERE id = ?",
                                       (p["id"],)).fetchone()
            if found is None:
                raise Db0Error("not_found", f"no {kind} {p['id'][:80]}",
                               f"see: db0 {kind} list")
            n = queries.live_count(store, kind, p["id"])
        return {"action": action, "already_ended": found[0] is not None,
                "summary": f"End {kind} {p['id']}: its {n} live {kind} memories expire "
                f"(they leave search; history keeps them).",
                "undo": f"Not undoable: an ended {kind} stays ended."}

    def act(self, action: str, p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Do it, through the dispatcher; an edit that lost a race is a 409."""
        if action == "forget":
            out = self.call("memory.forget", {"id": p["id"], "reason": p.get("reason")})
            return 200, {**out, "undo": None}
        if action in ("edit", "pin", "unpin"):
            q = dict(p)
            if action != "edit":
                q["pinned"] = action == "pin"
            cur, new = self._edited(q)
            try:
                out = self.call("memory.remember", new, self._context_of(cur))
            except Db0Error as e:
                if e.code != "conflict":
                    raise
                now = self.call("memory.history", {"id": cur["id"]})["current"]
                return 409, {**error_body(e), "current": self.call("memory.get", {"id": now}),
                             "yours": {"action": action, "params": p}}
            undo = None
            if out.get("status") == "stored":
                undo = {"action": "edit", "params": {
                    "id": out["id"], "content": cur["content"], "tags": cur["tags"],
                    "key": cur["key"] or "", "pinned": cur["pinned"]}}
            return 200, {**out, "undo": undo}
        if action == "link":
            return 200, self.call("memory.link", {"a": p["a"], "b": p["b"], "type": p["type"]})
        if action == "restore":
            return 200, self.call("checkpoint.restore", {"id": p["id"]})
        method = "session.end" if action == "end_session" else "task.end"
        return 200, self.call(method, {"id": p["id"]})

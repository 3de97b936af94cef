"""`db0 mcp`: db0 as a stdio MCP server on the official SDK (`mcp>=2,<3`, `MCPServer`).

Imported only by `db0cli/commands/mcp.py`, so no other command pays for the SDK's imports.
The server is a client of the daemon like every command (`db0.cli.rpc`), with the CLI's context
rules: the flags given to `db0 mcp`, then DB0_* in the server's environment.

Tools, resources and prompts only: no sampling, no elicitation (the 2026 protocol revision has
no server-initiated requests). Every answer stays under 10,000 tokens (Claude Code warns at
10,000 and cuts at 25,000): lists lose their tail and say so, long texts are cut with a note.
Nothing is ever written to stdout but the protocol; the SDK logs to stderr.
"""

from __future__ import annotations

import inspect
import json
import sys
import threading
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import Field

from db0.cli import rpc
from db0.daemon.protocol import Db0Error
from db0.store.tokens import count as count_tokens

# The SDK runs the server's sync tools on worker threads; one daemon connection, one caller.
_lock = threading.Lock()

# Answers are kept under this many tokens by db0's conservative counter (below), which counts
# at least as many tokens as GPT-style BPE on ordinary text: 9,000 leaves room for the
# protocol's own wrapping under the 10,000 that clients warn at.
MAX_TOKENS = 9000
MAX_PACK_BUDGET = 8000  # a pack's text plus its header line stays under MAX_TOKENS
CONTENT_TOKENS = 2000  # one memory's text in a list answer (`db0://memory/{id}` gives it all)

INSTRUCTIONS = """db0 is the user's long-term memory, shared by their agents and sessions.
- Before answering from scratch, `recall` (search) or `pack` (context within a token budget).
- When the user states a durable fact, preference or decision, `remember` it; give it a `key`
  (e.g. "editor", "deploy-target") so a later version supersedes the old one.
- `forget` what the user asks you to forget; `history` shows how a fact changed over time.
- `checkpoint` saves the session's state before a risky step or a context compaction.
Secrets (API keys, tokens, passwords, private keys) are redacted before anything is stored,
and <private>...</private> is never stored."""


# Answers are counted with db0-conservative-v1 (store/tokens.py, pure `re`, which the CLI may
# import): the count pack promises.
def _fits(text: str, limit: int) -> bool:
    # The count never exceeds the UTF-8 length, so short texts need no counting.
    return len(text) <= limit // 4 or count_tokens(text) <= limit


def cut(text: str, limit: int, what: str = "text") -> str:
    """`text` within `limit` tokens; a cut text ends with a note that says so."""
    if _fits(text, limit):
        return text
    note = f"\n[db0: {what} cut to stay under {limit} tokens]"
    room = limit - count_tokens(note)
    lo, hi = 0, len(text)
    while lo < hi:  # the longest prefix that fits (the count only grows with the prefix)
        mid = (lo + hi + 1) // 2
        if count_tokens(text[:mid]) <= room:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo] + note


def _dump(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def fit_list(head: dict[str, Any], key: str, items: list[dict[str, Any]],
             hint: str) -> str:
    """`head` with as many of `items` (in order) under `key` as fit in MAX_TOKENS, as JSON.

    Long `content` fields are cut first; items that still do not fit are left out and the
    answer says how many, and how to see them."""
    shown = []
    for it in items:
        it = dict(it)  # noqa: PLW2901
        if isinstance(it.get("content"), str):
            it["content"] = cut(it["content"], CONTENT_TOKENS, "memory")
        shown.append(it)
    text = _dump({**head, key: shown})
    if _fits(text, MAX_TOKENS):
        return text
    lo, hi = 0, len(shown)  # binary search on how many items fit with the note
    best = ""
    while lo <= hi:
        mid = (lo + hi) // 2
        left = len(shown) - mid
        candidate = _dump({**head, key: shown[:mid],
                           "truncated": f"{left} more left out to stay under {MAX_TOKENS} "
                                        f"tokens; {hint}"})
        if _fits(candidate, MAX_TOKENS):
            best, lo = candidate, mid + 1
        else:
            hi = mid - 1
    return best or cut(text, MAX_TOKENS, "answer")


# --- the daemon


class ToolFailure(Exception):
    """A failure the model should read (turned into the SDK's ToolError / ResourceError)."""


def call(method: str, params: dict[str, Any], retry: bool = True) -> Any:
    """One RPC to the daemon (started on first use, like any command).

    The client reconnects by itself when the daemon closed an idle connection or restarted;
    a call that lost its connection midway is tried once more (`retry`, for methods that are
    safe to repeat). Every db0 error becomes a one-line message with its fix."""
    with _lock:
        try:
            return rpc.call(method, params, timeout=60.0)
        except Db0Error as e:
            if not (e.code == "unavailable" and retry):
                raise ToolFailure(_message(method, e)) from None
        try:
            return rpc.call(method, params, timeout=60.0)
        except Db0Error as e2:
            raise ToolFailure(_message(method, e2)) from None


def bad_arguments(tool: str, exc: Any) -> str:
    """A tool's arguments that do not fit its input schema, in one line with the fix."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc") or ()) or "the arguments"
        msg = str(err.get("msg") or "is not valid")
        msg = msg[:1].lower() + msg[1:]
        got = err.get("input")
        shown = "" if err.get("type") == "missing" else f", got {json.dumps(got, default=str)[:60]}"
        parts.append(f"{where}: {msg}{shown}")
    return (f"{tool}: " + "; ".join(parts) + f" (to fix: call {tool} again with arguments as "
            "its input schema describes)")


def _message(method: str, e: Db0Error) -> str:
    if e.code == "unknown_method":
        return (f"this db0 daemon does not know {method} (to fix: upgrade db0, then run "
                f"`db0 daemon restart`)")
    return e.line()


# --- the server

Scopes = Annotated[list[str] | None, Field(
    description="Only these scopes (user, agent, session, task); default: all you can see.")]
Tags = Annotated[list[str] | None, Field(description="Only memories with these tags.")]
Tool = Callable[..., str]


def build(ctx: dict[str, Any]) -> Any:
    """The MCPServer with db0's tools, resources and prompts; `ctx` is sent with every call."""
    from mcp.server import MCPServer
    from mcp.server.mcpserver.exceptions import ResourceError, ToolError
    from mcp.types import ToolAnnotations
    from pydantic import ValidationError

    from db0.daemon import __version__

    class Server(MCPServer):
        """The SDK's server, with arguments that do not fit a tool's schema said in db0's
        words (one line with the fix) instead of pydantic's text and its links."""

        async def call_tool(self, name: str, arguments: dict[str, Any],
                            context: Any = None) -> Any:
            try:
                return await super().call_tool(name, arguments, context)
            except ToolError as e:
                if isinstance(e.__cause__, ValidationError):
                    raise ToolError(bad_arguments(name, e.__cause__)) from e.__cause__
                raise

    server = Server("db0", instructions=INSTRUCTIONS, version=__version__,
                    log_level="WARNING")
    read_only = ToolAnnotations(read_only_hint=True, destructive_hint=False,
                                idempotent_hint=True, open_world_hint=False)

    def tool(annotations: Any, structured_output: bool = False) -> Callable[[Tool], Tool]:
        """server.tool with the docstring's indentation taken out of the description."""
        def register(fn: Tool) -> Tool:
            server.add_tool(fn, description=inspect.cleandoc(fn.__doc__ or ""),
                            annotations=annotations, structured_output=structured_output)
            return fn
        return register

    def tool_call(method: str, params: dict[str, Any], retry: bool = True) -> Any:
        try:
            return call(method, {**params, "context": ctx}, retry)
        except ToolFailure as e:
            raise ToolError(str(e)) from None

    @tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False,
                                             idempotent_hint=True, open_world_hint=False))
    def remember(
        content: Annotated[str, Field(description="The fact, preference or decision, in one "
                                      "self-contained sentence or paragraph.")],
        scope: Annotated[str, Field(description="user (default: every agent of this user "
                                    "sees it), agent, session or task.")] = "user",
        key: Annotated[str | None, Field(description="A stable name such as 'editor'; a new "
                                         "memory with the same key supersedes the old "
                                         "one.")] = None,
        tags: Annotated[list[str] | None, Field(description="Tags to filter by later.")]
        = None,
        pinned: Annotated[bool, Field(description="Always put it first in packs.")] = False,
        ttl: Annotated[str | None, Field(description="Forget it after this long: 90s, 15m, "
                                         "2h, 7d.")] = None,
        supersedes: Annotated[str | None, Field(description="The id of the memory this "
                                                "replaces.")] = None,
        reason: Annotated[str | None, Field(description="Why it changed (kept in "
                                            "history).")] = None,
    ) -> str:
        """Store a memory. Answers {id, status, superseded?, redacted?, near_duplicates?}:
        status 'duplicate' means the same text was already stored; 'redacted' lists the kinds
        of secrets taken out before storing."""
        params: dict[str, Any] = {"content": content, "scope": scope, "key": key,
                                  "tags": tags or [], "pinned": pinned, "ttl": ttl,
                                  "supersedes": supersedes, "reason": reason}
        res = tool_call("memory.remember",
                        {k: v for k, v in params.items() if v not in (None, [], False)})
        out = {k: res[k] for k in ("id", "status", "superseded", "redacted") if res.get(k)}
        if res.get("near_duplicates"):
            out["near_duplicates"] = res["near_duplicates"][:5]
        return cut(_dump(out), MAX_TOKENS, "answer")

    @tool(annotations=read_only)
    def recall(
        query: Annotated[str, Field(description="What to look for, in words.")],
        limit: Annotated[int, Field(description="How many results, best first.", ge=1,
                                    le=100)] = 10,
        scopes: Scopes = None,
        tags: Tags = None,
        as_of: Annotated[str | None, Field(description="Answer with what was true at this "
                                           "time (ISO 8601).")] = None,
        include_superseded: Annotated[bool, Field(description="Show replaced facts "
                                                  "too.")] = False,
        rerank: Annotated[int, Field(description="Rescore the top N with the local "
                                     "cross-encoder: a better order, slower "
                                     "(0: off).", ge=0, le=100)] = 0,
    ) -> str:
        """Search memories by meaning and keywords. Answers {results: [{id, score, scope,
        key, content, created_at, ...}]}, best first."""
        params: dict[str, Any] = {"query": query, "k": limit}
        if rerank:
            params["rerank"] = rerank
        if scopes:
            params["scopes"] = scopes
        if tags:
            params["tags"] = tags
        if as_of:
            params["as_of"] = as_of
        if include_superseded:
            params["include_superseded"] = True
        res = tool_call("memory.recall", params)
        keep = ("id", "score", "scope", "key", "content", "created_at", "tags", "pinned",
                "superseded_by")
        items = [{k: r[k] for k in keep if r.get(k) not in (None, [], False)}
                 for r in res.get("results") or []]
        head = {"notices": res["notices"]} if res.get("notices") else {}
        return fit_list(head, "results", items, "ask for fewer (limit) or narrow the query")

    @tool(annotations=read_only)
    def pack(
        query: Annotated[str, Field(description="What the context is for (the task or "
                                    "question).")],
        budget: Annotated[int, Field(description=f"At most this many tokens (up to "
                                     f"{MAX_PACK_BUDGET}).", ge=1)] = 2000,
        scopes: Scopes = None,
        tags: Tags = None,
    ) -> str:
        """The memories most worth their tokens for QUERY within BUDGET tokens, as Markdown:
        pinned first, then by relevance, grouped by scope, each line with its age and id."""
        note = ""
        if budget > MAX_PACK_BUDGET:
            note = (f"[db0: budget lowered from {budget} to {MAX_PACK_BUDGET} tokens, the most "
                    f"one answer holds]\n")
            budget = MAX_PACK_BUDGET
        params: dict[str, Any] = {"query": query, "budget": budget, "format": "md"}
        if scopes:
            params["scopes"] = scopes
        if tags:
            params["tags"] = tags
        res = tool_call("memory.pack", params)
        text = str(res.get("text") or "")
        if not text:
            return note + "db0 has no memories that fit this query."
        return cut(note + text, MAX_TOKENS, "pack")

    @tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True,
                                             idempotent_hint=True, open_world_hint=False))
    def forget(
        id: Annotated[str, Field(description="The memory's id (from recall).")],
        reason: Annotated[str | None, Field(description="Why (kept in history).")] = None,
    ) -> str:
        """Forget a memory: it no longer shows in recall or pack (history keeps a record)."""
        params: dict[str, Any] = {"id": id}
        if reason:
            params["reason"] = reason
        res = tool_call("memory.forget", params)
        return _dump({"id": res.get("id"), "status": res.get("status")})

    @tool(annotations=read_only)
    def history(
        id: Annotated[str, Field(description="A memory's id.")],
    ) -> str:
        """The whole chain of a fact: every version, when and why it changed (newest
        state per version: current, superseded or forgotten)."""
        res = tool_call("memory.history", {"id": id})
        versions = list(res.get("versions") or [])
        head = {k: v for k, v in res.items() if k != "versions"}
        return fit_list(head, "versions", versions, "recall with include_superseded instead")

    @tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False,
                                             idempotent_hint=False, open_world_hint=False))
    def checkpoint(
        label: Annotated[str | None, Field(description="A name for it.")] = None,
        state: Annotated[dict[str, Any] | None, Field(description="A JSON document to keep "
                                                      "with it (plan, open questions, "
                                                      "files).")] = None,
    ) -> str:
        """Checkpoint the current session (and task) so it can be restored or branched later
        (`db0 checkpoint restore|branch`). Answers the checkpoint's id."""
        res = tool_call("checkpoint.create", {"label": label, "state": state}, retry=False)
        out = {k: res[k] for k in ("id", "label", "session", "task", "created_at", "redacted")
               if res.get(k)}
        return _dump(out)

    def resource_call(method: str, params: dict[str, Any]) -> Any:
        try:
            return call(method, {**params, "context": ctx})
        except ToolFailure as e:
            raise ResourceError(str(e)) from None

    @server.resource("db0://memory/{id}", name="memory", mime_type="application/json",
                     description="One memory with all its fields.")
    def memory(id: str) -> str:
        return cut(json.dumps(resource_call("memory.get", {"id": id}), ensure_ascii=False,
                              indent=1), MAX_TOKENS, "memory")

    @server.resource("db0://pack/{query}", name="pack", mime_type="text/markdown",
                     description="A 2,000-token pack of memories for QUERY.")
    def pack_resource(query: str) -> str:
        res = resource_call("memory.pack", {"query": query, "budget": 2000, "format": "md"})
        return str(res.get("text") or "")

    @server.prompt(description="Prime the conversation with what db0 remembers about a "
                               "topic.")
    def prime(topic: str, budget: str = "2000") -> str:
        # Prompt arguments are strings in MCP: read the number here, and say what is wrong.
        try:
            tokens = int(str(budget).strip())
        except ValueError:
            return (f"(db0: budget must be a whole number of tokens, got {budget!r}; to fix: "
                    f"ask for the prime prompt again with budget like 2000)")
        budget_n = max(1, min(tokens, MAX_PACK_BUDGET))
        try:
            res = call("memory.pack", {"query": topic, "budget": budget_n, "format": "md",
                                       "context": ctx})
        except ToolFailure as e:
            return f"(db0 could not pack memories about {topic!r}: {e})"
        text = str(res.get("text") or "") or "(db0 remembers nothing about this yet.)"
        return (f"Here is what db0 remembers that bears on {topic!r}; use it, and remember "
                f"anything new and durable that we settle:\n\n{text}")

    return server


def serve(ctx: dict[str, Any]) -> None:
    """Run the server on stdin/stdout until the client closes stdin."""
    server = build(ctx)
    try:
        server.run("stdio")
    except KeyboardInterrupt:
        pass
    finally:
        sys.stderr.flush()


def print_tools(ctx: dict[str, Any]) -> None:
    """`db0 mcp --list-tools`: what a client would be offered, as one JSON document."""
    import anyio

    server = build(ctx)

    async def collect() -> dict[str, Any]:
        tools = await server.list_tools()
        templates = await server.list_resource_templates()
        prompts = await server.list_prompts()
        return {
            "tools": [t.model_dump(mode="json", by_alias=True, exclude_none=True)
                      for t in tools],
            "resource_templates": [r.model_dump(mode="json", by_alias=True, exclude_none=True)
                                   for r in templates],
            "prompts": [p.model_dump(mode="json", by_alias=True, exclude_none=True)
                        for p in prompts],
        }

    sys.stdout.write(json.dumps(anyio.run(collect), indent=2, ensure_ascii=False) + "\n")

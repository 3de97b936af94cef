"""remember, recall, show, list, forget, history, purge: the memory commands (the hot ones:
no Typer on their path, see db0cli/params.py)."""

from __future__ import annotations

import sys

from db0.cli import output
from db0.cli.options import (
    AgentOpt,
    JsonOpt,
    MetaOpt,
    ScopeOpt,
    ScopesOpt,
    SessionOpt,
    TagsOpt,
    TaskOpt,
    UserOpt,
    context,
    parse_meta,
    read_source,
    read_stdin_text,
    text_arg,
)
from db0.cli.params import Annotated, Arg, Command, Opt, cmd
from db0.cli.rpc import call, client
from db0.daemon import wirejson as json
from db0.daemon.protocol import Db0Error

TYPE_CHECKING = False  # typing stays unloaded at run time: it is costly to import
if TYPE_CHECKING:
    from typing import Any

Words = Annotated[list[str] | None, Arg(help="The text; '-' reads stdin.", show_default=False)]
IdArg = Annotated[str, Arg(help="A memory id (or a unique prefix of 6+ characters).")]


def remember(
    text: Words = None,
    scope: ScopeOpt = "user",
    key: Annotated[str | None, Opt("--key", "-k", help="A stable name: a new memory "
                                            "with the same key supersedes the current one.")]
    = None,
    tag: TagsOpt = None,
    meta: MetaOpt = None,
    pin: Annotated[bool, Opt("--pin", help="Always pack this first.")] = False,
    ttl: Annotated[str | None, Opt("--ttl", help="Forget after this long: 90s, "
                                            "15m, 2h, 7d.")] = None,
    supersedes: Annotated[str | None, Opt("--supersedes", help="The id this "
                                                   "replaces.")] = None,
    reason: Annotated[str | None, Opt("--reason", help="Why (kept in history).")]
    = None,
    created_at: Annotated[str | None, Opt("--created-at", help="When it happened "
                                                   "(ISO 8601); default now.")] = None,
    allow_secrets: Annotated[bool, Opt("--allow-secrets", help="Store what looks "
                                                "like a secret as it is (this write only).")]
    = False,
    wait: Annotated[bool, Opt("--wait", help="Return once it is fully indexed "
                                       "(embedded).")] = False,
    json_: JsonOpt = False,
    user: UserOpt = None, agent: AgentOpt = None, session: SessionOpt = None,
    task: TaskOpt = None,
) -> int:
    """Remember TEXT (or stdin). Prints the new id.

    \b
    Examples:
      db0 remember "I prefer tabs over spaces"
      db0 remember -k editor "My editor is helix"     # supersedes the last editor fact
      echo "notes from a script" | db0 remember --tag ci
      db0 remember -s task --ttl 2h "deploy freeze until 3pm"
    """
    content = text_arg(text)
    params: dict[str, Any] = {
        "content": content, "scope": scope, "key": key, "tags": tag or [],
        "metadata": parse_meta(meta), "pinned": pin, "ttl": ttl, "supersedes": supersedes,
        "reason": reason, "created_at": created_at, "wait": wait,
        "allow_secrets": allow_secrets or None,
        "context": context(user, agent, session, task),
    }
    res = call("memory.remember", {k: v for k, v in params.items() if v not in (None, [])})
    if json_:
        output.emit_json(res)
    else:
        sys.stdout.write(res["id"] + "\n")
        if res.get("status") == "duplicate":
            output.notice("db0: already remembered (duplicate); kept the existing memory")
        if res.get("superseded"):
            output.notice(f"db0: supersedes {res['superseded']}")
        for note in res.get("notices") or []:
            output.notice(f"db0: {note}")
    if res.get("redacted") and not json_:
        output.notice(redaction_notice(res["redacted"]))
    return 0


def redaction_notice(found: dict[str, int]) -> str:
    what = ", ".join(f"{n} {kind}" for kind, n in sorted(found.items()))
    keep = "" if set(found) == {"private"} else " (--allow-secrets keeps them)"
    return f"db0: redacted before storing: {what}{keep}"


def _recall_params(query: str, k: int, scope: list[str] | None, tag: list[str] | None,
                   meta: list[str] | None, since: str | None, until: str | None,
                   key: str | None, include_superseded: bool, ctx: dict[str, Any],
                   extra: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {"query": query, "k": k, "context": ctx, **extra}
    if scope:
        params["scopes"] = scope
    if tag:
        params["tags"] = tag
    if meta:
        params["metadata"] = parse_meta(meta)
    for name, value in (("since", since), ("until", until), ("key", key)):
        if value:
            params[name] = value
    if include_superseded:
        params["include_superseded"] = True
    return params


def _queries(source: str, defaults: dict[str, Any]) -> int:
    """Many queries, one JSON line each, over one connection."""
    raw = read_source(source)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Db0Error("invalid", f"{source} is not valid UTF-8", "re-encode it") from None
    c = client()
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        q: dict[str, Any]
        if line.lstrip().startswith("{"):
            try:
                q = json.loads(line)
            except ValueError as e:
                raise Db0Error("invalid", f"line {n}: not JSON ({e})",
                               'write {"query": "...", "k": 10} or plain text') from None
        else:
            q = {"query": line}
        params = {**defaults, **{k: v for k, v in q.items() if k != "context"}}
        try:
            res = c.call("memory.recall", params)
        except Db0Error as e:
            if e.field and e.field.split(".")[0].split("[")[0] in q:  # the line's, no option's
                raise Db0Error(e.code, f"line {n}: {e.message.partition(': ')[2]}",
                               e.hint) from None
            raise
        sys.stdout.write(json.dumps({"query": q.get("query"), **res}, ensure_ascii=False)
                         + "\n")
    return 0


def recall(
    query: Annotated[list[str] | None, Arg(help="What to look for; '-' reads stdin.",
                                                      show_default=False)] = None,
    limit: Annotated[int, Opt("--limit", "-n", param="k", help="How many results.")] = 10,
    scope: ScopesOpt = None, tag: TagsOpt = None, meta: MetaOpt = None,
    since: Annotated[str | None, Opt("--since", help="Created at or after (ISO).")]
    = None,
    until: Annotated[str | None, Opt("--until", help="Created at or before (ISO).")]
    = None,
    key: Annotated[str | None, Opt("--key", "-k", help="Only memories with this key.")]
    = None,
    include_superseded: Annotated[bool, Opt("--include-superseded",
                                                     help="Show replaced facts too.")] = False,
    as_of: Annotated[str | None, Opt("--as-of", help="Answer with what was true "
                                              "at this time (ISO 8601).")] = None,
    expand: Annotated[bool, Opt("--expand", help="Pull in linked memories.")]
    = False,
    rerank: Annotated[int, Opt("--rerank", metavar="N", help="Rescore the top N "
                                        "with the cross-encoder (db0 model install "
                                        "--reranker): better order, slower.")]
    = 0,
    late: Annotated[bool, Opt("--late", help="Re-order the top 100 by late interaction "
                                       "with their stored token vectors (db0 model install "
                                       "--late): fast.")] = False,
    queries: Annotated[str | None, Opt("--queries", help="JSON lines {query, k} or "
                                                "plain lines from FILE or '-'; one JSON line "
                                                "out per query.")] = None,
    remote: Annotated[str | None, Opt("--remote", help="Search this sync remote's "
                                               "copy on the server instead (db0 remote "
                                               "list).")] = None,
    json_: JsonOpt = False,
    user: UserOpt = None, agent: AgentOpt = None, session: SessionOpt = None,
    task: TaskOpt = None,
) -> int:
    """Find memories by meaning and keywords, best first (exit 1 when nothing matches).

    \b
    Examples:
      db0 recall "which editor do I use"
      db0 recall deploy -n 3 --json
      db0 recall "what did we decide" --tag decision --since 2026-11-01
      db0 recall - < prompt.txt                 # stdin; a long text is read from its two ends
      db0 recall --queries questions.jsonl      # one JSON line out per query
    """
    k = limit
    extra: dict[str, Any] = {}
    if as_of:
        extra["as_of"] = as_of
    if expand:
        extra["expand"] = True
    if late:
        if remote:
            raise Db0Error("bad_request", "--late works on local memory only",
                           "drop --remote, or --late")
        extra["late"] = True
    if rerank:
        if remote:
            raise Db0Error("bad_request", "--rerank works on local memory only",
                           "drop --remote, or --rerank")
        extra["rerank"] = rerank
    ctx = context(user, agent, session, task)
    if queries:
        return _queries(queries, _recall_params("", k, scope, tag, meta, since, until, key,
                                                include_superseded, ctx, extra))
    text = (read_stdin_text() if query == ["-"] else " ".join(query or [])).strip()
    if not text:
        raise Db0Error("bad_request", "no query given",
                       "db0 recall WORDS, '-' to read stdin, or --queries FILE")
    if remote:
        from db0.cli.commands.sync import remote_env

        extra.update(name=remote, env=remote_env(remote))
    res = call("sync.recall" if remote else "memory.recall",
               _recall_params(text, k, scope, tag, meta, since, until, key,
                              include_superseded, ctx, extra))
    if json_:
        output.emit_json(res)
        return 0
    for note in res.get("notices") or []:
        output.notice(f"db0: {note}")
    # A memory pulled in by --expand has no score of its own: it shows the link it came by.
    rows = [(r["id"], f"{r['score']:.3f}" if "score" in r else f"{r['via']['type']} link",
             r["scope"], output.age(r["created_at"]), r["content"]) for r in res["results"]]
    output.table(("id", "score", "scope", "age", "content"), rows)
    return 0 if rows else 1


def show(ref: IdArg, json_: JsonOpt = False) -> int:
    """Show one memory with all its fields.

    \b
    Example:
      db0 show 01m8v2t662cv
    """
    m = call("memory.get", {"id": ref})
    if json_:
        output.emit_json(m)
        return 0
    pairs = [(k, json.dumps(v, ensure_ascii=False) if isinstance(v, dict | list) else v)
             for k, v in m.items() if k != "content" and v not in (None, [], {})]
    output.keyvalues(pairs)
    sys.stdout.write("\n" + m["content"] + "\n")
    return 0


def list_(
    limit: Annotated[int, Opt("--limit", "-n", help="How many.")] = 50,
    offset: Annotated[int, Opt("--offset", help="Skip this many.")] = 0,
    scope: ScopesOpt = None, tag: TagsOpt = None,
    include_superseded: Annotated[bool, Opt("--include-superseded",
                                            help="Replaced facts too.")] = False,
    json_: JsonOpt = False,
    user: UserOpt = None, agent: AgentOpt = None, session: SessionOpt = None,
    task: TaskOpt = None,
) -> int:
    """List the memories you can see, newest first.

    \b
    Examples:
      db0 list -n 20
      db0 list -s user --tag decision --json
    """
    res = call("memory.list", {"limit": limit, "offset": offset, "scopes": scope or [],
                               "tags": tag or [], "include_superseded": include_superseded,
                               "context": context(user, agent, session, task)})
    if json_:
        output.emit_json(res)
        return 0
    output.table(("id", "scope", "age", "key", "content"),
                 [(m["id"], m["scope"], output.age(m["created_at"]), m["key"] or "",
                   m["content"]) for m in res["memories"]])
    return 0


def forget(
    refs: Annotated[list[str], Arg(help="Memory ids.")],
    reason: Annotated[str | None, Opt("--reason", help="Why (kept in history).")]
    = None,
    json_: JsonOpt = False,
) -> int:
    """Forget memories (a tombstone: history keeps the record; `db0 purge` erases).

    \b
    Example:
      db0 forget 01m8v2t662cv --reason "no longer true"
    """
    results = [call("memory.forget", {"id": r, "reason": reason}) for r in refs]
    if json_:
        output.emit_json(results[0] if len(results) == 1 else {"results": results})
    else:
        for r in results:
            sys.stdout.write(f"{r['id']}\t{r['status']}\n")
    return 0


def purge(
    refs: Annotated[list[str], Arg(help="Memory ids.")],
    yes: Annotated[bool, Opt("--yes", "-y", help="Do not ask.")] = False,
    json_: JsonOpt = False,
) -> int:
    """Erase memories for real, history included (forget keeps a record; purge does not).

    \b
    Example:
      db0 purge 01m8v2t662cv --yes
    """
    if not yes:
        if not sys.stdin.isatty():
            raise Db0Error("bad_request", "purge erases for good and needs confirming",
                           "pass --yes")
        import click

        if not click.confirm(f"Erase {output.count(len(refs), 'memory', 'memories')} and "
                             "their history for good?"):
            return 1
    results = [call("memory.purge", {"id": r}) for r in refs]
    if json_:
        output.emit_json(results[0] if len(results) == 1 else {"results": results})
    else:
        for r in results:
            sys.stdout.write(f"{r['id']}\t{r['status']}\n")
    return 0


def history(ref: IdArg, json_: JsonOpt = False) -> int:
    """The whole chain of a fact: every version, when and why it changed.

    \b
    Example:
      db0 history 01m8v2t662cv
    """
    h = call("memory.history", {"id": ref})
    if json_:
        output.emit_json(h)
        return 0
    rows = []
    for v in h["versions"]:
        events = ", ".join(f"{e['kind']} {e['at']}" for e in v["events"])
        state = ("forgotten" if v["forgotten_at"] else
                 f"superseded ({v['reason']})" if v["superseded_by"] else "current")
        rows.append((v["id"], state, events, v["content"]))
    output.table(("id", "state", "events", "content"), rows)
    return 0


COMMANDS: list[Command] = [
    cmd("remember", remember), cmd("recall", recall), cmd("show", show), cmd("list", list_),
    cmd("forget", forget), cmd("history", history), cmd("purge", purge),
]

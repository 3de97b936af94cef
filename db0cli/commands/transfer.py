"""import and export: JSON lines in, the same JSON lines out (so they round-trip)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from typing import Any

from db0.cli import output
from db0.cli.options import AgentOpt, JsonOpt, SessionOpt, TaskOpt, UserOpt, context, read_source
from db0.cli.params import Annotated, Arg, Command, Opt, cmd
from db0.cli.rpc import client
from db0.daemon.protocol import Db0Error

BATCH = 10_000  # lines a request; more are staged and committed at once
EXPORT_FIELDS = ("id", "content", "scope", "key", "tags", "metadata", "created_at", "pinned",
                 "expires_at", "user", "agent", "session", "task", "superseded_by",
                 "forgotten_at")


_DECODER = json.JSONDecoder()


def _text_lines(raw: bytes, source: str) -> list[str]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        bad = raw[: e.start].count(b"\n") + 1
        raise Db0Error("invalid", f"{source}: line {bad} is not valid UTF-8",
                       "re-encode the file as UTF-8; nothing was imported") from None
    return text.splitlines()


def _batches(lines: list[str], source: str, size: int) -> Iterator[list[tuple[int, dict[str,
                                                                                      Any]]]]:
    """The non-blank lines as (line number, object), `size` to a batch, each batch parsed
    when it is asked for (a bad line raises then, with its number)."""
    items: list[tuple[int, dict[str, Any]]] = []
    decode = _DECODER.raw_decode
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            # json.loads(line) without its per-call checks: the same decoder, the same JSON
            # whitespace around the value; anything else there goes to json.loads for its error.
            s = line.strip(" \t\n\r")
            obj, end = decode(s)
            if end != len(s):
                obj = json.loads(line)
        except ValueError as e:
            raise Db0Error("invalid", f"{source}: line {n} is not JSON ({e})",
                           "fix that line; nothing was imported") from None
        if not isinstance(obj, dict):
            raise Db0Error("invalid", f"{source}: line {n} is not a JSON object",
                           'write {"content": "..."}; nothing was imported')
        items.append((n, obj))
        if len(items) == size:
            yield items
            items = []
    if items:
        yield items


def import_(
    source: Annotated[str, Arg(help="A JSON-lines file, or '-' for stdin.")],
    wait: Annotated[bool, Opt("--wait", help="Return once everything is fully "
                                       "indexed (embedded).")] = False,
    allow_secrets: Annotated[bool, Opt("--allow-secrets", help="Store what looks "
                                                "like a secret as it is.")] = False,
    json_: JsonOpt = False,
    user: UserOpt = None, agent: AgentOpt = None, session: SessionOpt = None,
    task: TaskOpt = None,
) -> int:
    """Import memories from JSON lines {content, scope?, key?, tags?, metadata?, created_at?}.

    All or nothing, at any size: every line is checked, the batches are staged out of sight,
    and one commit makes them all visible; a bad line or an interruption keeps none.

    Examples:
      db0 export > memories.jsonl && db0 import memories.jsonl
      cat notes.jsonl | db0 import - --wait
    """
    name = "stdin" if source == "-" else source
    lines = _text_lines(read_source(source), name)
    total = sum(1 for line in lines if line.strip())
    batches = _batches(lines, name, BATCH)
    chunk = next(batches, None)  # a bad line in the first batch fails before the daemon
    ctx = context(user, agent, session, task)
    from db0.daemon.client import Client

    c = Client(pinned=True)  # every batch to the daemon that staged the first one
    if chunk is None:
        raise Db0Error("invalid", f"{source}: no lines to import", "give JSON lines")
    import_id = None if total <= BATCH else os.urandom(12).hex()
    res: dict[str, Any] = {}
    checked = 0
    with output.progress("importing", total) as bar:
        # One batch in flight: the next one is parsed and sent while the daemon stages this
        # one (it answers a connection's requests in order). The last batch, which commits,
        # is sent only once every batch before it was staged.
        sent: list[tuple[int, bool]] = []  # (lines, last) of each request not answered yet
        last = False
        bad_line: Db0Error | None = None
        try:
            while chunk is not None:
                last = checked + sum(n for n, _ in sent) + len(chunk) >= total
                params: dict[str, Any] = {
                    "items": [o for _, o in chunk], "lines": [n for n, _ in chunk],
                    "context": ctx, "allow_secrets": allow_secrets}
                if import_id:
                    params.update(import_id=import_id, commit=last)
                    if last:
                        params["expect_lines"] = total
                while last and sent:
                    res, checked = _answer(c, sent, bar, checked)
                c.send("memory.import", params, timeout=None if last else 300.0)
                sent.append((len(chunk), last))
                try:
                    chunk = None if last else next(batches)
                except Db0Error as bad:
                    bad_line = bad
                    break
                while len(sent) > (0 if last else 1):
                    res, checked = _answer(c, sent, bar, checked)
        except Db0Error as e:
            failed_last = sent[0][1] if sent else last
            raise _failed(c, import_id, e, checked, failed_last, total, sent[1:]) from None
        if bad_line is not None:  # nothing may stay staged
            _drain(c, sent)
            _abort(c, import_id)
            raise bad_line
    if wait:
        c.call("memory.wait", {"ids": res["ids"]}, timeout=None)
    redacted = res.get("redacted") or {}
    summary = {"stored": res["stored"], "duplicate": res["duplicate"], "total": total,
               "redacted": redacted}
    if redacted and not json_:
        from db0.cli.commands.memory import redaction_notice

        output.notice(redaction_notice(redacted))
    if json_:
        output.emit_json({**summary, "ids": res["ids"]})
    else:
        output.notice(f"db0: imported {output.count(res['stored'], 'memory', 'memories')} "
                      f"({output.count(res['duplicate'], 'duplicate')}) from "
                      f"{output.count(total, 'line')}")
    return 0


def _answer(c: Any, sent: list[tuple[int, bool]], bar: Any, checked: int
            ) -> tuple[dict[str, Any], int]:
    """The answer to the oldest batch sent, and the lines checked with it."""
    n, last = sent[0]
    res: dict[str, Any] = c.receive("memory.import", None if last else 300.0)
    sent.pop(0)
    bar.advance(n)
    return res, checked + n


def _drain(c: Any, sent: list[tuple[int, bool]]) -> None:
    """Read the answers still owed (whatever they say), so the connection can be used again."""
    for _ in sent:
        with contextlib.suppress(Db0Error):
            c.receive("memory.import", 300.0)
    sent.clear()


def _abort(c: Any, import_id: str | None) -> None:
    if import_id:
        with contextlib.suppress(Db0Error):
            c.call("memory.import_abort", {"import_id": import_id}, timeout=30.0)


def _failed(c: Any, import_id: str | None, e: Db0Error, checked: int, last: bool,
            total: int, owed: list[tuple[int, bool]]) -> Db0Error:
    """The one error an import that did not commit reports (and its staged lines dropped);
    `owed`: batches sent after the one that failed, whose answers are still to be read."""
    if e.code in ("unavailable", "shutting_down"):
        sent = "before the request was sent" not in e.message
        if import_id and last and sent:  # the commit was under way: ask a daemon still there
            from db0.daemon.client import Client

            with contextlib.suppress(Db0Error), Client(autostart="never") as probe:
                st = probe.call("memory.import_status", {"import_id": import_id}, timeout=30.0)
                if st.get("committed"):
                    return Db0Error("invalid", "the connection was lost after the import "
                                    "committed: every line was imported",
                                    "see them with: db0 list")
                return Db0Error(e.code, f"the import was interrupted ({e.message}); none of "
                                "its lines were kept", "run the same import again")
            return Db0Error(e.code, f"the daemon stopped while the import was committing "
                            f"({e.message}): either all {total} lines are in or none are, "
                            "nothing in between", "see which with: db0 list")
        return Db0Error(e.code, f"the import was interrupted ({e.message}); none of its "
                        "lines were kept", "run the same import again")
    _drain(c, owed)
    _abort(c, import_id)
    return Db0Error(e.code, f"{e.message} ({checked} lines checked before it; nothing was "
                    "imported)", e.hint or "fix that line and run the import again")


def export(
    all_: Annotated[bool, Opt("--all", help="Include superseded and forgotten "
                                       "memories.")] = False,
    everyone: Annotated[bool, Opt("--everyone", help="Every user's, agent's, "
                                           "session's and task's memories, not only the ones "
                                           "you can see.")] = False,
    json_: Annotated[bool, Opt("--json", help="One JSON document {\"memories\": [...]} "
                                              "instead of JSON lines.")] = False,
    user: UserOpt = None, agent: AgentOpt = None, session: SessionOpt = None,
    task: TaskOpt = None,
) -> int:
    """Write memories as JSON lines (what `db0 import` reads).

    \b
    Examples:
      db0 export > memories.jsonl
      db0 export --all --everyone | gzip > backup.jsonl.gz
    """
    c = client()
    after = 0
    ctx = context(user, agent, session, task)
    w = sys.stdout.write
    sep = ""
    if json_:
        w('{"memories": [')
    while True:
        page = c.call("memory.export", {"after": after, "limit": BATCH, "all": all_,
                                        "everyone": everyone, "context": ctx})
        for m in page["items"]:
            line = json.dumps({k: m.get(k) for k in EXPORT_FIELDS
                               if m.get(k) not in (None, False)}, ensure_ascii=False,
                              sort_keys=True)
            w(f"{sep}{line}" if json_ else line + "\n")
            sep = ", "
        if page["next"] is None:
            break
        after = page["next"]
    if json_:
        w("]}\n")
    return 0


COMMANDS: list[Command] = [
    cmd("import", import_),
    cmd("export", export),
]

"""import and export: JSON lines in, the same JSON lines out (so they round-trip)."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from db0.cli import output
from db0.cli.options import AgentOpt, JsonOpt, SessionOpt, TaskOpt, UserOpt, context, read_source
from db0.cli.rpc import client
from db0.daemon.protocol import Db0Error

BATCH = 5000
EXPORT_FIELDS = ("id", "content", "scope", "key", "tags", "metadata", "created_at", "pinned",
                 "expires_at", "user", "agent", "session", "task", "superseded_by",
                 "forgotten_at")


def _parse_lines(raw: bytes, source: str) -> list[tuple[int, dict[str, Any]]]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        bad = raw[: e.start].count(b"\n") + 1
        raise Db0Error("invalid", f"{source}: line {bad} is not valid UTF-8",
                       "re-encode the file as UTF-8; nothing was imported") from None
    items = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise Db0Error("invalid", f"{source}: line {n} is not JSON ({e})",
                           "fix that line; nothing was imported") from None
        if not isinstance(obj, dict):
            raise Db0Error("invalid", f"{source}: line {n} is not a JSON object",
                           'write {"content": "..."}; nothing was imported')
        items.append((n, obj))
    return items


def import_(
    source: Annotated[str, typer.Argument(help="A JSON-lines file, or '-' for stdin.")],
    wait: Annotated[bool, typer.Option("--wait", help="Return once everything is fully "
                                       "indexed (embedded).")] = False,
    allow_secrets: Annotated[bool, typer.Option("--allow-secrets", help="Store what looks "
                                                "like a secret as it is.")] = False,
    json_: JsonOpt = False,
    user: UserOpt = None, agent: AgentOpt = None, session: SessionOpt = None,
    task: TaskOpt = None,
) -> int:
    """Import memories from JSON lines {content, scope?, key?, tags?, metadata?, created_at?}.

    All or nothing: every line is checked before anything is written.
    """
    items = _parse_lines(read_source(source), "stdin" if source == "-" else source)
    ctx = context(user, agent, session, task)
    c = client()
    # First pass: the daemon checks every batch without writing, so a bad line anywhere
    # means nothing at all is imported.
    for i in range(0, len(items), BATCH):
        chunk = items[i:i + BATCH]
        c.call("memory.import", {"items": [o for _, o in chunk], "lines": [n for n, _ in chunk],
                                 "dry_run": True, "context": ctx,
                                 "allow_secrets": allow_secrets})
    stored = duplicate = 0
    ids: list[str] = []
    redacted: dict[str, int] = {}
    with output.progress("importing", len(items)) as bar:
        for i in range(0, len(items), BATCH):
            chunk = items[i:i + BATCH]
            res = c.call("memory.import", {"items": [o for _, o in chunk], "context": ctx,
                                           "lines": [n for n, _ in chunk],
                                           "allow_secrets": allow_secrets})
            for kind, n in (res.get("redacted") or {}).items():
                redacted[kind] = redacted.get(kind, 0) + n
            stored += res["stored"]
            duplicate += res["duplicate"]
            ids += res["ids"]
            bar.advance(len(chunk))
    if wait:
        c.call("memory.wait", {"ids": ids}, timeout=None)
    summary = {"stored": stored, "duplicate": duplicate, "total": len(items),
               "redacted": redacted}
    if redacted and not json_:
        from db0.cli.commands.memory import redaction_notice

        output.notice(redaction_notice(redacted))
    if json_:
        output.emit_json({**summary, "ids": ids})
    else:
        output.notice(f"db0: imported {stored} memories ({duplicate} duplicates) "
                      f"from {len(items)} lines")
    return 0


def export(
    all_: Annotated[bool, typer.Option("--all", help="Include superseded and forgotten "
                                       "memories.")] = False,
    everyone: Annotated[bool, typer.Option("--everyone", help="Every user's, agent's, "
                                           "session's and task's memories, not only the ones "
                                           "you can see.")] = False,
    user: UserOpt = None, agent: AgentOpt = None, session: SessionOpt = None,
    task: TaskOpt = None,
) -> int:
    """Write memories as JSON lines (what `db0 import` reads)."""
    c = client()
    after = 0
    ctx = context(user, agent, session, task)
    w = sys.stdout.write
    while True:
        page = c.call("memory.export", {"after": after, "limit": BATCH, "all": all_,
                                        "everyone": everyone, "context": ctx})
        for m in page["items"]:
            w(json.dumps({k: m.get(k) for k in EXPORT_FIELDS if m.get(k) not in (None, False)},
                         ensure_ascii=False, sort_keys=True) + "\n")
        if page["next"] is None:
            return 0
        after = page["next"]


def register(app: typer.Typer) -> None:
    app.command("import")(import_)
    app.command("export")(export)

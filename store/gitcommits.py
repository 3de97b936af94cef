"""Commits as memories: one memory per commit, keyed `git:<repo>:<sha>`, idempotent by key.

A rewritten commit (amend, rebase) is superseded by its new version, with the audit trail every
supersede has; `git_rewrites` keeps the pairs so the order in which the background hooks'
captures arrive does not matter.
"""

from __future__ import annotations

import json
import time
from typing import Any

from db0.store import write
from db0.store.context import Context
from db0.store.core import Store, state_of, write_state


def key(repo: str, sha: str) -> str:
    return f"git:{repo}:{sha}"


def _any_version(store: Store, k: str, scope: str, owner: str) -> dict[str, Any] | None:
    """The memory stored for this commit, live or not (the live one first)."""
    row = store.conn.execute(
        "SELECT id FROM memories WHERE key=? AND scope=? AND owner=? "
        "ORDER BY superseded_by IS NOT NULL, forgotten_ts IS NOT NULL LIMIT 1",
        (k, scope, owner)).fetchone()
    return None if row is None else state_of(store.conn, row[0])


def _supersede(store: Store, old: dict[str, Any], new_id: str, why: str) -> bool:
    if old["superseded_by"] is not None or old["forgotten_ts"] is not None:
        return False
    now = time.time()
    old.update(superseded_by=new_id, superseded_ts=now, supersede_reason=why, updated_ts=now)
    write_state(store, old, "supersede", {"by": new_id, "reason": why})
    return True


def rewritten_to(store: Store, repo: str, sha: str) -> str | None:
    row = store.conn.execute("SELECT new_sha FROM git_rewrites WHERE repo=? AND old_sha=?",
                             (repo, sha)).fetchone()
    return None if row is None else str(row[0])


def capture(store: Store, ctx: Context, repo: str, scope: str,
            items: list[tuple[str, write.Prepared]],
            rewrites: list[tuple[str, str]], kind: str) -> dict[str, int]:
    """Store the commits not seen before, then apply old -> new rewrites; in one transaction.

    `items` are (sha, the prepared memory with its key set)."""
    out = {"stored": 0, "duplicate": 0, "superseded": 0}
    now = time.time()
    for old_sha, new_sha in rewrites:
        store.conn.execute(
            "INSERT INTO git_rewrites(repo, old_sha, new_sha, kind, ts) VALUES (?,?,?,?,?) "
            "ON CONFLICT(repo, old_sha) DO UPDATE SET new_sha=excluded.new_sha, "
            "kind=excluded.kind, ts=excluded.ts", (repo, old_sha, new_sha, kind, now))
    for _sha, p in items:
        if _any_version(store, p.item["key"], p.item["scope"],
                        ctx.owner(p.item["scope"])) is not None:
            out["duplicate"] += 1
            continue
        res = write.remember(store, ctx, p, kind="git")
        out["stored" if res["status"] == "stored" else "duplicate"] += 1
    # The rewrites that touch these commits, applied to whatever is stored now: a capture
    # that arrived after its rewrite is superseded here too.
    shas = json.dumps(sorted({sha for sha, _ in items} | {s for p in rewrites for s in p}))
    pairs = store.conn.execute(
        "SELECT old_sha, new_sha, kind FROM git_rewrites WHERE repo=? AND "
        "(old_sha IN (SELECT value FROM json_each(?)) OR new_sha IN "
        "(SELECT value FROM json_each(?)))", (repo, shas, shas)).fetchall()
    owner = ctx.owner(scope)
    for was, now_sha, how in pairs:
        old = _any_version(store, key(repo, str(was)), scope, owner)
        if old is None or old["superseded_by"] is not None:
            continue
        new = _any_version(store, key(repo, str(now_sha)), scope, owner)
        if new is not None and _supersede(store, old, new["id"], f"git {how}"):
            out["superseded"] += 1
    return out

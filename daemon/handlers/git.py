"""`git.capture`: commits from the git hooks (`db0 git capture`) and `db0 ingest git`.

The client reads the commits with git and sends them as records; the daemon makes each one a
memory (`agent` scope unless `[git] scope` says otherwise), tagged `git` and the repository's
name, keyed by sha, and supersedes commits an amend or a rebase rewrote. Spooled captures
(the daemon was down when the hook ran) come through `apply` too.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from db0.daemon.handlers import rpc
from db0.daemon.protocol import Db0Error
from db0.store import gitcommits, memories, secrets
from db0.store.context import SCOPES, Context

if TYPE_CHECKING:
    from db0.daemon.server import Request, Server
    from db0.store.core import Store

SHA = re.compile(r"^[0-9a-f]{40}(?:[0-9a-f]{24})?$")
KINDS = ("commit", "amend", "rebase", "ingest")
MAX_COMMITS = 5_000
MAX_FILES_SHOWN = 20
MAX_FILES_KEPT = 200


def _str(rec: dict[str, Any], name: str, limit: int = 20_000) -> str:
    v = rec.get(name)
    return v[:limit] if isinstance(v, str) else ""


def content_of(rec: dict[str, Any], repo: str) -> str:
    subject, body = _str(rec, "subject", 2_000).strip(), _str(rec, "body").strip()
    files = [f for f in rec.get("files") or [] if isinstance(f, str)]
    branch = _str(rec, "branch", 300) or "a detached HEAD"
    lines = [subject or "(no commit message)"]
    if body:
        lines += ["", body]
    lines += ["", f"commit {rec['sha'][:12]} on {branch} in {repo}"]
    if files:
        shown = ", ".join(files[:MAX_FILES_SHOWN])
        more = len(files) - MAX_FILES_SHOWN
        lines.append(f"files: {shown}" + (f" (and {more} more)" if more > 0 else ""))
    return "\n".join(lines)


def item_of(rec: Any, repo: str, scope: str) -> dict[str, Any]:
    if not isinstance(rec, dict) or not isinstance(rec.get("sha"), str) \
            or not SHA.match(rec["sha"]):
        raise Db0Error("bad_request", "each commit needs a full hex sha",
                       "send records from git log --format=%H")
    files = [f for f in rec.get("files") or [] if isinstance(f, str)][:MAX_FILES_KEPT]
    meta = {"source": "git", "repo": repo, "sha": rec["sha"],
            "branch": _str(rec, "branch", 300) or None, "author": _str(rec, "author", 300),
            "parents": [p for p in rec.get("parents") or [] if isinstance(p, str)][:8],
            "files": files}
    raw: dict[str, Any] = {"content": content_of(rec, repo), "scope": scope,
                           "key": gitcommits.key(repo, rec["sha"]), "tags": ["git", repo],
                           "metadata": {k: v for k, v in meta.items() if v not in (None, "")},
                           "created_at": _str(rec, "date", 64) or None}
    secrets.scrub_item(raw, False)  # commit messages carry tokens too
    return memories.validate(raw)


def apply(srv: Server, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
    repo = params.get("repo")
    if not isinstance(repo, str) or not repo.strip() or len(repo) > 300:
        raise Db0Error("bad_request", "repo must be the repository's name")
    kind = params.get("kind") or "commit"
    if kind not in KINDS:
        raise Db0Error("bad_request", f"unknown capture kind {kind!r}", "one of: "
                       + ", ".join(KINDS))
    commits = params.get("commits") or []
    rewrites = params.get("rewrites") or []
    if not isinstance(commits, list) or len(commits) > MAX_COMMITS:
        raise Db0Error("bad_request", f"commits must be a list of at most {MAX_COMMITS}",
                       "send them in batches")
    if not isinstance(rewrites, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(s, str) and SHA.match(s)
                                                        for s in p) for p in rewrites):
        raise Db0Error("bad_request", "rewrites must be [old sha, new sha] pairs")
    scope = str(params.get("scope") or srv.config.get("git", {}).get("scope") or "agent")
    if scope not in SCOPES:
        raise Db0Error("bad_request", f"unknown scope {scope!r}", "one of: " + ", ".join(SCOPES))
    items = [(rec["sha"], item_of(rec, repo, scope)) for rec in commits]  # all checked first
    how = kind if kind in ("amend", "rebase") else "rebase"

    def job(store: Store) -> dict[str, int]:
        return gitcommits.capture(store, ctx, repo, scope, items,
                                  [(str(o), str(n)) for o, n in rewrites], how)

    result: dict[str, Any] = srv.write(job)
    result["repo"] = repo
    return result


@rpc("git.capture")
def capture(srv: Server, req: Request) -> dict[str, Any]:
    return apply(srv, req.params, req.ctx)

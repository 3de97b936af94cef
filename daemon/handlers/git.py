"""`git.capture`: commits from the git hooks (`db0 git capture`) and `db0 ingest git`.

The client reads the commits with git and sends them as records; the daemon makes each one a
memory (`agent` scope unless `[git] scope` says otherwise), tagged `git` and the repository's
name, keyed by sha, and supersedes commits an amend or a rebase rewrote. Spooled captures
(the daemon was down when the hook ran) come through `apply` too.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from db0.daemon.core.shapes import ListOf, Obj, OneOf, P, Str
from db0.daemon.handlers import rpc
from db0.daemon.protocol import Db0Error
from db0.store import gitcommits, memories, write
from db0.store.context import SCOPES

if TYPE_CHECKING:
    from db0.daemon.core.dispatch import Request
    from db0.daemon.core.runtime import Runtime
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


def item_of(rec: Any, repo: str, scope: str) -> write.Prepared:
    if not isinstance(rec, dict) or not isinstance(rec.get("sha"), str) \
            or not SHA.match(rec["sha"]):
        raise Db0Error("bad_request", "each commit needs a full hex sha",
                       "send records from git log --format=%H")
    files = [f for f in rec.get("files") or [] if isinstance(f, str)][:MAX_FILES_KEPT]
    meta = {"source": "git", "repo": repo, "sha": rec["sha"],
            "branch": _str(rec, "branch", 300) or None, "author": _str(rec, "author", 300),
            "parents": [p for p in rec.get("parents") or [] if isinstance(p, str)][:8],
            "files": files}
    return write.prepare({"content": content_of(rec, repo), "scope": scope,
                          "key": gitcommits.key(repo, rec["sha"]),
                          "tags": ["git", repo[:memories.MAX_TAG_CHARS]],
                          "metadata": {k: v for k, v in meta.items() if v not in (None, "")},
                          "created_at": _str(rec, "date", 64) or None})


SHA_SHAPE = Str(nonempty=True, max_len=64)
TEXT = Str(max_len=100_000)
COMMIT = Obj({
    "sha": P(SHA_SHAPE, "the full hex sha", required=True),
    "subject": P(TEXT, "the first line"), "body": P(TEXT, "the rest of the message"),
    "branch": P(Str(max_len=1000), "the branch it was made on"),
    "author": P(Str(max_len=1000), "the author"), "date": P(Str(max_len=64), "ISO 8601"),
    "parents": P(ListOf(SHA_SHAPE, max_items=64), "parent shas"),
    "files": P(ListOf(Str(max_len=4096), max_items=100_000), "the files it changed"),
})


@rpc("git.capture", {
    "repo": P(Str(nonempty=True, max_len=300, strip=True), "the repository's name",
              required=True),
    "kind": P(OneOf(KINDS), "what made these commits", default="commit"),
    "commits": P(ListOf(COMMIT, max_items=MAX_COMMITS),
                 "commit records: sha, subject, body, branch, author, date, parents, files",
                 default=list),
    "rewrites": P(ListOf(ListOf(SHA_SHAPE, max_items=2), max_items=MAX_COMMITS),
                  "[old sha, new sha] pairs an amend or a rebase made", default=list),
    "scope": P(OneOf(SCOPES), "the scope of the commits' memories (default [git] scope)"),
}, writes=True)
def capture(rt: Runtime, req: Request) -> dict[str, Any]:
    """Commits as memories, keyed by sha; rewritten commits superseded by their new selves."""
    p = req.params
    repo, kind, rewrites = p["repo"], p["kind"], p["rewrites"]
    if not all(len(pair) == 2 and all(SHA.match(s) for s in pair) for pair in rewrites):
        raise Db0Error("bad_request", "rewrites must be [old sha, new sha] pairs of full shas")
    scope = p.get("scope") or rt.config.git.scope
    items = [(rec["sha"], item_of(rec, repo, scope)) for rec in p["commits"]]  # checked first
    how = kind if kind in ("amend", "rebase") else "rebase"
    ctx = req.ctx

    def job(store: Store) -> dict[str, int]:
        return gitcommits.capture(store, ctx, repo, scope, items,
                                  [(str(o), str(n)) for o, n in rewrites], how)

    result: dict[str, Any] = rt.write(job)
    result["repo"] = repo
    return result

"""Git capture: every commit a memory, amends and rebases superseding what they rewrote.

Three entry points:
- `db0 git capture [amend|rebase]`: what the hooks run, in the background. It reads the commit
  (or the post-rewrite pairs from `DB0_GIT_REWRITES` or stdin) with git and hands the records to
  the daemon, or spools them when no daemon answers (it starts one); problems go to the hooks
  log. Always exit 0, never a traceback, no Typer.
- `db0 integrate git [--global] [--remove] [--dry-run]`: installs or removes the hooks. Git 2.54+
  has config-based hooks (`hook.db0.*`); older Git gets a marked block in
  `$(git rev-parse --git-path hooks)/post-commit` and `/post-rewrite` (which honours
  `core.hooksPath` and worktrees), kept apart from whatever the hook already held.
- `db0 ingest git [RANGE]`: backfills history; commits are keyed by sha, so twice stores nothing.

The hook block resolves HEAD in the foreground (a rebase moves it right after) and starts db0
in the background, so a commit waits only for a `git rev-parse` and a fork.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from db0.daemon.protocol import Db0Error

EVENTS = ("post-commit", "post-rewrite")
BEGIN = "# >>> db0 git capture >>> (db0 integrate git --remove takes this block out)"
BEGIN_CREATED = "# >>> db0 git capture, created this file >>> (db0 integrate git --remove " \
                "takes this block out)"
END = "# <<< db0 git capture <<<"
CONFIG_HOOKS = (2, 54)
SHELLS = re.compile(r"^#!\s*(?:/usr)?/bin/(?:env\s+)?(?:sh|bash|dash|zsh|ksh)\b")
MAX_STDIN = 1 << 20
SEND_DEADLINE_S = 10.0  # a capture runs in the background: it may wait for a busy daemon
BATCH = 500
FORMAT = "%x1e%H%x1f%P%x1f%an%x1f%aI%x1f%s%x1f%b%x1f"


# -- reading git ------------------------------------------------------------------------------

def _env() -> dict[str, str]:
    env = dict(os.environ)
    # A hook inherits the commit's temporary index, which is gone by the time we run.
    env.pop("GIT_INDEX_FILE", None)
    env["GIT_OPTIONAL_LOCKS"] = "0"
    return env


def git(*args: str, cwd: str | None = None, ok: tuple[int, ...] = (0,)) -> str:
    exe = shutil.which("git")
    if exe is None:
        raise Db0Error("unavailable", "git is not on PATH", "install git, or add it to PATH")
    p = subprocess.run([exe, "-c", "core.quotepath=off", *args], cwd=cwd, env=_env(),
                       capture_output=True, timeout=120)
    if p.returncode not in ok:
        msg = p.stderr.decode("utf-8", "replace").strip().splitlines()
        first = msg[0] if msg else f"exit {p.returncode}"
        if "not a git repository" in first:
            raise Db0Error("bad_request", "this is not inside a git repository",
                           "cd into a repository, or use --global")
        raise Db0Error("failed", f"git {args[0]}: {first.removeprefix('fatal: ')}")
    return p.stdout.decode("utf-8", "replace")


def version() -> tuple[int, int]:
    m = re.search(r"(\d+)\.(\d+)", git("--version"))
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def repo_name(cwd: str | None = None) -> str:
    """The repository's name, the same from every worktree: its common git dir's folder."""
    common = Path(git("rev-parse", "--path-format=absolute", "--git-common-dir",
                      cwd=cwd).strip())
    name = common.parent.name if common.name == ".git" else common.name.removesuffix(".git")
    return name or "repo"


def branch(cwd: str | None = None) -> str | None:
    """HEAD's branch; during a rebase (HEAD detached while the hook runs) the branch being
    rebased, which git keeps in rebase-merge/ or rebase-apply/ head-name."""
    name = git("rev-parse", "--abbrev-ref", "HEAD", cwd=cwd, ok=(0, 128)).strip()
    if name not in ("", "HEAD"):
        return name
    for state in ("rebase-merge/head-name", "rebase-apply/head-name"):
        path = git("rev-parse", "--git-path", state, cwd=cwd, ok=(0, 128)).strip()
        if path:
            try:
                ref = (Path(cwd or ".") / path).read_text().strip()
            except OSError:
                continue
            if ref.startswith("refs/heads/"):
                return ref.removeprefix("refs/heads/")
    return None


def has_commits(cwd: str | None = None) -> bool:
    return bool(git("rev-parse", "--verify", "-q", "HEAD^{commit}", cwd=cwd, ok=(0, 1)).strip())


def parse_log(text: str, branch_name: str | None) -> list[dict[str, Any]]:
    out = []
    for rec in text.split("\x1e")[1:]:
        parts = rec.split("\x1f")
        if len(parts) < 7:
            continue
        sha, parents, author, date, subject, body, rest = parts[:7]
        out.append({"sha": sha.strip(), "parents": parents.split(), "author": author,
                    "date": date.strip(), "subject": subject, "body": body.strip(),
                    "branch": branch_name,
                    "files": [ln for ln in rest.splitlines() if ln.strip()]})
    return out


def commits(revs: list[str], walk: bool, cwd: str | None = None,
            branch_name: str | None = None) -> list[dict[str, Any]]:
    args = ["log", "--name-only", f"--format={FORMAT}"]
    if not walk:
        args.append("--no-walk=unsorted")
    return parse_log(git(*args, *revs, "--", cwd=cwd), branch_name)


# -- the hook's entry point ------------------------------------------------------------------

def _send(params: dict[str, Any]) -> dict[str, Any]:
    """Hand the capture to the daemon, or spool it when none answers in time; what happened."""
    from db0.cli import hook
    from db0.daemon.client import deliver
    from db0.daemon.paths import get_paths
    from db0.daemon.protocol import Db0Error

    paths = get_paths()
    try:
        res = deliver("git.capture", params, SEND_DEADLINE_S, paths)
    except Db0Error as e:
        hook._log(paths, "git", params["kind"], f"daemon: {e.message}")
        return {"commits": len(params["commits"]), "error": e.message}
    if res is None:
        hook._log(paths, "git", params["kind"], "daemon not answering: capture spooled")
        return {"commits": len(params["commits"]), "spooled": True}
    return {"commits": len(params["commits"]), "spooled": False, **res}


def _read_pairs(kind: str) -> list[list[str]]:
    text = os.environ.get("DB0_GIT_REWRITES")
    if text is None and not sys.stdin.isatty():
        text = sys.stdin.buffer.read(MAX_STDIN).decode("utf-8", "replace")
    pairs = []
    for line in (text or "").splitlines():
        f = line.split()
        if len(f) >= 2 and all(re.fullmatch(r"[0-9a-f]{40,64}", s) for s in f[:2]):
            pairs.append([f[0], f[1]])
    return pairs


def capture(argv: list[str]) -> dict[str, Any]:
    kind = argv[0] if argv and argv[0] in ("amend", "rebase") else "commit"
    background = "--background" in argv
    if kind == "commit":
        # The hook resolved HEAD and its branch before a rebase or a checkout moved them.
        head = (os.environ.get("DB0_GIT_HEAD") or
                git("rev-parse", "HEAD", "--symbolic-full-name", "HEAD")).split()
        shas, pairs = head[:1], []
        ref = head[1] if len(head) > 1 else "HEAD"
        branch_name = ref.removeprefix("refs/heads/") if ref != "HEAD" else None
    else:
        pairs = _read_pairs(kind)
        shas = list(dict.fromkeys(n for _, n in pairs))
        branch_name = branch()
    if not shas:
        return {"commits": 0}
    if background and os.fork() > 0:  # config-based hooks: the commit does not wait for us
        return {"commits": len(shas), "background": True}
    if background:
        os.setsid()
    params = {"kind": kind, "repo": repo_name(),
              "commits": commits(shas, walk=False, branch_name=branch_name), "rewrites": pairs,
              "context": {k: v for k, v in (("user", os.environ.get("DB0_USER")),
                                            ("agent", os.environ.get("DB0_AGENT"))) if v}}
    return _send(params)


def main(argv: list[str]) -> int:
    """`db0 git capture …` from the app, before Typer: always 0, problems to the hooks log."""
    if "-h" in argv or "--help" in argv:
        sys.stdout.write("Usage: db0 git capture [amend|rebase] [--background] [--json]\n\n"
                         "  Run by the git hooks that `db0 integrate git` installs: captures "
                         "HEAD (post-commit)\n  or the rewritten commits on stdin "
                         "(post-rewrite). Always exits 0.\n")
        return 0
    if os.environ.get("DB0_DISABLE", "") not in ("", "0"):
        return 0
    try:
        result = capture(argv)
        if "--json" in argv and not result.get("background"):
            sys.stdout.write(json.dumps(result) + "\n")
    except BaseException as e:  # never fail a commit
        with contextlib.suppress(Exception):
            from db0.cli import hook
            from db0.daemon.paths import get_paths

            msg = e.message if isinstance(e, Db0Error) else f"{type(e).__name__}: {e}"
            hook._log(get_paths(), "git", "capture", msg)
    return 0


# -- installing the hooks --------------------------------------------------------------------

def db0_path() -> str:
    me = Path(sys.argv[0]).absolute() if sys.argv and sys.argv[0] else None
    if me is None or me.name != "db0" or not me.exists():
        me = Path(sys.executable).with_name("db0")
    return str(me)


def _q(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


def block(event: str, created: bool) -> str:
    exe = _q(db0_path())
    head = BEGIN_CREATED if created else BEGIN
    if event == "post-commit":
        body = ('db0_head=$(git rev-parse HEAD --symbolic-full-name HEAD 2>/dev/null)\n'
                f'( DB0_GIT_HEAD="$db0_head" {exe} git capture </dev/null >/dev/null 2>&1 & )'
                ' 2>/dev/null\n')
    else:  # post-rewrite: the pairs are on stdin, which the rest of the hook gets back
        body = ('db0_pairs=$(cat)\n'
                f'( DB0_GIT_REWRITES="$db0_pairs" {exe} git capture "$1" </dev/null '
                '>/dev/null 2>&1 & ) 2>/dev/null\n'
                'exec 0<<db0_EOF\n$db0_pairs\ndb0_EOF\n')
    return f"{head}\n{body}{END}\n"


def cut_block(text: str) -> tuple[str, bool, bool]:
    """The text without db0's block; whether there was one; whether db0 created the file."""
    lines = text.splitlines(keepends=True)
    out, inside, found, created = [], False, False, False
    for ln in lines:
        s = ln.rstrip("\n")
        if not inside and s.startswith("# >>> db0 git capture"):
            inside, found, created = True, True, "created this file" in s
            continue
        if inside:
            if s == END:
                inside = False
            continue
        out.append(ln)
    return "".join(out), found, created


def plan_file(path: Path, event: str, remove: bool) -> tuple[str | None, str]:
    """(new text or None to delete, action) for one hook file."""
    old = path.read_text("utf-8", "replace") if path.exists() else None
    if old is None:
        return (None, "unchanged") if remove else (f"#!/bin/sh\n{block(event, True)}", "created")
    rest, found, created = cut_block(old)
    if remove:
        if not found:
            return old, "unchanged"
        if created and rest.strip() in ("", "#!/bin/sh"):
            return None, "removed"
        return rest, "updated"
    first = rest.split("\n", 1)[0]
    if first.startswith("#!") and not SHELLS.match(first):
        raise Db0Error("refused", f"{path} is not a shell script ({first.strip()}); db0 "
                       "does not edit it", f"call '{db0_path()} git capture' from it yourself")
    if first.startswith("#!"):
        head, _, tail = rest.partition("\n")
        new = f"{head}\n{block(event, created)}{tail}"
    else:
        new = f"#!/bin/sh\n{block(event, created)}{rest}"
    return new, ("unchanged" if new == old else "updated")


def _write(path: Path, text: str | None) -> None:
    if text is None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.db0-tmp")
    tmp.write_text(text, "utf-8")
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o755
    os.chmod(tmp, mode | 0o111)
    os.replace(tmp, path)


def hooks_dir(global_: bool) -> Path:
    if global_:
        found = git("config", "--global", "--get", "core.hooksPath", ok=(0, 1)).strip()
        if not found:
            raise Db0Error("unavailable", f"git {'.'.join(map(str, version()))} has no "
                           "config-based hooks (2.54+), so --global needs core.hooksPath",
                           "run it inside a repository without --global, or set "
                           "git config --global core.hooksPath DIR first")
        return Path(os.path.expanduser(found))
    rel = git("rev-parse", "--git-path", "hooks").strip()
    return Path(rel).absolute()


def _config_hooks(global_: bool, remove: bool, dry_run: bool) -> list[dict[str, Any]]:
    where = ["--global"] if global_ else ["--local"]
    current = git("config", *where, "--get-all", "hook.db0.event", ok=(0, 1)).split()
    if remove:
        if not current:
            return [{"config": "hook.db0", "action": "unchanged"}]
        if not dry_run:
            git("config", *where, "--remove-section", "hook.db0", ok=(0, 128))
        return [{"config": "hook.db0", "action": "removed"}]
    command = f"{_q(db0_path())} git capture --background"
    have = git("config", *where, "--get", "hook.db0.command", ok=(0, 1)).strip()
    if sorted(current) == sorted(EVENTS) and have == command:
        return [{"config": "hook.db0", "action": "unchanged"}]
    if not dry_run:
        git("config", *where, "--unset-all", "hook.db0.event", ok=(0, 5))
        for ev in EVENTS:
            git("config", *where, "--add", "hook.db0.event", ev)
        git("config", *where, "hook.db0.command", command)
    return [{"config": "hook.db0", "action": "updated" if current else "created"}]


def integrate(global_: bool, remove: bool, dry_run: bool, json_: bool) -> int:
    from db0.cli import output

    v = version()
    if v >= CONFIG_HOOKS:
        changes = _config_hooks(global_, remove, dry_run)
        mode = "config"
    else:
        d = hooks_dir(global_)
        plans = [(d / ev, *plan_file(d / ev, ev, remove)) for ev in EVENTS]  # all checked first
        if not dry_run:
            for path, text, action in plans:
                if action != "unchanged":
                    _write(path, text)
        changes = [{"file": str(p), "action": a} for p, _, a in plans]
        mode = "hooks-dir"
    result = {"target": "git", "mode": mode, "git_version": ".".join(map(str, v)),
              "global": global_, "remove": remove, "dry_run": dry_run, "changes": changes}
    if json_:
        output.emit_json(result)
        return 0
    verb = "would be " if dry_run else ""
    for c in changes:
        output.notice(f"{c.get('file') or c.get('config')}: {verb}{c['action']}")
    if not remove and not dry_run:
        output.notice("db0: every commit here is now captured (db0 recall --tag git …); "
                      "backfill history with: db0 ingest git")
    return 0


# -- backfill --------------------------------------------------------------------------------

def ingest(range_: str | None, json_: bool) -> int:
    from db0.cli import output
    from db0.cli.context import build
    from db0.cli.rpc import client

    repo = repo_name()
    if not has_commits():
        raise Db0Error("bad_request", f"the repository {repo} has no commits yet",
                       "commit something first, then run db0 ingest git")
    found = commits([range_ or "HEAD"], walk=True, branch_name=branch())
    found.reverse()  # oldest first: a newer commit's memory is newer
    total: dict[str, Any] = {"repo": repo, "commits": len(found), "stored": 0, "duplicate": 0,
                             "superseded": 0}
    c = client()
    ctx = build()
    with output.progress("ingesting commits", len(found)) as bar:
        for i in range(0, len(found), BATCH):
            part = found[i:i + BATCH]
            res = c.call("git.capture", {"kind": "ingest", "repo": repo, "commits": part,
                                         "rewrites": [], "context": ctx}, timeout=600)
            for k in ("stored", "duplicate", "superseded"):
                total[k] += int(res.get(k) or 0)
            bar.advance(len(part))
    if json_:
        output.emit_json(total)
    else:
        output.notice(f"db0: {output.count(total['commits'], 'commit')} of {repo}: "
                      f"{total['stored']} stored, "
                      f"{total['duplicate']} seen before")
    return 0

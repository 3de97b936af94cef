"""Builds memories.jsonl and questions.jsonl from the hand-written sources in src/*.txt.

The sources are the data; this script only expands them into the shapes db0's own front doors
store (git capture, watched folders, agent hook turns, `db0 remember`), so the JSON lines are
what those front doors would have written. Format (README.md has the full description):

    @project NAME cwd=DIR            defaults for what follows (the repo is NAME)
    @session ID agent=NAME           the `user`/`assistant` blocks that follow are turns of it
    @endsession
    @task ID agent=NAME              the blocks that follow are task-scoped
    @endtask
    @note REL DATE                   Markdown until @endnote, split by db0's watchparse
    @endnote
    == ID DATE KIND [scope=] [key=] [tags=a,b] [agent=] [author=] [branch=] [files=a,b]
    text...                          KIND: pref, identity, decision, fact, commit, user, assistant
    ?? CATEGORY [ctx=session:ID|task:ID|agent:NAME] | question | evidence; evidence
                                     an evidence is one id, or `id / id` when either answers
    ;; a comment line

Usage: python bench/agentmem/build.py   (needs db0 importable: the watchparse splitter)
"""

from __future__ import annotations

import hashlib
import json
import shlex
import sys
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
USER = "maya"
NOTES = "/home/maya/notes"
CATEGORIES = ("fact", "paraphrase", "changed", "multi", "temporal", "commit", "notes")
KINDS = ("pref", "identity", "decision", "fact", "commit", "user", "assistant")


def sha_of(ident: str) -> str:
    return hashlib.sha1(f"agentmem:{ident}".encode()).hexdigest()


def commit_content(subject: str, body: str, sha: str, branch: str, repo: str,
                   files: list[str]) -> str:
    """What daemon/handlers/git.py content_of makes of a commit record."""
    from db0.daemon.handlers.git import content_of

    return str(content_of({"subject": subject, "body": body, "sha": sha, "branch": branch,
                       "files": files}, repo))


class Builder:
    def __init__(self) -> None:
        self.mems: list[dict[str, Any]] = []
        self.qs: list[dict[str, Any]] = []
        self.by_id: dict[str, dict[str, Any]] = {}
        self.sessions: dict[str, dict[str, Any]] = {}
        self.tasks: dict[str, str] = {}
        self.heads: dict[str, str] = {}  # repo -> last commit sha (the next one's parent)
        self.note_keys: dict[str, tuple[str, str]] = {}  # key -> (id, content) of its newest
        self.note_versions: dict[str, int] = {}

    def add(self, mem: dict[str, Any]) -> None:
        if mem["id"] in self.by_id:
            raise SystemExit(f"duplicate memory id {mem['id']}")
        self.by_id[mem["id"]] = mem
        self.mems.append(mem)

    def parse(self, path: Path) -> None:
        project = path.stem
        cwd = f"/home/maya/code/{project}"
        session: str | None = None
        task: str | None = None
        block: list[str] | None = None
        header: list[str] = []
        note: tuple[str, str] | None = None
        note_lines: list[str] = []
        n_q = 0

        def flush() -> None:
            nonlocal block
            if block is not None:
                self.block(project, cwd, header, "\n".join(block).strip(), session, task)
            block = None

        for raw in path.read_text("utf-8").splitlines():
            if note is not None:
                if raw.strip() == "@endnote":
                    self.note(project, note[0], note[1], "\n".join(note_lines))
                    note, note_lines = None, []
                else:
                    note_lines.append(raw)
                continue
            if raw.startswith(";;"):
                continue
            if raw.startswith("@") or raw.startswith("== ") or raw.startswith("?? "):
                flush()
            if raw.startswith("@"):
                words = shlex.split(raw[1:])
                opts = dict(w.split("=", 1) for w in words[1:] if "=" in w)
                if words[0] == "project":
                    cwd = opts.get("cwd", cwd)
                elif words[0] == "session":
                    session = words[1]
                    self.sessions[session] = {"agent": opts.get("agent", "claude-code"),
                                              "cwd": opts.get("cwd", cwd)}
                elif words[0] == "endsession":
                    session = None
                elif words[0] == "task":
                    task = words[1]
                    self.tasks[task] = opts.get("agent", "claude-code")
                elif words[0] == "endtask":
                    task = None
                elif words[0] == "note":
                    note = (words[1], words[2])
                else:
                    raise SystemExit(f"{path.name}: unknown directive {raw!r}")
            elif raw.startswith("== "):
                header, block = shlex.split(raw[3:]), []
            elif raw.startswith("?? "):
                n_q += 1
                self.question(project, f"{project}-q{n_q}", raw[3:])
            elif block is not None:
                block.append(raw)
            elif raw.strip():
                raise SystemExit(f"{path.name}: text outside a block: {raw!r}")
        flush()
        if note is not None or session or task:
            raise SystemExit(f"{path.name}: an @note, @session or @task is not closed")

    def block(self, project: str, cwd: str, header: list[str], text: str,
              session: str | None, task: str | None) -> None:
        ident, date, kind = header[:3]
        opts = dict(w.split("=", 1) for w in header[3:])
        if kind not in KINDS:
            raise SystemExit(f"{ident}: unknown kind {kind}")
        if not text:
            raise SystemExit(f"{ident}: empty")
        tags = [t for t in opts.get("tags", "").split(",") if t]
        ctx: dict[str, Any] = {"user": USER, "agent": opts.get("agent", "default")}
        mem: dict[str, Any] = {"id": ident, "project": project, "kind": kind,
                               "created_at": date, "key": opts.get("key"), "tags": tags,
                               "metadata": {}}
        if kind in ("user", "assistant"):
            if session is None:
                raise SystemExit(f"{ident}: a turn outside a @session")
            s = self.sessions[session]
            ctx.update(agent=s["agent"], session=session)
            agent_sid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"agentmem:{session}"))
            mem.update(kind="turn", content=text, scope="session", tags=["turn", kind],
                       metadata={"source": s["agent"], "via": "transcript", "role": kind,
                                 "agent_session": agent_sid, "cwd": s["cwd"],
                                 "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, ident))})
        elif kind == "commit":
            subject, _, body = text.partition("\n")
            sha = sha_of(ident)
            files = [f for f in opts.get("files", "").split(",") if f]
            branch = opts.get("branch", "main")
            parent = self.heads.get(project)
            self.heads[project] = sha
            meta = {"source": "git", "repo": project, "sha": sha, "branch": branch,
                    "author": opts.get("author", "Maya Lindqvist"),
                    "parents": [parent] if parent else [], "files": files}
            mem.update(content=commit_content(subject.strip(), body.strip(), sha, branch,
                                              project, files),
                       scope=opts.get("scope", "agent"), key=f"git:{project}:{sha}",
                       tags=["git", project], metadata=meta)
        else:
            scope = opts.get("scope", "task" if task else "user")
            if scope == "task":
                if task is None:
                    raise SystemExit(f"{ident}: task scope outside a @task")
                ctx.update(agent=self.tasks[task], task=task)
            mem.update(content=text, scope=scope)
        mem["context"] = ctx
        self.add(mem)

    def note(self, project: str, rel: str, date: str, text: str) -> None:
        from db0.daemon.watchparse import sections

        found = sections(rel, text + "\n")
        gone = [k for k in self.note_keys if k.startswith(f"watch:{NOTES}/{rel}#")
                and k.rpartition("#")[2] not in {a for a, _ in found}]
        if gone:  # the watcher would forget them: keep every section in a later version
            raise SystemExit(f"{rel} at {date} drops a section: {gone[0]}")
        for anchor, content in found:
            key = f"watch:{NOTES}/{rel}#{anchor}"
            prev = self.note_keys.get(key)
            if prev is not None and prev[1] == content:
                continue  # unchanged: the watcher leaves it alone
            n = self.note_versions.get(key, 0) + 1
            self.note_versions[key] = n
            ident = f"n:{rel}#{anchor}" + (f"@v{n}" if n > 1 else "")
            self.note_keys[key] = (ident, content)
            self.add({"id": ident, "project": project, "kind": "note", "created_at": date,
                      "content": content, "scope": "user", "key": key, "tags": ["watch"],
                      "metadata": {"source": "watch", "folder": NOTES, "path": rel,
                                   "heading": anchor},
                      "context": {"user": USER, "agent": "default"}})

    def question(self, project: str, ident: str, line: str) -> None:
        head, question, ev = (p.strip() for p in line.split("|"))
        words = head.split()
        cat = words[0]
        if cat not in CATEGORIES:
            raise SystemExit(f"{ident}: unknown category {cat}")
        ctx: dict[str, Any] = {"user": USER, "agent": "default"}
        for w in words[1:]:
            k, _, v = w.partition("=")
            if k != "ctx":
                raise SystemExit(f"{ident}: unknown option {w}")
            what, _, name = v.partition(":")
            if what == "session":
                ctx.update(agent=self.sessions[name]["agent"], session=name)
            elif what == "task":
                ctx.update(agent=self.tasks[name], task=name)
            elif what == "agent":
                ctx["agent"] = name
            else:
                raise SystemExit(f"{ident}: bad ctx {v}")
        self.qs.append({"id": ident, "project": project, "category": cat,
                        "question": question,
                        "evidence": [[a.strip() for a in e.split(" / ")]
                                     for e in ev.split(";") if e.strip()],
                        "context": ctx})

    def finish(self) -> None:
        """Check every question, add the superseded versions of `changed` evidence."""
        latest: dict[tuple[str, str, str], str] = {}
        for m in sorted(self.mems, key=when):
            if m["key"]:
                latest[(m["key"], m["scope"], owner(m))] = m["id"]
        for q in self.qs:
            for e in (i for group in q["evidence"] for i in group):
                ev = self.by_id.get(e)
                if ev is None:
                    raise SystemExit(f"{q['id']}: no memory {e!r}")
                if not visible(ev, q["context"]):
                    raise SystemExit(f"{q['id']}: {e} is not visible from {q['context']}")
                if ev["key"] and latest[(ev["key"], ev["scope"], owner(ev))] != e:
                    raise SystemExit(f"{q['id']}: {e} is superseded later")
            if q["category"] == "changed":
                stale = [m["id"] for g in q["evidence"] for e in g for m in self.mems
                         if m["key"] and m["key"] == self.by_id[e]["key"]
                         and m["id"] != e and owner(m) == owner(self.by_id[e])]
                if not stale:
                    raise SystemExit(f"{q['id']}: a changed question with nothing superseded")
                q["stale"] = stale
        seen: dict[tuple[str, str, str], str] = {}
        for m in self.mems:
            k = (m["content"], m["scope"], owner(m))
            if k in seen:
                raise SystemExit(f"{m['id']} has the same content as {seen[k]}")
            seen[k] = m["id"]


def when(m: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(m["created_at"])


def owner(m: dict[str, Any]) -> str:
    return str(m["context"]["user"] if m["scope"] == "user" else m["context"][m["scope"]])


def visible(m: dict[str, Any], ctx: dict[str, Any]) -> bool:
    return owner(m) == {"user": ctx.get("user"), "agent": ctx.get("agent"),
                        "session": ctx.get("session"), "task": ctx.get("task")}[m["scope"]]


def main() -> None:
    b = Builder()
    for path in sorted((HERE / "src").glob("*.txt")):
        b.parse(path)
    b.finish()
    b.mems.sort(key=when)
    (HERE / "memories.jsonl").write_text("".join(
        json.dumps(m, ensure_ascii=False) + "\n" for m in b.mems))
    (HERE / "questions.jsonl").write_text("".join(
        json.dumps(q, ensure_ascii=False) + "\n" for q in b.qs))
    kinds: dict[str, int] = {}
    for m in b.mems:
        kinds[m["kind"]] = kinds.get(m["kind"], 0) + 1
    cats: dict[str, int] = {}
    for q in b.qs:
        cats[q["category"]] = cats.get(q["category"], 0) + 1
    print(f"{len(b.mems)} memories {kinds}; {len(b.qs)} questions {cats}", file=sys.stderr)


if __name__ == "__main__":
    main()

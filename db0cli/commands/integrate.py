"""db0 integrate claude-code|codex|gemini|mcp|git [--user|--project] [--dry-run] [--remove]
and db0 integrate status: db0's hooks and MCP server in the agents' own settings.

Only db0's own entries are added or removed, recognised by their command (`db0 hook EVENT
--agent NAME`, an MCP server named db0 running `db0 mcp`); everything else in the file is kept
as it was, byte for byte (settingsfile edits in place; Gemini's settings may hold comments). A
file is written only when something changes, atomically, with one backup of what was there
before (`<file>.db0-backup`); a file db0 created is deleted again by --remove when nothing else
is in it (settingsio). A settings file that does not parse is refused with a one-line error
saying where, and left untouched. Timeouts are written in each agent's unit: seconds for
Claude Code and Codex, milliseconds for Gemini CLI.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from db0.cli import output
from db0.cli.options import JsonOpt
from db0.cli.params import Annotated, Arg, Command, Opt, cmd
from db0.cli.settingsfile import add_block, cut_block, newline_of
from db0.cli.settingsio import SettingsFile
from db0.daemon.agents import AGENTS as AGENT_TABLE
from db0.daemon.protocol import Db0Error

TARGETS = ("claude-code", "codex", "gemini", "mcp", "git", "status")
AGENTS = tuple(AGENT_TABLE)
OURS = re.compile(r"(?:^|[/\s\"'])db0(?:\.exe)?[\"']?\s+hook\s+\S+\s+--agent\s+\S+")
TOML_BEGIN = "# >>> db0 mcp server (db0 integrate; db0 integrate codex --remove takes it out) >>>"
TOML_END = "# <<< db0 <<<"

@dataclass
class Change:
    file: Path
    what: str  # 'hooks' or 'mcp'
    action: str = "unchanged"  # created, updated, unchanged, removed, refused
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    backup: Path | None = None
    note: str | None = None

    def public(self) -> dict[str, Any]:
        return {"file": str(self.file), "what": self.what, "action": self.action,
                "added": self.added, "removed": self.removed,
                "backup": str(self.backup) if self.backup else None, "note": self.note}


def db0_command() -> str:
    """How the agents should run db0: `db0` when that is this db0 on PATH, else its path."""
    found = shutil.which("db0")
    me = Path(sys.argv[0]).absolute() if sys.argv and sys.argv[0] else None
    if me is None or me.name not in ("db0", "db0.exe") or not me.exists():
        me = Path(sys.executable).with_name("db0")  # run as python -m, or from a test
        if not me.exists():
            return "db0"
    if found and Path(found).resolve() == me.resolve():
        return "db0"
    return shlex.quote(str(me))


def hook_command(agent: str, event: str) -> str:
    return f"{db0_command()} hook {event} --agent {agent}"


# -- reading and writing settings files ----------------------------------------------------

def syntax(path: Path) -> str:
    """How a settings file is read, as the agents table says its agent reads it (Gemini CLI
    strips comments from its settings.json)."""
    for a in AGENT_TABLE.values():
        for rel, fmt in ((a.hooks_file, a.hooks_format), (a.mcp_file, a.mcp_format),
                         (a.project_hooks_file, a.hooks_format),
                         (a.project_mcp_file, a.mcp_format)):
            if path.as_posix().endswith("/" + rel):
                return fmt
    return "toml" if path.suffix == ".toml" else "json"


def read_json(path: Path) -> tuple[dict[str, Any], bool]:
    """A settings file as a dict (and whether it exists); Db0Error if it does not parse."""
    f = SettingsFile.read(path, syntax(path))
    return f.value, f.existed


# -- hooks in the Claude Code shape: {"hooks": {Event: [{matcher?, hooks: [handler]}]}} ------

def is_ours(handler: Any) -> bool:
    return isinstance(handler, dict) and isinstance(handler.get("command"), str) and bool(
        OURS.search(handler["command"]))


def _hooks_table(data: dict[str, Any], path: Path) -> dict[str, Any]:
    table = data.get("hooks", {})
    if not isinstance(table, dict):
        raise Db0Error("invalid", f"{path}: \"hooks\" is not an object; nothing was changed",
                       "fix the file, then run db0 integrate again")
    for event, groups in table.items():
        if not isinstance(groups, list):
            raise Db0Error("invalid", f"{path}: hooks.{event} is not a list; nothing was "
                           "changed", "fix the file, then run db0 integrate again")
    return table


def strip_ours(table: dict[str, Any]) -> list[str]:
    """Take db0's handlers out of every event; groups and events left empty go too."""
    removed = []
    for event in list(table):
        groups = table[event]
        kept = []
        for group in groups:
            g = group
            if isinstance(g, dict) and isinstance(g.get("hooks"), list):
                handlers = [h for h in g["hooks"] if not is_ours(h)]
                if len(handlers) != len(g["hooks"]):
                    removed.append(event)
                    if not handlers:
                        continue
                    g = {**g, "hooks": handlers}
            kept.append(g)
        if kept:
            table[event] = kept
        else:
            del table[event]
    return sorted(set(removed))


def our_group(agent: str, event: str, db0_event: str, matcher: str | None,
              timeout: int) -> dict[str, Any]:
    handler: dict[str, Any] = {"type": "command", "command": hook_command(agent, db0_event),
                               "timeout": timeout}
    if agent == "gemini":
        handler = {"name": f"db0-{db0_event}", **handler,
                   "description": "db0 memory: " + db0_event}
    group: dict[str, Any] = {"hooks": [handler]}
    if matcher:
        group = {"matcher": matcher, **group}
    return group


def plan_hooks(agent: str, data: dict[str, Any], path: Path, remove: bool
               ) -> tuple[dict[str, Any], list[str], list[str]]:
    """The settings with db0's hooks installed (or removed): (new data, added, removed)."""
    old_table = _hooks_table(data, path)
    table: dict[str, Any] = json.loads(json.dumps(old_table))
    removed = strip_ours(table)
    added: list[str] = []
    if remove:
        if not removed:
            return data, [], []
    else:
        for h in AGENT_TABLE[agent].hooks:
            event, db0_event, matcher, timeout = h.event, h.db0_event, h.matcher, h.timeout
            table.setdefault(event, []).append(
                our_group(agent, event, db0_event, matcher, timeout))
            added.append(event)
        if _same_entries(old_table, table):  # installed like this already: keep the file
            return data, [], []
        removed = [r for r in removed if r not in added]
    new = dict(data)
    if table:
        new["hooks"] = table
    else:
        new.pop("hooks", None)
    return new, added, removed


def _same_entries(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """The same groups per event, in any order (a reinstall that changes nothing)."""
    def norm(t: dict[str, Any]) -> dict[str, list[str]]:
        return {e: sorted(json.dumps(g, sort_keys=True) for g in gs) for e, gs in t.items()}
    return norm(a) == norm(b)


def installed_events(data: dict[str, Any]) -> list[str]:
    table = data.get("hooks")
    if not isinstance(table, dict):
        return []
    out = []
    for event, groups in table.items():
        if isinstance(groups, list) and any(
                isinstance(g, dict) and isinstance(g.get("hooks"), list)
                and any(is_ours(h) for h in g["hooks"]) for g in groups):
            out.append(event)
    return out


# -- MCP registration ---------------------------------------------------------------------

def mcp_entry(agent: str) -> dict[str, Any]:
    cmd = db0_command()
    command = "db0" if cmd == "db0" else shlex.split(cmd)[0]
    entry: dict[str, Any] = {"command": command, "args": ["mcp"]}
    if agent == "claude-code":
        entry = {"type": "stdio", **entry, "env": {}}
    return entry


def is_our_mcp(entry: Any) -> bool:
    return (isinstance(entry, dict) and isinstance(entry.get("command"), str)
            and Path(entry["command"]).name in ("db0", "db0.exe")
            and entry.get("args") == ["mcp"])


def plan_mcp_json(agent: str, data: dict[str, Any], path: Path, remove: bool
                  ) -> tuple[dict[str, Any], list[str], list[str], str | None]:
    servers = data.get("mcpServers", {})
    if not isinstance(servers, dict):
        raise Db0Error("invalid", f"{path}: \"mcpServers\" is not an object; nothing was "
                       "changed", "fix the file, then run db0 integrate again")
    current = servers.get("db0")
    if current is not None and not is_our_mcp(current):
        return data, [], [], "an MCP server named db0 that db0 did not write: left as it is"
    new = json.loads(json.dumps(data))
    if remove:
        if current is None:
            return data, [], [], None
        del new["mcpServers"]["db0"]
        if not new["mcpServers"]:
            del new["mcpServers"]
        return new, [], ["mcpServers.db0"], None
    want = mcp_entry(agent)
    if current == want:
        return data, [], [], None
    new.setdefault("mcpServers", {})["db0"] = want
    return new, ["mcpServers.db0"], [], None


def _toml_block(path: Path) -> str:
    cmd = db0_command()
    command = "db0" if cmd == "db0" else shlex.split(cmd)[0]
    return (f"{TOML_BEGIN}\n[mcp_servers.db0]\ncommand = {json.dumps(command)}\n"
            f'args = ["mcp"]\n{TOML_END}\n')


def _cut_toml_block(text: str) -> str:
    return cut_block(text, TOML_BEGIN, TOML_END)


def plan_mcp_toml(f: SettingsFile, remove: bool) -> tuple[str | None, str, list[str],
                                                          list[str], str | None, bool]:
    """(new text or None if unchanged, old text, added, removed, note, existed)."""
    import tomllib

    path, text, existed = f.path, f.text, f.existed
    doc = tomllib.loads(text)  # SettingsFile.read refused it if not valid
    ours = TOML_BEGIN in text
    servers = doc.get("mcp_servers")
    exists = isinstance(servers, dict) and "db0" in servers
    if exists and not ours:
        return None, text, [], [], "an MCP server named db0 that db0 did not write: " \
            "left as it is", existed
    if remove:
        if not ours:
            return None, text, [], [], None, existed
        return _cut_toml_block(text), text, [], ["mcp_servers.db0"], None, existed
    block = _toml_block(path)
    if ours and block.rstrip("\n").replace("\n", newline_of(text)) in text:
        return None, text, [], [], None, existed
    new = add_block(_cut_toml_block(text), block)
    try:
        tomllib.loads(new)
    except tomllib.TOMLDecodeError as e:
        raise Db0Error("invalid", f"{path}: adding [mcp_servers.db0] would not be valid TOML "
                       f"({e}); nothing was changed",
                       "add it by hand: codex mcp add db0 -- db0 mcp") from None
    return new, text, ["mcp_servers.db0"], [], None, existed


# -- the agents ---------------------------------------------------------------------------

def files(agent: str, project: bool) -> dict[str, Path]:
    """Where each agent keeps its hooks and its MCP servers (user or project scope), from the
    agents table."""
    if agent == "cursor":
        return {"mcp": (Path.cwd() if project else Path.home()) / ".cursor" / "mcp.json"}
    a = AGENT_TABLE.get(agent)
    if a is None:
        raise ValueError(agent)
    base = Path.cwd() if project else Path.home()
    return {"hooks": base / (a.project_hooks_file if project else a.hooks_file),
            "mcp": base / (a.project_mcp_file if project else a.mcp_file)}


def manual_steps(agent: str, project: bool, remove: bool) -> list[str]:
    if remove:
        return []
    if agent == "codex":
        steps = ["Codex runs new or changed hooks only once you trust them: start codex and "
                 "review them in /hooks"]
        if project:
            steps.append("Codex loads project hooks only in trusted projects")
        return steps
    if agent == "claude-code":
        steps = ["Claude Code holds back settings hooks until the folder is trusted; "
                 "check them with /hooks"]
        if project:
            steps.append("Claude Code asks to approve the project's .mcp.json server on "
                         "first use")
        return steps
    if agent == "gemini":
        return ["Gemini CLI warns before running changed project hooks; older versions also "
                "need \"tools\": {\"enableHooks\": true} in settings.json"]
    return []


class Plan:
    """The files to write for one run, computed first; nothing is written on any error."""

    def __init__(self) -> None:
        self.changes: list[Change] = []
        self.files: dict[Path, SettingsFile] = {}

    def file(self, path: Path) -> SettingsFile:
        if path not in self.files:
            self.files[path] = SettingsFile.read(path, syntax(path))
        return self.files[path]

    def hooks(self, agent: str, path: Path, remove: bool) -> None:
        f = self.file(path)
        data = f.value
        new, added, removed = plan_hooks(agent, data, path, remove)
        self._stage(Change(path, "hooks", added=added, removed=removed), f, data, new)

    def mcp(self, agent: str, path: Path, remove: bool) -> None:
        f = self.file(path)
        if path.suffix == ".toml":
            text, old, added, removed, note, existed = plan_mcp_toml(f, remove)
            ch = Change(path, "mcp", added=added, removed=removed, note=note)
            self.changes.append(ch)
            if text is not None and text != old:
                ch.action = "removed" if remove else ("updated" if existed else "created")
                f.text = text
            return
        data = f.value
        new, added, removed, note = plan_mcp_json(agent, data, path, remove)
        self._stage(Change(path, "mcp", added=added, removed=removed, note=note), f, data,
                    new)

    def _stage(self, ch: Change, f: SettingsFile, old: dict[str, Any],
               new: dict[str, Any]) -> None:
        self.changes.append(ch)
        if new is old or new == old:
            return
        # One file may hold hooks and MCP (Gemini): both edits go into it, written once.
        f.update(new)
        ch.action = "removed" if ch.removed and not ch.added else (
            "updated" if f.existed else "created")

    def apply(self, dry_run: bool = False) -> None:
        if dry_run:
            for ch in self.changes:
                if self.files[ch.file].deletes() and ch.action != "unchanged":
                    ch.note = "the file would be deleted: db0 created it, nothing else is in it"
            return
        for f in self.files.values():  # all or none: no file is written if one changed
            if f.changed:
                f.check_unchanged()
        for f in self.files.values():
            backup, deleted = f.commit()
            for ch in self.changes:
                if ch.file == f.path and ch.action != "unchanged":
                    ch.backup = backup
                    if deleted:
                        ch.note = "file deleted: db0 had created it and nothing else is in it"


def integrate_agent(agent: str, project: bool, remove: bool, dry_run: bool,
                    plan: Plan | None = None, hooks: bool = True) -> Plan:
    plan = plan or Plan()
    where = files(agent, project)
    if hooks and "hooks" in where:
        plan.hooks(agent, where["hooks"], remove)
    plan.mcp(agent, where["mcp"], remove)
    return plan


def status(project_too: bool = True) -> list[dict[str, Any]]:
    rows = []
    for agent in (*AGENTS, "cursor"):
        for project in ((False, True) if project_too else (False,)):
            where = files(agent, project)
            row: dict[str, Any] = {"agent": agent, "scope": "project" if project else "user",
                                   "hooks": [], "mcp": "no", "files": sorted(
                                       {str(p) for p in where.values()})}
            try:
                if "hooks" in where:
                    data, _ = read_json(where["hooks"])
                    row["hooks"] = installed_events(data)
                mp = where["mcp"]
                if mp.suffix == ".toml":
                    import tomllib

                    text = mp.read_text("utf-8") if mp.exists() else ""
                    doc = tomllib.loads(text)
                    srv = (doc.get("mcp_servers") or {}).get("db0")
                    row["mcp"] = "yes" if TOML_BEGIN in text else (
                        "other" if srv is not None else "no")
                else:
                    data, _ = read_json(mp)
                    servers = data.get("mcpServers")
                    srv = servers.get("db0") if isinstance(servers, dict) else None
                    row["mcp"] = "yes" if is_our_mcp(srv) else (
                        "other" if srv is not None else "no")
            except Db0Error as e:
                row["error"] = e.message
            except Exception as e:
                row["error"] = f"{type(e).__name__}: {e}"
            rows.append(row)
    return rows


def integrate(
    target: Annotated[str, Arg(help="claude-code, codex, gemini, mcp (the MCP server in every "
                               "agent found), git, or status.", choices=TARGETS)],
    user_scope: Annotated[bool, Opt("--user", help="Your own settings (~/…; the "
                                             "default).")] = False,
    project: Annotated[bool, Opt("--project", help="This project's settings "
                                          "(./.claude, ./.codex, ./.gemini).")] = False,
    dry_run: Annotated[bool, Opt("--dry-run", help="Say what would change; "
                                          "write nothing.")] = False,
    remove: Annotated[bool, Opt("--remove", help="Take db0's entries out (and "
                                         "nothing else).")] = False,
    global_: Annotated[bool, Opt("--global", help="git: for every repository "
                                          "(global git config).")] = False,
    json_: JsonOpt = False,
) -> int:
    """Put db0's hooks and MCP server into an agent's settings (or take them out).

    Only db0's own entries are touched; a backup of each changed file is kept beside it; a
    settings file that does not parse is refused and left as it is.

    \b
    Examples:
      db0 integrate claude-code
      db0 integrate codex --project --dry-run
      db0 integrate status
      db0 integrate gemini --remove
    """
    if user_scope and project:
        raise Db0Error("bad_request", "--user and --project exclude each other",
                       "give one of them")
    if target == "git":
        from db0.cli import gitcapture

        rc: int = gitcapture.integrate(global_, remove, dry_run, json_)
        return rc
    if target == "status":
        rows = status()
        if json_:
            output.emit_json({"integrations": rows})
        else:
            output.table(("agent", "scope", "hooks", "mcp", "files"),
                         [(r["agent"], r["scope"], ",".join(r["hooks"]) or "-",
                           r["mcp"] if not r.get("error") else "error: " + r["error"],
                           " ".join(r["files"])) for r in rows])
        return 0
    plan = Plan()
    steps: list[str] = []
    if target == "mcp":
        home = Path.home()
        present = {"claude-code": (home / ".claude").exists() or (home / ".claude.json").exists(),
                   "codex": (home / ".codex").exists(), "gemini": (home / ".gemini").exists(),
                   "cursor": (home / ".cursor").exists()}
        chosen = [a for a, ok in present.items() if ok or project]
        for agent in chosen:
            integrate_agent(agent, project, remove, dry_run, plan, hooks=False)
        if not chosen:
            steps.append("no agent settings found; register db0 by hand: "
                         "claude mcp add db0 -- db0 mcp | codex mcp add db0 -- db0 mcp | "
                         "gemini mcp add -s user db0 db0 mcp")
    else:
        integrate_agent(target, project, remove, dry_run, plan)
        steps += manual_steps(target, project, remove)
    plan.apply(dry_run)
    result = {"target": target, "scope": "project" if project else "user", "dry_run": dry_run,
              "remove": remove, "changes": [c.public() for c in plan.changes],
              "manual_steps": steps}
    if json_:
        output.emit_json(result)
        return 0
    verb = "would be " if dry_run else ""
    for c in plan.changes:
        parts = []
        if c.added:
            parts.append("added " + ", ".join(c.added))
        if c.removed:
            parts.append("removed " + ", ".join(c.removed))
        detail = f" ({'; '.join(parts)})" if parts else ""
        line = f"{c.file}: {c.what} {verb}{c.action}{detail}"
        if c.backup:
            line += f"; backup {c.backup}"
        if c.note:
            line += f"; {c.note}"
        output.notice(line)
    for s in steps:
        output.notice("next: " + s)
    return 0


COMMANDS: list[Command] = [
    cmd("integrate", integrate),
]

"""Who is asking: the context of a request and which scopes it can see.

| scope   | visible to                          |
|---------|-------------------------------------|
| task    | the same task id                    |
| session | the same session id                 |
| user    | every agent and session of the user |
| agent   | every session of the agent          |
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from db0.store.errors import InvalidError

SCOPES = ("user", "agent", "session", "task")


@dataclass(frozen=True)
class Context:
    user: str
    agent: str = "default"
    session: str | None = None
    task: str | None = None
    # A branched session sees its ancestors' session memories as they were at each cutoff:
    # ((parent session id, cutoff time), ...), nearest first (store.sessions.lineage).
    lineage: tuple[tuple[str, float], ...] = ()

    @classmethod
    def from_params(cls, params: dict[str, Any], default_user: str) -> Context:
        ctx = params.get("context") or {}
        return cls(
            user=str(ctx.get("user") or default_user),
            agent=str(ctx.get("agent") or "default"),
            session=str(ctx["session"]) if ctx.get("session") else None,
            task=str(ctx["task"]) if ctx.get("task") else None,
        )

    def owner(self, scope: str) -> str:
        """The owner id a memory of `scope` written in this context belongs to."""
        check_scope(scope)
        owner = {"user": self.user, "agent": self.agent, "session": self.session,
                 "task": self.task}[scope]
        if not owner:
            how = "eval \"$(db0 session start)\"" if scope == "session" else "db0 task start"
            raise InvalidError(f"scope '{scope}' needs a {scope} id in the context",
                               f"pass --{scope} ID, set DB0_{scope.upper()}, or run {how}")
        return owner

    def as_dict(self) -> dict[str, Any]:
        return {"user": self.user, "agent": self.agent, "session": self.session,
                "task": self.task}


def check_scope(scope: str) -> str:
    if scope not in SCOPES:
        raise InvalidError(f"unknown scope '{scope}'", "use one of: " + ", ".join(SCOPES))
    return scope


def live_sql(alias: str = "m", as_of: float | None = None, now: float | None = None
             ) -> tuple[str, list[Any]]:
    """Not superseded, forgotten or expired: now, or as things were at `as_of`."""
    a = alias
    if as_of is None:
        return (f"{a}.superseded_by IS NULL AND {a}.forgotten_ts IS NULL"
                f" AND ({a}.expires_ts IS NULL OR {a}.expires_ts > ?)",
                [time.time() if now is None else now])
    return (f"{a}.created_ts <= ? AND ({a}.superseded_ts IS NULL OR {a}.superseded_ts > ?)"
            f" AND ({a}.forgotten_ts IS NULL OR {a}.forgotten_ts > ?)"
            f" AND ({a}.expires_ts IS NULL OR {a}.expires_ts > ?)", [as_of] * 4)


def visible_sql(ctx: Context, scopes: list[str] | None = None, alias: str = "m",
                *, live: bool = True, now: float | None = None,
                as_of: float | None = None) -> tuple[str, list[Any]]:
    """A WHERE fragment (and its arguments) selecting the memories this context may see.

    `live` leaves out superseded, forgotten and expired memories (as of `as_of` when given);
    a branched session also sees its ancestors' session memories as they were at the branch.
    """
    wanted = [check_scope(s) for s in scopes] if scopes else list(SCOPES)
    owners = {"user": ctx.user, "agent": ctx.agent, "session": ctx.session, "task": ctx.task}
    parts: list[str] = []
    args: list[Any] = []
    for scope in wanted:
        owner = owners[scope]
        if owner:
            parts.append(f"({alias}.scope=? AND {alias}.owner=?)")
            args += [scope, owner]
    sql = "(" + (" OR ".join(parts) if parts else "0") + ")"
    if live:
        cond, cargs = live_sql(alias, as_of, now)
        sql = f"({sql} AND {cond})"
        args += cargs
    elif as_of is not None:
        sql = f"({sql} AND {alias}.created_ts <= ?)"
        args.append(as_of)
    if "session" in wanted:
        for parent, cutoff in ctx.lineage:
            at = cutoff if as_of is None else min(cutoff, as_of)
            cond, cargs = (live_sql(alias, at) if live else (f"{alias}.created_ts <= ?", [at]))
            sql += f" OR ({alias}.scope='session' AND {alias}.owner=? AND {cond})"
            args += [parent, *cargs]
        if ctx.lineage:
            sql = f"({sql})"
    return sql, args


def visible_partitions(ctx: Context, scopes: list[str] | tuple[str, ...] | None = None
                       ) -> list[tuple[str, str]]:
    """The (scope, owner) pairs a context may see: the pairs of `visible_sql`, with the
    ancestors of a branched session. The vector index and the full-text index are both
    partitioned by them."""
    wanted = list(scopes) if scopes else list(SCOPES)
    owners = {"user": ctx.user, "agent": ctx.agent, "session": ctx.session, "task": ctx.task}
    out = [(s, str(owners[s])) for s in wanted if owners.get(s)]
    if "session" in wanted:
        out += [("session", parent) for parent, _ in ctx.lineage]
    return list(dict.fromkeys(out))

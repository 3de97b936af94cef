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


def visible_sql(ctx: Context, scopes: list[str] | None = None, alias: str = "m",
                *, live: bool = True, now: float | None = None) -> tuple[str, list[Any]]:
    """A WHERE fragment (and its arguments) selecting the memories this context may see."""
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
        sql += (f" AND {alias}.superseded_by IS NULL AND {alias}.forgotten_ts IS NULL"
                f" AND ({alias}.expires_ts IS NULL OR {alias}.expires_ts > ?)")
        args.append(time.time() if now is None else now)
    return sql, args

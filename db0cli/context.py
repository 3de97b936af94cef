"""Who is asking: context from flags, then DB0_* variables (the daemon adds config defaults)."""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing stays unloaded at run time: it is costly to import
if TYPE_CHECKING:
    from typing import Any


def build(user: str | None = None, agent: str | None = None, session: str | None = None,
          task: str | None = None) -> dict[str, Any]:
    ctx = {
        "user": user or os.environ.get("DB0_USER") or None,
        "agent": agent or os.environ.get("DB0_AGENT") or None,
        "session": session or os.environ.get("DB0_SESSION") or None,
        "task": task or os.environ.get("DB0_TASK") or None,
    }
    return {k: v for k, v in ctx.items() if v}

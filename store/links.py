"""Typed links between memories (related, supports, contradicts, derived), each an op.

Links are local: sync carries memory states, not links (noted in the README).
"""

from __future__ import annotations

import time
from typing import Any

from db0.store.core import STATE_COLUMNS, Store, append_op
from db0.store.errors import InvalidError
from db0.store.memories import resolve_id, to_public

TYPES = ("related", "supports", "contradicts", "derived")


def link(store: Store, a: str, b: str, kind: str) -> dict[str, Any]:
    if kind not in TYPES:
        raise InvalidError(f"unknown link type {kind!r}", "use one of: " + ", ".join(TYPES))
    src, dst = resolve_id(store, a), resolve_id(store, b)
    if src == dst:
        raise InvalidError("a memory cannot link to itself", "give two different ids")
    cur = store.conn.execute("INSERT OR IGNORE INTO links(src, dst, type, created_ts) "
                             "VALUES (?, ?, ?, ?) RETURNING 1", (src, dst, kind, time.time()))
    created = cur.fetchone() is not None
    if created:
        append_op(store, "link", src, {"link": {"src": src, "dst": dst, "type": kind}})
    return {"src": src, "dst": dst, "type": kind, "status": "linked" if created else "exists"}


def links_of(store: Store, mid: str) -> list[dict[str, Any]]:
    out = [{"id": d, "type": t, "direction": "out"} for d, t in store.conn.execute(
        "SELECT dst, type FROM links WHERE src=? ORDER BY created_ts", (mid,))]
    out += [{"id": s, "type": t, "direction": "in"} for s, t in store.conn.execute(
        "SELECT src, type FROM links WHERE dst=? ORDER BY created_ts", (mid,))]
    return out


def expand(store: Store, results: list[dict[str, Any]], where: str, args: list[Any],
           limit: int = 20) -> list[dict[str, Any]]:
    """Memories linked to the results (and visible: `where` over alias m), not already there."""
    have = {r["id"] for r in results}
    extra: list[dict[str, Any]] = []
    cols = ", ".join(f"m.{c}" for c in STATE_COLUMNS)
    for r in results:
        for lk in links_of(store, r["id"]):
            if lk["id"] in have or len(extra) >= limit:
                continue
            row = store.conn.execute(f"SELECT {cols} FROM memories m WHERE m.id=? AND {where}",
                                     [lk["id"], *args]).fetchone()
            if row is None:
                continue
            have.add(lk["id"])
            item = to_public(dict(zip(STATE_COLUMNS, row, strict=True)))
            item["via"] = {"id": r["id"], "type": lk["type"], "direction": lk["direction"]}
            extra.append(item)
    return extra

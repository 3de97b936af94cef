"""Packing context: the memories most worth their tokens, within a budget.

Pinned memories come first, then recall's ranking; a memory that nearly repeats one already
taken (word-set Jaccard >= NEAR) is left out; the chosen ones are grouped by scope, each line
with its age and id. The text is counted with store.tokens (named in the answer) and never
exceeds the budget: lines are added while the running count (exact: the counter is additive over
lines) stays within it, and the final text is recounted.
"""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Callable
from typing import Any

from db0.store import search, tokens
from db0.store.context import Context, visible_sql
from db0.store.core import STATE_COLUMNS, Store
from db0.store.errors import InvalidError
from db0.store.memories import parse_time, to_public

FORMATS = ("md", "json", "xml")
NEAR = 0.8
FIRST = 20
POOL = 60
MAX_BUDGET = 200_000
SCOPE_ORDER = ("user", "agent", "session", "task")
_WORD = re.compile(r"\w+")


def age(created_at: str | None, now: float) -> str:
    if not created_at:
        return "?"
    try:
        secs = max(0.0, now - parse_time(created_at)[1])
    except Exception:
        return "?"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{int(secs // size)}{unit}"
    return f"{int(secs)}s"


def _words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text)}


def _near(a: set[str], b: set[str]) -> bool:
    if not a or not b:
        return a == b
    return len(a & b) / len(a | b) >= NEAR


def pinned(store: Store, ctx: Context, filters: search.Filters) -> list[dict[str, Any]]:
    # The pinned rows first (a partial index holds only them), then the filters on those few:
    # one query joining both let the planner walk every memory of the owner.
    rids = [int(r[0]) for r in store.conn.execute(
        "SELECT rid FROM memories INDEXED BY memories_pinned WHERE pinned = 1 LIMIT 1000")]
    if not rids:
        return []
    where, args = filters.sql(ctx)
    cols = ", ".join(f"m.{c}" for c in STATE_COLUMNS)
    rows = store.conn.execute(
        f"SELECT {cols} FROM memories m WHERE m.rid IN (SELECT value FROM json_each(?)) "
        f"AND {where} ORDER BY m.updated_ts DESC LIMIT 200",
        [json.dumps(rids), *args]).fetchall()
    return [to_public(dict(zip(STATE_COLUMNS, r, strict=True))) for r in rows]


def _line(item: dict[str, Any], fmt: str, now: float) -> str:
    content = " ".join(item["content"].split())  # one line each, whatever the memory held
    a = age(item["created_at"], now)
    if fmt == "xml":
        return (f'<memory id="{item["id"]}" scope="{item["scope"]}" age="{a}">'
                f"{html.escape(content, quote=False)}</memory>")
    pin = " pinned" if item.get("pinned") else ""
    return f"- {content} ({a} ago, id {item['id']}{pin})"


def _header(scope: str, fmt: str) -> str:
    return f'<scope name="{scope}">' if fmt == "xml" else f"## {scope}"


def _render(chosen: list[dict[str, Any]], fmt: str, now: float) -> list[str]:
    if not chosen:
        return []
    lines: list[str] = ["<db0-memories>"] if fmt == "xml" else []
    for scope in SCOPE_ORDER:
        group = [c for c in chosen if c["scope"] == scope]
        if not group:
            continue
        lines.append(_header(scope, fmt))
        lines += [_line(c, fmt, now) for c in group]
        if fmt == "xml":
            lines.append("</scope>")
    if fmt == "xml":
        lines.append("</db0-memories>")
    return lines


def _wrapper_cost(fmt: str) -> tuple[int, int]:
    """Tokens of the lines around the items: (fixed, per scope group), line breaks included."""
    if fmt == "xml":
        return tokens.count("<db0-memories>") + tokens.count("</db0-memories>") + 1, \
            tokens.count('<scope name="session">') + tokens.count("</scope>") + 2
    return 0, tokens.count("## session") + 1


def first_k(reorder: bool) -> int:
    """How many results a pack's first recall asks for, with or without a second stage (what
    search.vector_prelude is told to prepare)."""
    return POOL if reorder else FIRST


def pack(store: Store, ctx: Context, query: str, budget: int, fmt: str = "md",
         filters: search.Filters | None = None, qvec: Any = None,
         exclude: set[str] | None = None,
         reorder: Callable[[list[dict[str, Any]]], None] | None = None,
         feedback: bool | None = False) -> dict[str, Any]:
    """The memories most worth their tokens: pinned first, then by relevance, no near-repeats,
    never over `budget` tokens; `exclude` names memories the reader already has; `reorder`
    re-orders the relevance results in place (a second stage) before they are taken;
    `feedback` as search.recall's."""
    if fmt not in FORMATS:
        raise InvalidError(f"unknown format {fmt!r}", "use md, json or xml")
    if not isinstance(budget, int) or isinstance(budget, bool) or not 1 <= budget <= MAX_BUDGET:
        raise InvalidError(f"the budget must be a whole number of tokens from 1 to {MAX_BUDGET}",
                           "pass --budget 2000")
    filters = filters or search.Filters()
    style = "xml" if fmt == "xml" else "md"
    now = time.time()
    fixed, per_group = _wrapper_cost(style)
    # Every header counts the same ("## user" and "## task" alike): take the dearest.
    per_group = max(per_group, *(tokens.count(_header(sc, style)) + 1 +
                                 (tokens.count("</scope>") + 1 if style == "xml" else 0)
                                 for sc in SCOPE_ORDER))
    used = -1  # the first line has no break before it; nothing at all renders as ""
    groups: set[str] = set()
    chosen: list[dict[str, Any]] = []
    taken_words: list[set[str]] = []
    seen: set[str] = set(exclude or ())
    skipped = {"near_repeat": 0, "over_budget": 0, "excluded": len(seen)}

    def take(candidates: list[dict[str, Any]]) -> None:
        nonlocal used
        for cand in candidates:
            if cand["id"] in seen:
                continue
            seen.add(cand["id"])
            words = _words(cand["content"])
            if any(_near(words, w) for w in taken_words):
                skipped["near_repeat"] += 1
                continue
            cost = tokens.count(_line(cand, style, now)) + 1
            if cand["scope"] not in groups:
                cost += per_group
            if not chosen:
                cost += fixed  # the wrapper comes with the first item
            if used + cost > budget:
                skipped["over_budget"] += 1
                continue
            used += cost
            groups.add(cand["scope"])
            chosen.append(cand)
            taken_words.append(words)

    take(pinned(store, ctx, filters))
    # Relevance in two steps: the first FIRST results, and only when every one of them fitted
    # and recall had more, the next POOL - FIRST (those already seen left out). A pack at a
    # prompt fills its budget from the first few, and ranking a deep pool for it cost as much
    # as embedding the prompt. A second stage (`reorder`) gets all POOL at once: it can only
    # promote what it is given.
    if query.strip():
        k = first_k(reorder is not None)
        found = search.recall(store, ctx, query, k, filters, qvec=qvec, feedback=feedback,
                              exclude=seen)
        if reorder is not None:
            reorder(found)
        take(found)
        if k == FIRST and len(found) == k and not skipped["over_budget"]:
            take(search.recall(store, ctx, query, POOL - FIRST, filters, qvec=qvec,
                               feedback=feedback, exclude=seen))
    lines = _render(chosen, style, now)
    text = "\n".join(lines)
    used = tokens.count(text)
    while used > budget and chosen:  # the estimate above is an upper bound; this is the guard
        chosen.pop()
        text = "\n".join(_render(chosen, style, now))
        used = tokens.count(text)
    order = {s: i for i, s in enumerate(SCOPE_ORDER)}
    items = sorted(chosen, key=lambda c: order[c["scope"]])
    return {"text": text, "tokens": used, "budget": budget, "tokenizer": tokens.NAME,
            "format": fmt, "query": query,
            "items": [{"id": c["id"], "scope": c["scope"], "content": c["content"],
                       "age": age(c["created_at"], now), "pinned": bool(c.get("pinned")),
                       "score": c.get("score"), "created_at": c["created_at"]} for c in items],
            "considered": len(seen) - skipped["excluded"], "skipped": skipped}


def dumps(result: dict[str, Any]) -> str:
    return json.dumps(result, ensure_ascii=False)


__all__ = ["FORMATS", "pack", "visible_sql"]

"""Agent transcripts and hook captures: cleaning, lenient parsing, cursors and de-duplication.

Transcripts are internal formats that change between agent versions (Claude Code says so in its
docs), so every parser here takes what it recognises and skips the rest, line by line: a line
that is not JSON, a type it does not know, a block without text. Claude Code writes one line per
content block (and streaming partials), so lines are de-duplicated by their `uuid`; formats
without one get a digest of what identifies the line instead.

Everything captured is cleaned first: db0's own injected `<db0-context>` fences, the agents'
`<system-reminder>` blocks and `<private>…</private>` are cut out, so db0 never remembers what
it injected, nor what the user marked private.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

FORMATS = ("claude-code", "codex", "gemini", "messages")
MAX_READ = 64 * 1024 * 1024  # bytes of transcript read in one capture; the rest next time
MAX_TURN_CHARS = 16_000  # a turn longer than this is kept cut (a session memory, not an archive)

_BLOCKS = [
    re.compile(r"<db0-context\b[^>]*>.*?(?:</db0-context>|\Z)", re.S | re.I),
    re.compile(r"<system-reminder\b[^>]*>.*?(?:</system-reminder>|\Z)", re.S | re.I),
    re.compile(r"<private\b[^>]*>.*?(?:</private>|\Z)", re.S | re.I),
    re.compile(r"<db0-memories\b[^>]*>.*?(?:</db0-memories>|\Z)", re.S | re.I),
    # Codex, Claude Code and Gemini CLI wrap harness text in these (Gemini puts hook context,
    # db0's own escaped as &lt;db0-context&gt;, in <hook_context>); none is the user's words.
    re.compile(r"<(environment_context|user_instructions|hook_context|session_context|"
               r"command-name|command-message|"
               r"command-args|local-command-stdout|local-command-stderr|persisted-output)"
               r"\b[^>]*>.*?(?:</\1>|\Z)", re.S | re.I),
]
_BLANKS = re.compile(r"\n{3,}")


def clean(text: str) -> str:
    """The text without db0's fences, system reminders and private blocks."""
    if "<" in text:
        for pat in _BLOCKS:
            text = pat.sub("", text)
    return _BLANKS.sub("\n\n", text).strip()


@dataclass
class Turn:
    role: str  # 'user' or 'assistant'
    text: str
    uid: str  # the line's uuid, or a digest standing in for one
    kind: str = "turn"  # 'turn' or 'summary' (a compaction summary)
    ts: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def _digest(*parts: object) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(str(p).encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return "d:" + h.hexdigest()[:32]


def _text_of(content: Any, kinds: tuple[str, ...] = ("text",)) -> str:
    """The text blocks of a message's content (a string or a list of blocks)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    parts = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and block.get("type", "text") in kinds and isinstance(
                block.get("text"), str):  # Gemini's Part lists have no "type": [{"text": ...}]
            parts.append(block["text"])
    return "\n".join(parts)


def parse_claude(obj: Any) -> Turn | None:
    """One Claude Code transcript line (user/assistant text; compaction summaries)."""
    if not isinstance(obj, dict) or obj.get("type") not in ("user", "assistant"):
        return None
    if obj.get("isMeta") or obj.get("isSidechain") or obj.get("toolUseResult") is not None:
        return None
    msg = obj.get("message")
    if not isinstance(msg, dict):
        return None
    content = msg.get("content")
    if isinstance(content, list) and any(isinstance(b, dict) and b.get("type") == "tool_result"
                                         for b in content):
        return None
    text = _text_of(content)
    if not text.strip():
        return None
    role = "assistant" if obj["type"] == "assistant" else "user"
    uid = obj.get("uuid")
    if not isinstance(uid, str) or not uid:
        uid = _digest("claude", obj.get("sessionId"), obj.get("timestamp"), role, text)
    kind = "summary" if obj.get("isCompactSummary") else "turn"
    meta = {"session": obj["sessionId"]} if isinstance(obj.get("sessionId"), str) else {}
    return Turn(role, text, uid, kind, obj.get("timestamp") if isinstance(
        obj.get("timestamp"), str) else None, meta)


def parse_codex(obj: Any) -> Turn | None:
    """One Codex rollout line: `response_item` messages (`event_msg` repeats them)."""
    if not isinstance(obj, dict) or obj.get("type") != "response_item":
        return None
    p = obj.get("payload")
    if not isinstance(p, dict) or p.get("type") != "message":
        return None
    role = p.get("role")
    if role not in ("user", "assistant"):
        return None
    text = _text_of(p.get("content"), ("input_text", "output_text", "text"))
    if not text.strip():
        return None
    ts = obj.get("timestamp") if isinstance(obj.get("timestamp"), str) else None
    uid = p.get("id") if isinstance(p.get("id"), str) and p.get("id") else _digest(
        "codex", ts, role, text)
    return Turn(str(role), text, str(uid), "turn", ts)


def parse_gemini(obj: Any) -> Turn | None:
    """A Gemini CLI chat record ({type: user|gemini, content}) or a plain message."""
    if isinstance(obj, dict) and obj.get("type") in ("user", "gemini") and "content" in obj:
        role = "user" if obj["type"] == "user" else "assistant"
        text = _text_of(obj.get("content"))
        if not text.strip():
            return None
        uid = obj.get("id") if isinstance(obj.get("id"), str) and obj.get("id") else _digest(
            "gemini", obj.get("timestamp"), role, text)
        return Turn(role, text, str(uid), "turn", obj.get("timestamp") if isinstance(
            obj.get("timestamp"), str) else None)
    return parse_message(obj, 0, "gemini")


def parse_message(obj: Any, index: int, source: str) -> Turn | None:
    """{role, content} (OpenAI/Anthropic style; content a string or text blocks)."""
    if not isinstance(obj, dict):
        return None
    role = obj.get("role")
    if role in ("model", "gemini"):
        role = "assistant"
    if role not in ("user", "assistant"):
        return None
    content = obj.get("content")
    if content is None and isinstance(obj.get("parts"), list):  # Gemini API shape
        content = [{"type": "text", "text": p.get("text")} for p in obj["parts"]
                   if isinstance(p, dict)]
    text = _text_of(content, ("text", "input_text", "output_text"))
    if not text.strip():
        return None
    uid = obj.get("id") or obj.get("uuid")
    if not isinstance(uid, str) or not uid:
        uid = _digest(source, index, role, text)
    return Turn(str(role), text, uid, "turn", obj.get("timestamp") if isinstance(
        obj.get("timestamp"), str) else None)


def parse_lines(lines: list[bytes], fmt: str, start_index: int = 0) -> tuple[list[Turn], int]:
    """Turns from JSON lines in format `fmt`; also how many lines were not understood."""
    turns: list[Turn] = []
    skipped = 0
    for i, text in enumerate(lines):
        raw = text.strip()
        if not raw:
            continue
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            skipped += 1
            continue
        if fmt == "claude-code":
            t = parse_claude(obj)
        elif fmt == "codex":
            t = parse_codex(obj)
        elif fmt == "gemini":
            t = parse_gemini(obj)
        else:
            t = parse_message(obj, start_index + i, fmt)
        if t is None:
            skipped += 1
        else:
            turns.append(t)
    return turns, skipped


def parse_document(data: bytes, fmt: str, source_id: str) -> tuple[list[Turn], int]:
    """A whole transcript: JSON lines, or (messages, Gemini) one JSON array or {messages: []}."""
    head = data.lstrip()[:1]
    if head in (b"[", b"{") and fmt in ("messages", "gemini"):
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError):
            doc = None
        if isinstance(doc, dict):
            doc = doc.get("messages") if isinstance(doc.get("messages"), list) else None
        if isinstance(doc, list):
            turns = []
            skipped = 0
            for i, obj in enumerate(doc):
                t = (parse_gemini(obj) if fmt == "gemini"
                     else parse_message(obj, i, "messages:" + source_id))
                if t is None:
                    skipped += 1
                else:
                    turns.append(t)
            return turns, skipped
    lines = data.split(b"\n")
    if fmt == "messages":
        turns, skipped = [], 0
        for i, raw in enumerate(lines):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except (ValueError, UnicodeDecodeError, RecursionError):
                skipped += 1
                continue
            t = parse_message(obj, i, "messages:" + source_id)
            if t is None:
                skipped += 1
            else:
                turns.append(t)
        return turns, skipped
    return parse_lines(lines, fmt)


def read_delta(path: str, offset: int, max_bytes: int = MAX_READ) -> tuple[list[bytes], int, int]:
    """Complete lines of `path` from byte `offset`: (lines, new offset, file size).

    A file smaller than the offset was rewritten or truncated: read it again from the start
    (the lines seen before are skipped by uuid). A trailing line without its newline is left
    for next time (the agent may be writing it).
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < offset:
            offset = 0
        f.seek(offset)
        data = f.read(min(max_bytes, size - offset))
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset, size
    return data[: end].split(b"\n"), offset + end + 1, size

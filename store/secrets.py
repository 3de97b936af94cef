"""Finding secrets before anything is written, and `<private>` blocks that are never stored.

Explicit patterns for the common formats only: entropy checks alone flag ordinary prose (long
words, hashes in commit messages), so a string is a secret here when its shape says so. Each
match is replaced by `[REDACTED:kind]`; the caller is told the kinds and counts, never values.
"""

from __future__ import annotations

import re
from collections import Counter

PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("private-key", re.compile(
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----.*?"
        r"(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|\Z)", re.S)),
    ("aws-access-key", re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b")),
    ("aws-secret-key", re.compile(
        r"(?i)(aws_?secret_?access_?key[\"']?\s*[:=]\s*[\"']?)[A-Za-z0-9/+=]{40}"
        r"(?![A-Za-z0-9/+=])")),
    ("github-token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|"
                                r"github_pat_[A-Za-z0-9_]{22,255})\b")),
    ("gitlab-token", re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}\b")),
    ("slack-token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b")),
    ("slack-webhook", re.compile(
        r"https://hooks\.slack\.com/services/[A-Za-z0-9_/]{20,}")),
    ("anthropic-key", re.compile(r"\bsk-ant-[A-Za-z0-9_-]{20,}")),
    ("openai-key", re.compile(r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}")),
    ("google-api-key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    ("stripe-key", re.compile(r"\b[rs]k_(?:live|test)_[A-Za-z0-9]{20,}\b")),
    ("jwt", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
    # user:password@ in a URL: the password alone is replaced
    ("url-password", re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^\s:/@]+:)(?!\[REDACTED:)([^\s@/]{1,200})(@)")),
    # NAME=value, NAME: value, "name": "value", also prefixed (DB_PASSWORD, OPENAI_API_KEY)
    ("password-assignment", re.compile(
        r"(?i)((?<![A-Za-z0-9])(?:password|passwd|pwd|secret(?:_?key)?|client_?secret|"
        r"api_?key|access_?token|auth_?token|secret_?access_?key)[\"']?\s*[:=]\s*[\"']?)"
        r"(?!\[REDACTED:)([^\s\"']{6,})")),
]
PRIVATE = re.compile(r"<private>.*?(?:</private>|\Z)", re.S | re.I)
# Something every pattern above (and PRIVATE) needs to find in a text, lower-cased: a text
# without any of these holds no secret, and most texts are such, so one pass of substring
# searches spares the fourteen patterns (a case-insensitive regex alternation of the same
# literals tries each at every position, many times slower). A new pattern must add its own
# literal here and to the groups below (tests/test_secrets.py checks each format is caught,
# and that `maybe_secret` redacts as this list alone does).
MAYBE = ("-----begin", "akia", "asia", "abia", "acca", "aws", "ghp_", "gho_", "ghu_", "ghs_",
         "ghr_", "github_pat_", "glpat-", "xox", "hooks.slack", "sk-", "aiza", "k_live_",
         "k_test_", "eyj", "://", "passw", "pwd", "secret", "apikey", "api_key", "token",
         "<private")
# The same needs, for an ASCII text, each under a character every literal of its group holds
# (most texts lack it, so its literals are not searched): the case-sensitive patterns' own
# literals as written; the case-insensitive ones' lower-cased, all of which need ":" or "="
# after them (PRIVATE needs "<"). `aws` (its pattern needs "secret") and `hooks.slack`
# ("://") are implied by others; every format with a dash has it in its literal (slack's
# xox?- too).
_UNDERSCORE = ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "k_live_", "k_test_")
_ASSIGNED = ("://", "passw", "pwd", "secret", "apikey", "api_key", "token")


def maybe_secret(text: str) -> bool:
    """Whether the text holds any literal a secret pattern needs (False: it holds none)."""
    if not text.isascii():  # case-insensitive matching beyond ASCII: the plain list
        low = text.lower()
        return any(lit in low for lit in MAYBE)
    if "eyJ" in text:
        return True
    if "-" in text and ("-----BEGIN" in text or "sk-" in text or "glpat-" in text
                        or "xox" in text):
        return True
    if "_" in text and any(lit in text for lit in _UNDERSCORE):
        return True
    if "A" in text and ("AKIA" in text or "ASIA" in text or "ABIA" in text or "ACCA" in text
                        or "AIza" in text):
        return True
    assigned = ":" in text or "=" in text
    if assigned or "<" in text:
        low = text.lower()
        return "<private" in low or (assigned and any(lit in low for lit in _ASSIGNED))
    return False


def redact(text: str) -> tuple[str, dict[str, int]]:
    """The text with secrets replaced and <private> blocks removed, and what was found."""
    if not maybe_secret(text):
        return text, {}
    found: Counter[str] = Counter()
    text, n = PRIVATE.subn("", text)
    if n:
        found["private"] += n
    for kind, pat in PATTERNS:
        def sub(m: re.Match[str], kind: str = kind) -> str:
            found[kind] += 1
            if kind in ("url-password",):
                return f"{m.group(1)}[REDACTED:{kind}]{m.group(3)}"
            if kind in ("password-assignment", "aws-secret-key"):
                return f"{m.group(1)}[REDACTED:{kind}]"
            return f"[REDACTED:{kind}]"
        text = pat.sub(sub, text)
    return text, dict(found)


def strip_private(text: str) -> tuple[str, dict[str, int]]:
    text, n = PRIVATE.subn("", text)
    return text, ({"private": n} if n else {})


def scrub_item(item: dict[str, object], allow_secrets: bool = False) -> dict[str, int]:
    """Redact a memory's content (and string metadata values) in place; returns the findings.
    With `allow_secrets` only <private> blocks go (they are never stored)."""
    fn = strip_private if allow_secrets else redact
    found: Counter[str] = Counter()
    content = item.get("content")
    if isinstance(content, str):
        item["content"], f = fn(content)
        found.update(f)
    meta = item.get("metadata")
    if isinstance(meta, dict):
        for k, v in list(meta.items()):
            if isinstance(v, str):
                meta[k], f = fn(v)
                found.update(f)
    return dict(found)


def scrub_json(value: object, allow_secrets: bool = False) -> tuple[object, dict[str, int]]:
    """A JSON document (a checkpoint's state, say) with every string in it redacted; keys too.
    With `allow_secrets` only <private> blocks go."""
    fn = strip_private if allow_secrets else redact
    found: Counter[str] = Counter()

    def walk(v: object) -> object:
        if isinstance(v, str):
            out, f = fn(v)
            found.update(f)
            return out
        if isinstance(v, list):
            return [walk(x) for x in v]
        if isinstance(v, dict):
            return {walk(k) if isinstance(k, str) else k: walk(x) for k, x in v.items()}
        return v

    return walk(value), dict(found)

"""Rule-based extraction of durable facts from what a user tells an agent.

No model: sentences are matched against explicit signals (db0-ts's rules, extended), and each
match becomes one fact with a scope and, where the sentence names what it is about, a key, so a
later fact about the same thing supersedes the earlier one ("my editor is vim", later "actually,
my editor is helix"). Greetings, acknowledgements, questions and tool chatter are skipped.

- identity ("my name is Ada", "I live in Lyon", "I work at X"): user, `identity.name` etc.
- preference ("I prefer tabs over spaces", "my editor is vim"): user, `pref.<topic>`.
- remember ("remember that the deploy is on Fridays"): user, `note.<subject>` when it has one.
- decision ("we decided to use Postgres for the queue"): user, `decision.<project>.<topic>`.
- instruction ("always run the tests before committing"): agent, `instruction.<topic>`.
- correction ("actually, ...", "no, use X not Y"): as the fact it corrects (so it supersedes
  it), else agent scope.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

MIN_CHARS = 12
MAX_FACT_CHARS = 500
MAX_FACTS = 20  # per text: a long paste is not a list of facts

_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])|\n+")
_WORD = re.compile(r"[a-z0-9][a-z0-9+#.-]*")
_STOP = {
    "a", "an", "the", "my", "our", "your", "i", "we", "you", "to", "of", "for", "in", "on", "at",
    "and", "or", "is", "are", "be", "was", "it", "that", "this", "with", "by", "as", "use",
    "using", "always", "never", "please", "should", "me", "us", "do", "does", "not", "don't",
    "dont", "than", "over", "instead", "rather", "from", "now", "all", "any", "some", "when",
    "prefer", "prefers", "like", "likes", "want", "wants", "will", "would", "can", "could",
    "must", "also", "just", "very", "really", "so", "then", "there", "here", "its", "it's",
}

ACK = re.compile(
    r"^(?:(?:hi|hello|hey|yo|thanks|thank you|thx|ty|ok|okay|k|sure|yes|yep|yeah|no|nope|"
    r"great|cool|nice|perfect|awesome|good|fine|done|got it|sounds good|lgtm|go ahead|"
    r"continue|proceed|next|retry|try again|please do|do it|looks good)\b[\s,.!]*)+$", re.I)
CHATTER = re.compile(
    r"^(?:let me|i'll|i will|i'm going to|i am going to|now i|first,? i|running|checking|"
    r"looking|reading|searching|let's see|here's|here is|here are)\b"
    r"|^\s*(?:[$>#]|```|\||\{|\[|<)", re.I)

# The first pattern that matches a sentence decides its kind; the groups name the key's topic.
_IDENTITY = [
    (re.compile(r"\bmy name is\s+(?P<v>[\w' .-]{2,60})", re.I), "identity.name"),
    (re.compile(r"\b(?:i|we)\s+(?:live|am based|am located)\s+in\s+(?P<v>[\w' ,.-]{2,60})",
                re.I), "identity.location"),
    (re.compile(r"\bi\s+work\s+(?:at|for)\s+(?P<v>[\w' &.,-]{2,60})", re.I),
     "identity.employer"),
    (re.compile(r"\bi(?:'m| am)\s+(?:a|an)\s+(?P<v>[\w -]{3,40}?"
                r"(?:engineer|developer|designer|scientist|manager|student|researcher|"
                r"architect|admin|administrator|analyst|writer|founder|lead|consultant))\b",
                re.I), "identity.role"),
    (re.compile(r"\bcall me\s+(?P<v>[\w' .-]{2,40})", re.I), "identity.name"),
]
_MY_X_IS = re.compile(
    r"\bmy\s+(?:(?:preferred|favou?rite|default|usual|main|primary|go-to)\s+)?"
    r"(?P<topic>[a-z][\w -]{1,40}?)\s+(?:is|are|=)\s+(?P<v>.+)", re.I)
_PREFER = re.compile(
    r"\b(?:i|we)\s+(?:really\s+)?(?:prefer|like|love|hate|dislike|can't stand|don'?t like|"
    r"do not like|want|would rather|enjoy)\s+(?:to\s+)?(?P<a>[^,.;]+?)"
    r"(?:\s+(?:over|to|than|instead of|rather than)\s+(?P<b>[^,.;]+))?(?:[,.;]|$)", re.I)
_FAVORITE = re.compile(r"\bfavou?rite\s+(?P<topic>[a-z][\w -]{1,30}?)\s+(?:is|are)\s+", re.I)
_INSTEAD = re.compile(r"\buse\s+(?P<a>[\w.+#/-]+(?:\s+[\w.+#/-]+)?)\s+(?:instead of|rather than|"
                      r"not)\s+(?P<b>[\w.+#/-]+(?:\s+[\w.+#/-]+)?)", re.I)
_DECISION = re.compile(
    r"\b(?:we|i|you and i|the team)\s+(?:have\s+|'ve\s+)?(?:decided|agreed|chose|chosen|settled)"
    r"\s+(?:to|on|that|upon)?\s*(?P<v>.+)"
    r"|\b(?:let's|lets|we'll|we will)\s+(?:go with|use|stick with|switch to|adopt)\s+(?P<w>.+)"
    r"|^\s*decision:\s*(?P<x>.+)", re.I)
_INSTRUCTION = re.compile(
    r"^\s*(?:please\s+)?(?:always|never|don'?t|do not|make sure to|make sure you|from now on,?|"
    r"in the future,?|going forward,?|stop)\b\s*(?P<v>.+)"
    r"|\byou\s+(?:should|must|need to)\s+(?:always|never)\s+(?P<w>.+)", re.I)
_REMEMBER = re.compile(r"\b(?:please\s+)?(?:remember|note|keep in mind|don't forget)"
                       r"(?:\s+that|\s*:)\s*(?P<v>.+)", re.I)
_CORRECTION = re.compile(
    r"^\s*(?:actually|correction|to be clear|i meant|no|nope|wait|sorry|that's wrong|"
    r"that is wrong|not quite)\b[,:;.!\s-]+(?P<v>.+)", re.I)
_SUBJECT = re.compile(r"^(?P<s>[\w' -]{2,50}?)\s+(?:is|are|was|will be|=|lives|runs|goes)\s",
                      re.I)


@dataclass
class Fact:
    content: str
    kind: str
    scope: str
    key: str | None
    metadata: dict[str, Any] = field(default_factory=dict)

    def item(self, source: dict[str, Any]) -> dict[str, Any]:
        """As a memory to write: content, scope, key, tags and metadata naming the source."""
        meta = {**source, "extracted": self.kind}
        return {"content": self.content, "scope": self.scope, "key": self.key,
                "tags": ["extracted", self.kind], "metadata": meta}


def slug(text: str, words: int = 4) -> str:
    ws = [w.strip(".-") for w in _WORD.findall(text.lower())]
    ws = [w for w in ws if w and w not in _STOP]
    return "-".join(ws[:words])


def sentences(text: str) -> list[str]:
    out = []
    for part in _SPLIT.split(text):
        s = " ".join(part.split()).strip(" -*•")
        if s:
            out.append(s)
    return out


def is_noise(s: str) -> bool:
    if len(s) < MIN_CHARS or ACK.match(s) or CHATTER.search(s):
        return True
    if s.endswith("?"):  # a question asks, it does not tell
        return True
    letters = sum(c.isalpha() for c in s)
    return letters < len(s) * 0.5  # code, paths, numbers, tables


def _keyed(s: str) -> tuple[str, str | None] | None:
    """The kind and key of a sentence that states a fact about the user, or None."""
    for pat, key in _IDENTITY:
        if pat.search(s):
            return "identity", key
    m = _FAVORITE.search(s)
    if m:
        return "preference", "pref." + (slug(m.group("topic"), 3) or "favorite")
    m = _MY_X_IS.search(s)
    if m and slug(m.group("topic"), 3):
        return "preference", "pref." + slug(m.group("topic"), 3)
    m = _INSTEAD.search(s)
    if m:
        topic = "-".join(sorted(filter(None, (slug(m.group("a"), 2), slug(m.group("b"), 2)))))
        return "preference", "pref." + (topic or slug(s))
    m = _PREFER.search(s)
    if m:
        a, b = slug(m.group("a"), 3), slug(m.group("b") or "", 3)
        topic = "-".join(sorted(filter(None, (a, b)))) if b else a
        return "preference", ("pref." + topic) if topic else None
    return None


def classify(s: str, project: str | None = None) -> Fact | None:
    """The fact a sentence states, or None."""
    text = s[:MAX_FACT_CHARS]
    m = _CORRECTION.match(s)
    if m and len(m.group("v")) >= MIN_CHARS:
        inner = classify(m.group("v"), project)
        if inner is not None:
            inner.metadata["correction"] = True
            inner.content = text
            return inner
        return Fact(text, "correction", "agent", "correction." + slug(m.group("v")))
    m = _REMEMBER.search(s)
    if m and len(m.group("v")) >= 3:
        rest = m.group("v")
        keyed = _keyed(rest)
        if keyed:
            return Fact(text, "remember", "user", keyed[1])
        sub = _SUBJECT.match(rest)
        key = ("note." + slug(sub.group("s"), 3)) if sub and slug(sub.group("s"), 3) else None
        return Fact(text, "remember", "user", key)
    keyed = _keyed(s)
    if keyed:
        return Fact(text, keyed[0], "user", keyed[1])
    m = _DECISION.search(s)
    if m:
        what = m.group("v") or m.group("w") or m.group("x") or ""
        topic = slug(what, 3)
        if topic:
            key = "decision." + (f"{project}." if project else "") + topic
            return Fact(text, "decision", "user", key)
    m = _INSTRUCTION.search(s)
    if m:
        what = m.group("v") or m.group("w") or ""
        if len(what) >= 6:
            return Fact(text, "instruction", "agent", "instruction." + slug(what, 4))
    return None


def extract(text: str, project: str | None = None, limit: int = MAX_FACTS) -> list[Fact]:
    """The durable facts stated in `text` (cleaned of injected and private blocks first)."""
    facts: list[Fact] = []
    seen: set[str] = set()
    for s in sentences(text):
        if is_noise(s):
            continue
        f = classify(s, project)
        if f is None or f.content in seen:
            continue
        seen.add(f.content)
        facts.append(f)
        if len(facts) >= limit:
            break
    # Two facts with one key in one text: the later one is what holds.
    last: dict[tuple[str, str], int] = {}
    for i, f in enumerate(facts):
        if f.key:
            last[(f.scope, f.key)] = i
    return [f for i, f in enumerate(facts) if not f.key or last[(f.scope, f.key)] == i]

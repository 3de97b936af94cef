"""Rule-based extraction of durable facts from what a user tells an agent.

No model: each clause of a user's turn is matched against explicit signals, and each match
becomes one fact with a scope and, where the clause names what it is about, a key, so a later
fact about the same thing supersedes the earlier one ("my editor is vim", later "actually, my
editor is helix"). User-scope facts are injected into every later session, so a false fact costs
more than a missed one (the user can always `db0 remember`): every rule below errs towards
extracting nothing. Measured on a hand-labelled set by bench/extraction.py.

What is a fact:
- identity ("my name is Ada", "I live in Lyon", "I work at X", "I'm a backend engineer"):
  user, `identity.name`, `identity.location`, `identity.employer`, `identity.role`, ...
- preference ("I prefer tabs over spaces", "my editor is vim", "I use neovim", "use pnpm, not
  npm", "I'm on macOS"): user, `pref.<topic>`. "We use X" is about the project, not the user's
  taste: not a preference.
- remember ("remember that the deploy is on Fridays"): user, `note.<subject>` when it has one;
  "remember that my editor is vim" is the preference it states.
- decision ("we decided to use Postgres for the queue", "let's go with FastAPI", "the plan is
  to use Kafka"): user, `decision.<project>.<topic>`.
- instruction ("always run the tests before committing", "from now on ...", "never ...",
  "whenever you X, Y"): agent, `instruction.<topic>`. "Don't X" only when X is a habit, not a
  one-off ("don't push yet", "don't worry about it"); "make sure" only for every/all/any/new;
  "remember to X" only with a recurring condition ("after pulling").
- correction ("actually, ...", "no, ..."): the fact it corrects, so it supersedes it, marked
  `correction` in its metadata; a correction that states no fact by these rules ("no, the other
  file") is about the session and gives nothing.

The rules:
- A turn is cut into sentences (newlines, `.`/`!`/`?` then a space whatever the next letter's
  case, and `;`), then each sentence into clauses at a comma, ` and `, ` but ` or ` so ` when
  what follows starts an independent clause (I, we, my, our, please, always, never, don't,
  let's, or a question: "my name is Ada and I work at Initech" gives one fact each). A sentence
  led by a subordinate clause ("when you write SQL, always ...") is not cut, and a lone lead word
  stays with its clause ("Actually, my shell is fish").
- Questions are never facts: a sentence ending in `?`, or a clause in question form ("which
  linter do I use", "is my editor vim"). A question does not swallow its neighbours: only the
  clause that asks is dropped ("my name is Leo, can you add me?" keeps the name), except for a
  tag question ("..., right?"), which asks about the whole sentence.
- Statements only in the user's own voice, from the clause's start: "I prefer", "my X is", "we
  decided". So reported speech ("my colleague prefers", "Bob said we should"), hypotheticals
  ("if I preferred", "suppose we decided", "say my name is"), hedges ("I think", "maybe") and
  negations ("we haven't decided", "I never said I prefer") give nothing.
- "my X is Y" only for X on an allow-list of lasting attributes (editor, shell, name, timezone,
  package manager, ...), optionally qualified (preferred, default, usual, main) or led by a
  language ("my python formatter"); with "favourite"/"preferred"/"go-to", X may be any noun.
  An allow-list rather than a deny-list of transient nouns (problem, question, issue, error,
  key, token, point, guess, concern, bad, plan, branch, PR, build, ...): those are an open set,
  every new one a false fact injected into every later session, while a missed attribute costs
  one unextracted fact. Y must be a value, not a state ("my laptop is dying", "my editor is not
  configured").
- What a fact names must outlive the session: an object that points into the conversation
  ("I prefer the first approach", "let's go with that", "use a set instead of a list here")
  gives nothing.
- Never read: db0's own injected fences and `<private>` blocks, fenced code, indented code,
  code-shaped lines and log lines, quoted lines (`> ...`), text inside quotes or backticks (it
  is masked: "add a comment saying 'never call this'" is not an instruction), and any clause
  with a secret or a `[REDACTED]` placeholder (the value is gone; "my key is [REDACTED]").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from db0.store.secrets import PATTERNS

MIN_CHARS = 8
MAX_FACT_CHARS = 500
MAX_FACTS = 20  # per text: a long paste is not a list of facts

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
    r"looking|reading|searching|let's see|here's|here is|here are|base directory)\b"
    r"|^caveat:|^\s*(?:[$>#|{}<\[\]⏺⎿●✻│└├]|```|//|--|/\*)", re.I)

# Never read: db0's own fences, harness blocks, private blocks, fenced code (unterminated too).
_FENCED = re.compile(
    r"<(db0-context|db0-memories|system-reminder|private|environment_context|user_instructions|"
    r"command-name|command-message|command-args|local-command-stdout|local-command-stderr)"
    r"\b[^>]*>.*?(?:</\1>|\Z)|```.*?(?:```|\Z)", re.S | re.I)
_QUOTED = re.compile(r"\"[^\"\n]{1,300}\"|“[^”\n]{1,300}”|‘[^’\n]{1,300}’"
                     r"|(?<!\w)'[^'\n]{2,300}'(?!\w)|`[^`\n]{1,200}`")
_MASK = re.compile("\ue000(\\d+)\ue001")
_BULLET = re.compile(r"^\s*(?:[-*•]|\d{1,2}[.)])\s+")
_SENT_END = re.compile(r"(?<=[.!?;])\s+")
_ABBREV = re.compile(r"(?:\b(?:e\.g|i\.e|etc|vs|cf|approx|incl|esp|mr|mrs|ms|dr|st|no)\.)$",
                     re.I)
_CODE_LINE = re.compile(
    r"^(?:def|class|import|from\s+\S+\s+import|return|const|let|var|function|export|fn|func|"
    r"public|private|async|await|if\s*\(|for\s*\(|while\s*\(|SELECT|INSERT|UPDATE|DELETE)\b"
    r"|^[\w.\[\]'\"]+\s*[-+*/]?=(?!=)\s*\S|=>|\)\s*[{;:]\s*$|[{;]\s*$")
_LOG_LINE = re.compile(
    r"^(?:Traceback\b|File \"|at\s+\S+\s+\(|npm (?:ERR|WARN)|FAILED\b|PASSED\b|ERROR\b|"
    r"WARN(?:ING)?\b|INFO\b|DEBUG\b|TRACE\b|FATAL\b|E\s{2,}|Step \d+/\d+|\d{4}-\d\d-\d\d|"
    r"\d\d:\d\d:\d\d|[\w.]*(?:Error|Exception|Warning)(?::|\s*$)|"
    r"(?i:error|warning|fatal|panic|hint)(?:\[\w+\])?:|\S+: (?i:error|warning|fatal):)")

# Cutting a sentence into clauses: a conjunction (or a comma) before an independent clause.
_SUBORDINATE = re.compile(
    r"^(?:if|when|whenever|before|after|once|since|because|although|though|unless|while|until|"
    r"every time|each time|in case|assuming|suppose|supposing|say|imagine|pretend|even if|"
    r"as long as|what if|from now on|going forward|in the future|in future|from here on|"
    r"moving forward|"
    r"let's say)\b", re.I)
_CUT = re.compile(
    r"(?:,\s*(?:and|but|so)?|\s+(?:and|but|so))\s+(?=(?:i|i'm|i am|i've|i'd|i'll|we|we're|"
    r"we've|we'll|we'd|my|our|please|always|never|don't|do not|let's|lets|the team|"
    r"can you|could you|would you|will you|what|what's|how|why|where|which|who|do you|"
    r"does|did|is it|are you)\b)", re.I)
_TAG_QUESTION = re.compile(
    r",\s*(?:right|no|correct|yes|yeah|ok|okay|isn't it|aren't i|don't i|didn't we|"
    r"don't we|isn't that so|huh|true)\s*\?+\s*$", re.I)
_AUX = (r"(?:is|are|am|was|were|do|does|did|can|could|should|would|will|shall|have|has|had|"
        r"isn't|aren't|don't|doesn't|didn't|can't|couldn't|won't|wouldn't|shouldn't|"
        r"haven't|hasn't)")
_QUESTION = re.compile(
    r"^(?:(?:what|which|who|whom|whose|where|when|why|how)\b(?:\W+\w+){0,3}?\W+" + _AUX +
    r"\b|(?:what's|whats|where's|who's|how's|why's|when's|how come|any idea|anyone know)\b|"
    + _AUX + r"\s+(?:i|you|we|my|our|it|this|that|these|those|there|the|he|she|they|your|"
    r"anyone|anybody|someone|somebody|a|an)\b)", re.I)

# Words that lead a clause without changing what it states.
_DISCOURSE = re.compile(
    r"^(?:also|btw|by the way|so|and|but|ok|okay|oh|well|fyi|ps|p\.s\.|hi|hey|hello|thanks|"
    r"thank you|great|cool|right|alright|anyway|honestly|basically|just so you know|"
    r"for the record|one more thing|please|pls|plz|then|ah)\b[,:;.!\s-]*", re.I)
_CORRECTION = re.compile(
    r"^(?:(?:actually|correction|to be clear|i meant|sorry|no|nope|wait|oops|my mistake|"
    r"scratch that|to clarify)\b[,:;.!\s-]*)+", re.I)
_REMEMBER = re.compile(
    r"^(?:remember|keep in mind|don't forget|do not forget|note to self|"
    r"for future reference|for (?:the )?future)(?:\s+this)?(?:\s*(?:that|:|,))?\s+"
    r"(?!to\b|when\b)", re.I)
_REMEMBER_TO = re.compile(r"^(?:remember|don't forget|do not forget)\s+to\s+(?P<v>.+)", re.I)
_HABITUAL = re.compile(r"\b(?:after|before|every|each|whenever|always|any time|when)\b", re.I)

_GATE = re.compile(  # hypotheticals, hedges and reported speech: no fact
    r"^(?:if|suppose|supposing|say|let's say|lets say|imagine|assuming|assume|pretend|"
    r"what if|even if|in case|unless|hypothetically|in a world where|whether)\b"
    r"|\b(?:maybe|perhaps|probably|might|i think|i guess|i suppose|not sure|i believe|"
    r"apparently|i wonder|never said|didn't say|not that)\b", re.I)
_REDACTED = re.compile(r"\[REDACTED\b", re.I)

_NAME = r"(?P<v>[^\W\d_][\w'.-]*(?:\s+[A-Z][\w'.-]*){0,3})"
_IDENTITY = [
    (re.compile(r"^(?:my (?:full |first )?name(?:'s|\s+is)|name's)\s+(?:spelled\s+)?" + _NAME,
                re.I), "identity.name"),
    (re.compile(r"^(?:you can )?call me\s+" + _NAME, re.I), "identity.name"),
    (re.compile(r"^i(?:\s+live|\s+am based|'m based|\s+am located|'m located)\s+(?:in|out of)\s+\S",
                re.I),
     "identity.location"),
    (re.compile(r"^i(?:\s+work|\s+am working|'m working)\s+(?:at|for)\s+\S", re.I),
     "identity.employer"),
    (re.compile(r"^i(?:'m| am)\s+(?:the\s+(?=[\w -]{0,30}?\blead\b)|a\s+|an\s+)[\w -]{0,40}?\b"
                r"(?:engineer|developer|dev|designer|tech lead|team lead|engineering lead|"
                r"scientist|manager|student|researcher|architect|admin|administrator|analyst|"
                r"writer|founder|consultant|sre|programmer|maintainer|tester|freelancer|"
                r"contractor|intern|devops|cto|ceo)s?\b", re.I), "identity.role"),
]
_IM_NAME = re.compile(r"^(?:I'm|I am)\s+(?P<v>[A-Z][a-z]+(?:\s+[A-Z][a-z]+)?)\W*$")
_NOT_NAMES = {"Sorry", "Done", "Back", "Here", "Fine", "Ready", "Stuck", "Confused", "New",
              "Not", "Just", "Also", "Afraid", "Sure", "Good", "Curious", "Happy", "Busy",
              "Lost", "Okay", "Ok", "Tired", "Late", "Away", "Off", "Out", "In", "On", "Still",
              "Almost", "Really", "So", "Very", "Going", "Trying", "Working", "Using", "Glad"}
_OS = re.compile(r"^i(?:'m| am)\s+(?:on|using|running)\s+(?:a\s+)?(?:mac|macos|os x|osx|"
                 r"windows|linux|ubuntu|debian|fedora|arch|nixos|wsl|wsl2|manjaro|mint|"
                 r"pop!?_os|freebsd|chromeos|macbook)\b", re.I)

_MY_X_IS = re.compile(
    r"^my\s+(?P<topic>[a-z][\w -]{0,40}?)\s+(?:is|are|=)\s+(?P<v>\S.*)", re.I)
_QUALIFIERS = {"preferred", "favourite", "favorite", "default", "usual", "main", "primary",
               "go-to", "goto", "current", "daily", "everyday", "regular", "normal"}
_ANY_TOPIC = {"preferred", "favourite", "favorite", "go-to", "goto"}  # "my favourite X is"
_ID_ATTRS = {
    "name": "name", "full name": "name", "first name": "name", "email": "email",
    "email address": "email", "e-mail": "email", "timezone": "timezone",
    "time zone": "timezone", "tz": "timezone", "pronouns": "pronouns", "role": "role",
    "job": "role", "job title": "role", "title": "role", "position": "role",
    "employer": "employer", "company": "employer", "team": "team", "location": "location",
    "city": "location", "username": "username", "user name": "username", "handle": "username",
    "github username": "username", "github handle": "username", "gitlab username": "username",
    "github user": "username", "login": "username",
}
_PREF_ATTRS = {
    "editor", "text editor", "ide", "shell", "terminal", "terminal emulator", "os",
    "operating system", "distro", "linux distro", "language", "programming language",
    "package manager", "test runner", "test framework", "testing framework", "formatter",
    "linter", "type checker", "theme", "color scheme", "colour scheme", "font", "browser",
    "keyboard layout", "keyboard", "laptop", "machine", "computer",
    "git client", "db client", "database client", "sql client", "database", "framework",
    "web framework", "stack", "cloud", "cloud provider", "indentation", "indent", "indent size",
    "tab width", "tab size", "line length", "naming convention", "commit style",
    "commit message style", "default branch", "branch name", "merge strategy",
    "window manager", "desktop", "version control", "http client", "orm", "css framework",
    "build tool", "bundler", "runtime", "code style", "coding style", "style guide",
    "docstring style", "quote style", "workflow", "git workflow", "branching strategy", "vcs",
    "debugger", "diff tool", "merge tool", "pager", "multiplexer", "terminal multiplexer",
    "task runner", "ci", "ci provider", "hosting", "cloud platform", "interpreter", "toolchain",
}
_LANGS = {"python", "node", "js", "javascript", "typescript", "ts", "go", "golang", "rust",
          "java", "ruby", "php", "css", "react", "frontend", "backend", "web", "git", "sql",
          "c", "c++", "kotlin", "swift", "elixir", "haskell", "scala", "docker", "markdown",
          "yaml", "terminal", "shell", "vim", "neovim", "emacs", "linux", "mac", "windows"}
_NOT_A_TOPIC = {"thing", "things", "part", "bit", "way", "one", "moment", "feature", "line",
                "example", "option", "approach", "problem", "question", "issue", "error"}
_STATE = re.compile(
    r"^(?:not|isn't|never|broken|frozen|dead|dying|down|slow|stuck|failing|crashing|acting|"
    r"still|being|getting|about|too|so|very|really|kind|sort|weird|empty|missing|gone|full|"
    r"out|currently|configured|installed|set|updated|corrupted|messed|closed|open|crashed|"
    r"in|on|at|up|off|over|under|behind|ahead|the problem|here|there|fine|ok|okay)\b", re.I)
_ING = re.compile(r"[a-z]\w*ing\b")  # "dying", "acting up"; not "Sterling"


def _is_state(v: str) -> bool:
    """Whether what follows "my X is" is a passing state rather than a value."""
    return bool(_STATE.match(v) or _ING.match(v))

_VERBS_PREFER = (r"(?:prefer|would rather|'d rather|'d prefer|would prefer|like|love|enjoy|"
                 r"hate|dislike|detest|can't stand|cannot stand|don't like|do not like|"
                 r"(?<=i )use)")
_PREFER = re.compile(
    r"^(?:i|we)(?:\s+|(?='))(?:really\s+|much\s+|strongly\s+|generally\s+|usually\s+|always\s+|"
    r"mostly\s+|normally\s+|very much\s+|definitely\s+|just\s+)?" + _VERBS_PREFER +
    r"\s+(?:to\s+)?(?P<a>[^,;]+?)(?:\s+(?:over|to|than|instead of|rather than)\s+(?P<b>[^,;]+))?"
    r"(?:[,;]|$)",
    re.I)
_FAN = re.compile(r"^i(?:'m| am)\s+(?:a\s+)?(?:big\s+|huge\s+|massive\s+)?fan\s+of\s+(?=\S)",
                  re.I)
_INSTEAD = re.compile(r"^use\s+(?P<a>[\w.+#/-]+(?:\s+[\w.+#/-]+)?),?\s+(?:instead of|"
                      r"rather than|not|over)\s+(?P<b>[\w.+#/-]+(?:\s+[\w.+#/-]+)?)\W*$", re.I)

_DECISION = re.compile(
    r"\b(?:we|i|the team|our team|everyone|you and i)(?:'ve|'d|'re|'m|\s+have|\s+had|\s+all|"
    r"\s+finally|\s+just|\s+already|\s+are|\s+am|\s+both|\s+now)*\s+(?:decided|agreed|chose|"
    r"chosen|settled|opted|went with|gone with|going with|switching to|moving to|"
    r"standardi[sz]ing on|switched to|moved to|picked)\b\s*(?:to|on|that|upon|for)?\s*"
    r"(?P<v>\S.*)"
    r"|^(?:let's|lets|we'll|we will|we're going to|we are going to)\s+(?:go with|use|"
    r"stick with|switch to|adopt|move to|standardi[sz]e on|keep using)\s+(?P<w>\S.*)"
    r"|^(?:decision|the decision is|final decision|final call)\s*(?::|to\b|is\b)\s*(?P<x>\S.*)"
    r"|^(?:going with|(?:the|our) plan is to (?:use|adopt|go with|switch to|move to|migrate to))"
    r"\s+(?P<y>\S.*)"
    r"|^(?:we'll|we will|we're|we are)\s+(?:deploy|deploying|host|hosting)\s+(?:it\s+)?"
    r"(?:on|to|with)\s+(?P<z>(?-i:[A-Z])\S*.*)",
    re.I)
_INSTRUCTION = re.compile(
    r"^(?:always|never)\s+(?P<a>\S.*)"
    r"|^(?:from now on|in the future|in future|going forward|from here on|henceforth|"
    r"moving forward|as a rule|in general)\b[,:]?\s*(?P<b>\S.*)"
    r"|^(?:don't|do not|dont)\s+ever\s+(?P<c>\S.*)"
    r"|^(?:you|we)\s+(?:should|must|need to|have to)\s+(?:always|never)\s+(?P<d>\S.*)"
    r"|^(?:whenever|every time|each time|any time)\b[^,]{1,80},\s*(?P<e>\S.*)"
    r"|^(?:when|before|after|once)\b[^,]{1,80},\s*(?P<f>(?:always|never|don't|do not)\b.*)"
    r"|^stop\s+(?P<g>\w+ing\b.*)", re.I)
_DONT = re.compile(r"^(?:don't|do not|dont|avoid)\s+(?P<v>\S.*)", re.I)
_MAKE_SURE = re.compile(r"^(?:make sure|ensure)(?:\s+that|\s+to|\s+you)?\s+(?P<v>\S.*)", re.I)
_GENERAL = re.compile(r"\b(?:every|each|all|always|never|any|anywhere|new)\b", re.I)
_DONT_TRANSIENT = re.compile(
    r"\b(?:yet|for now|right now|now|today|tonight|this time|at the moment|worry|mind|bother|"
    r"panic|forget|touch|stop|tell|anyone|anybody)\b", re.I)

# What points into the conversation rather than naming something that lasts.
_DEICTIC = re.compile(
    r"\b(?:here|there|option|approach|version|suggestion|your|yours|the (?:first|second|third|"
    r"other|last|latter|former|same|existing)|when|how|what)\b"
    r"|\b(?:this|these|those)\b(?!\s+(?:repo|repository|project|codebase|code base|team|company|"
    r"days))",
    re.I)
_POINTER = re.compile(r"\bit\b|\bthat\b(?=\s*(?:$|[,.;!?]|\s(?:file|function|change|line|one|"
                      r"part|test|method|class|code|bit|way|branch|commit|again|too)\b))", re.I)
_SUBJECT = re.compile(
    r"^(?P<s>(?:the |our |my )?[\w-]+(?:\s+[\w-]+){0,3}?)\s+(?:(?:still|only|always|usually|"
    r"never|also|now)\s+)?(?:is|are|was|were|will|has|have|needs|need|requires|require|uses|"
    r"owns|own|runs|run|lives|live|starts|start|happens|happen|calls|call|accepts|accept|"
    r"expires|goes|go|gets|takes|must|should|can|belongs)\b", re.I)
_SUBJECT_ANY = re.compile(
    r"^(?P<s>(?:the |our |my )?[\w-]+(?:\s+[\w-]+){0,2}?)\s+(?:(?:still|only|always|usually|"
    r"never|also|now)\s+)?[a-z]\w+s\b", re.I)


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


def _mask(text: str) -> tuple[str, list[str]]:
    """The text with quoted spans replaced by placeholders, and the spans."""
    spans: list[str] = []

    def sub(m: re.Match[str]) -> str:
        spans.append(m.group(0))
        return f"\ue000{len(spans) - 1}\ue001"
    return _QUOTED.sub(sub, text), spans


def _unmask(text: str, spans: list[str]) -> str:
    return _MASK.sub(lambda m: spans[int(m.group(1))], text) if spans else text


def _is_code(line: str) -> bool:
    if line.startswith(("    ", "\t")):
        return True
    s = line.strip()
    return bool(_CODE_LINE.search(s) or _LOG_LINE.match(s))


def sentences(text: str) -> list[str]:
    """The sentences of a text: lines (code and log lines dropped), cut at `.`, `!`, `?` and
    `;` followed by a space (not after an abbreviation), each kept with its punctuation."""
    out: list[str] = []
    for line in text.splitlines():
        if not line.strip() or _is_code(line):
            continue
        parts = _SENT_END.split(_BULLET.sub("", line).strip())
        merged: list[str] = []
        for p in parts:
            if merged and _ABBREV.search(merged[-1]):
                merged[-1] += " " + p
            else:
                merged.append(p)
        for p in merged:
            s = " ".join(p.split()).strip(" -*•")
            if s:
                out.append(s)
    return out


def clauses(sentence: str) -> list[tuple[str, bool]]:
    """A sentence's clauses, each with whether it asks (a question is never a fact)."""
    s = sentence.rstrip(";").strip()
    asks = s.endswith("?")
    if asks and _TAG_QUESTION.search(s):
        return [(s, True)]
    if _SUBORDINATE.match(_DISCOURSE.sub("", s)):
        parts = [s]
    else:
        parts = []
        for piece in _CUT.split(s):
            p = piece.strip(" ,")
            if parts and _only_markers(parts[-1]):  # "Actually, my shell is fish" is one
                parts[-1] += ", " + p
            elif p:
                parts.append(p)
    out = []
    for i, p in enumerate(parts):
        last = i == len(parts) - 1
        out.append((p, bool(_QUESTION.match(_lead(p)[0])) or (asks and last)))
    return out


def _only_markers(s: str) -> bool:
    """Whether a piece is nothing but discourse or correction words ("Actually", "OK so")."""
    while s:
        t = _CORRECTION.sub("", _DISCOURSE.sub("", s, count=1), count=1).strip(" ,.!:;-")
        if t == s:
            return False
        s = t
    return True


def is_noise(s: str) -> bool:
    """Whether a sentence or clause states nothing: too short, an acknowledgement, tool
    chatter, code or a log line, mostly symbols, or a question."""
    s = s.strip()
    if len(s) < MIN_CHARS or ACK.match(s) or CHATTER.search(s) or _is_code(s):
        return True
    if s.endswith("?") or _QUESTION.match(_lead(s)[0]):
        return True
    letters = sum(c.isalpha() for c in s)
    return letters < len(s) * 0.5  # code, paths, numbers, tables


def _lead(s: str) -> tuple[str, bool, bool]:
    """The clause without its leading discourse words, and whether it corrects or asks to
    remember."""
    corrects = remember = False
    while True:
        t = _DISCOURSE.sub("", s, count=1)
        m = _CORRECTION.match(t)
        if m and m.end() < len(t):
            t, corrects = t[m.end():], True
        m = _REMEMBER.match(t)
        if m and not remember:
            t, remember = t[m.end():], True
        if t == s:
            return s.strip(), corrects, remember
        s = t


def _points_back(obj: str) -> bool:
    """Whether an object refers into the conversation ("the first approach", "that")."""
    if _DEICTIC.search(obj):
        return True
    # "it"/"that" with nothing named after it: "let's go with that", "I love it".
    return bool(_POINTER.search(obj)) and not re.search(r"(?:^|\s)[A-Z0-9/][\w./+-]*", obj)


def _attribute(topic: str) -> str | None:
    """The key of a "my X is" topic on the allow-list, or None."""
    words = re.sub(r"^(.+?) on (github|gitlab)$", r"\2 \1", topic.lower()).split()
    if not words or any("'" in w for w in words):  # "my colleague's editor"
        return None
    qualified = words[0] in _QUALIFIERS
    whole = " ".join(words)
    if whole in _PREF_ATTRS:
        return "pref." + slug(whole, 4)
    rest = words[1:] if qualified else words
    if not rest:
        return None
    name = " ".join(rest)
    if name in _ID_ATTRS:
        return "identity." + _ID_ATTRS[name]
    if name in _PREF_ATTRS:
        return "pref." + slug(name, 4)
    if len(rest) >= 2 and rest[0] in _LANGS and " ".join(rest[1:]) in _PREF_ATTRS | {"version"}:
        return "pref." + slug(name, 4)
    if words[0] in _ANY_TOPIC and len(rest) <= 3 and rest[-1] not in _NOT_A_TOPIC:
        return "pref." + slug(name, 3)
    return None


def _keyed(s: str) -> tuple[str, str] | None:
    """The kind and key of a clause that states a fact about the user, or None."""
    for pat, id_key in _IDENTITY:
        m = pat.match(s)
        if m:
            v = m.groupdict().get("v")
            if v is not None and _STATE.match(v):  # "my name is not on the list"
                return None
            return "identity", id_key
    m = _IM_NAME.match(s)
    if m and m.group("v").split()[0] not in _NOT_NAMES:
        return "identity", "identity.name"
    if _OS.match(s):
        return "preference", "pref.os"
    if _FAN.match(s) and not _points_back(s):
        return "preference", "pref." + slug(_FAN.sub("", s), 3)
    m = _MY_X_IS.match(s)
    if m:
        key = _attribute(m.group("topic"))
        if key is None or _is_state(m.group("v")):
            return None
        return ("identity" if key.startswith("identity.") else "preference"), key
    m = _INSTEAD.match(s)
    if m:
        a, b = m.group("a"), m.group("b")
        if _points_back(a) or _points_back(b) or re.match(r"(?:a|an|the)\b", a, re.I):
            return None
        topic = "-".join(sorted(filter(None, (slug(a, 2), slug(b, 2)))))
        return ("preference", "pref." + topic) if topic else None
    m = _PREFER.match(s)
    if m:
        a, b = m.group("a"), m.group("b") or ""
        if _points_back(a) or _points_back(b):
            return None
        ka, kb = slug(a, 3), slug(b, 3)
        topic = "-".join(sorted(filter(None, (ka, kb)))) if kb else ka
        return ("preference", "pref." + topic) if topic else None
    return None


def _decision(s: str, project: str | None) -> str | None:
    m = _DECISION.search(s)
    if not m:
        return None
    what = next((g for g in m.groups() if g), "")
    if _points_back(what) or (m.group("w") and re.search(r"\binstead\b", what, re.I)):
        return None  # "let's go with that", "let's use a dict instead"
    topic = slug(what, 3)
    return ("decision." + (f"{project}." if project else "") + topic) if topic else None


def _instruction(s: str) -> str | None:
    m = _INSTRUCTION.match(s)
    what = next((g for g in m.groups() if g), "") if m else ""
    general = bool(what)  # "always", "never", "from now on": a habit by construction
    if not what:
        r = _REMEMBER_TO.match(s)
        d = _DONT.match(s)
        ms = _MAKE_SURE.match(s)
        if r:  # "remember to X" is a one-off unless X recurs ("after pulling")
            what = r.group("v") if _HABITUAL.search(r.group("v")) else ""
        elif d:  # "don't X" is about the session unless X is a habit
            what = "" if _DONT_TRANSIENT.search(d.group("v")) else d.group("v")
        elif ms:
            what = ms.group("v") if _GENERAL.search(ms.group("v")) else ""
    if len(what) < 6 or re.match(r"mind\b", what, re.I):
        return None
    if _points_back(what) and not (general or _GENERAL.search(what)):
        return None
    return "instruction." + slug(what, 4)


def classify(s: str, project: str | None = None, spans: list[str] | None = None
             ) -> Fact | None:
    """The fact a clause states, or None. `spans` restores quoted text masked by `extract`."""
    text = _unmask(s, spans or [])[:MAX_FACT_CHARS]
    if is_noise(s) or _REDACTED.search(text) or _secret(text):
        return None
    body, corrects, remember = _lead(s)
    if len(body) < 3 or _GATE.search(body) or _QUESTION.match(body):
        return None
    meta: dict[str, Any] = {"correction": True} if corrects else {}
    keyed = _keyed(body)
    if keyed:
        return Fact(text, keyed[0], "user", keyed[1], meta)
    key = _decision(body, project)
    if key:
        return Fact(text, "decision", "user", key, meta)
    if remember and not _REMEMBER_TO.match(s):
        if re.match(r"(?:when|how|what|where|why|who)\b", body, re.I):
            return None
        sub = _SUBJECT.match(body) or _SUBJECT_ANY.match(body)
        subject = slug(sub.group("s"), 3) if sub else ""
        return Fact(text, "remember", "user", ("note." + subject) if subject else None, meta)
    key = _instruction(body)
    if key:
        return Fact(text, "instruction", "agent", key, meta)
    return None


def _secret(text: str) -> bool:
    return any(p.search(text) for _, p in PATTERNS)


def extract(text: str, project: str | None = None, limit: int = MAX_FACTS) -> list[Fact]:
    """The durable facts stated in `text`, one per clause that states one."""
    masked, spans = _mask(_FENCED.sub("\n", text))
    facts: list[Fact] = []
    seen: set[str] = set()
    units = ((c, asks) for sent in sentences(masked) for c, asks in clauses(sent))
    for clause, asks in units:
        f = None if asks else classify(clause, project, spans)
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

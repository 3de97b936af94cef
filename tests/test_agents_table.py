"""daemon/agents.py against what the agents really sent and wrote (tests/fixtures/agents/), and
db0's integration against daemon/agents.py: event names, payload field names, matcher
semantics (the matchers `db0 integrate` writes must select every value the agent sends), and
transcripts through store/transcripts.py. Fast: files only, no agent, no daemon.

The fixtures come from real runs (`python tests/agentrun.py capture tests/fixtures/agents`);
each folder's VERSION names the package it came from.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

import pytest

from db0.daemon.agents import AGENTS, Agent, Hook
from db0.store import transcripts

with warnings.catch_warnings():  # typer imports a click name that click deprecates
    warnings.simplefilter("ignore", DeprecationWarning)
    from db0.cli.commands import integrate

FIXTURES = Path(__file__).parent / "fixtures" / "agents"
PREFERENCE = "I prefer tabs over spaces."
REPLY = "Noted. The stand-in model has nothing else to say."


def payloads(agent: str) -> list[dict[str, Any]]:
    out = [json.loads(p.read_text()) for p in sorted((FIXTURES / agent).glob("hook-*.json"))
           if p.name != "hook-env.json"]
    assert out, f"no hook fixtures for {agent}"
    return out


def hook_for(spec: Agent, event: str) -> Hook | None:
    return next((h for h in spec.hooks if h.event == event), None)


def selects(kind: str, matcher: str | None, value: str, all_values: tuple[str, ...]) -> bool:
    """Whether a hook with `matcher` runs for `value`, compared the way the agent does."""
    if matcher is None or matcher in all_values or kind == "ignored":
        return True
    if kind == "exact":
        return matcher.strip() == value
    if kind == "exact-list":  # Claude Code: only [A-Za-z0-9_|] means a list of names
        if re.fullmatch(r"[A-Za-z0-9_|]+", matcher):
            return value in matcher.split("|")
        return re.search(matcher, value) is not None
    return re.search(matcher, value) is not None  # regex, unanchored


@pytest.mark.parametrize("agent", list(AGENTS))
def test_fixtures_are_from_the_checked_version(agent: str) -> None:
    spec = AGENTS[agent]
    assert (FIXTURES / agent / "VERSION").read_text().strip() == \
        f"{spec.npm_package}@{spec.checked_version}"


@pytest.mark.parametrize("agent", list(AGENTS))
def test_payloads_match_the_table(agent: str) -> None:
    spec = AGENTS[agent]
    known_events = {h.event for h in spec.hooks} | set(spec.other_events)
    for p in payloads(agent):
        event = p["hook_event_name"]
        assert event in known_events, f"{agent}: event {event} is not in the table"
        hook = hook_for(spec, event)
        assert hook is not None, f"{agent}: captured {event}, which db0 does not use"
        for name in spec.common_fields:
            assert name in p, f"{agent} {event}: no {name}"
        unknown = set(p) - set(spec.common_fields) - set(spec.optional_fields) - set(hook.fields)
        assert not unknown, f"{agent} {event}: fields the table does not know: {unknown}"
        assert isinstance(p[spec.session_id_field], str) and p[spec.session_id_field]
        assert isinstance(p[spec.cwd_field], str) and p[spec.cwd_field].startswith("/")
        if not spec.transcript_nullable:
            assert p[spec.transcript_field]
        if hook.db0_event == "prompt":
            assert p[spec.prompt_field].startswith(PREFERENCE)
        if hook.db0_event == "turn-end":
            assert p[spec.last_message_field] == REPLY
        if hook.db0_event == "post-compact" and spec.summary_field:
            assert p[spec.summary_field] == REPLY  # the stand-in wrote the summary
        if hook.matched_on is not None:
            assert p[hook.matched_on] in hook.values, \
                f"{agent} {event}: {hook.matched_on}={p[hook.matched_on]!r} not in the table"


@pytest.mark.parametrize("agent", list(AGENTS))
def test_every_table_event_was_seen_or_needs_compaction(agent: str) -> None:
    """Each event db0 uses fired in the real run (compaction cannot be forced in one)."""
    seen = {p["hook_event_name"] for p in payloads(agent)}
    for h in AGENTS[agent].hooks:
        assert h.event in seen or h.db0_event in ("pre-compact", "post-compact"), \
            f"{agent}: {h.event} never fired in the captured run"


def installed(agent: str) -> dict[str, tuple[str, str | None, int]]:
    """What `db0 integrate` really writes into an empty settings file: event -> (db0 event,
    matcher, timeout)."""
    new, _added, _removed = integrate.plan_hooks(agent, {}, Path("/nowhere/settings.json"),
                                                 False)
    out = {}
    for event, groups in new["hooks"].items():
        (group,) = groups
        (handler,) = group["hooks"]
        db0_event = handler["command"].split(" hook ", 1)[1].split()[0]
        out[event] = (db0_event, group.get("matcher"), handler["timeout"])
    return out


@pytest.mark.parametrize("agent", list(AGENTS))
def test_integrate_installs_the_table(agent: str) -> None:
    """`db0 integrate` writes every event of the table, with matchers that select every value
    the agent sends for it (as the agent compares them), in the agent's timeout unit."""
    spec = AGENTS[agent]
    written = installed(agent)
    assert set(written) == {h.event for h in spec.hooks}, (
        f"{agent}: db0 installs {sorted(written)}, the agent has "
        f"{sorted(h.event for h in spec.hooks)}")
    for h in spec.hooks:
        db0_event, matcher, timeout = written[h.event]
        assert db0_event == h.db0_event
        for value in h.values:
            assert selects(h.matcher_kind, matcher, value, spec.matcher_all), (
                f"{agent}: {h.event} matcher {matcher!r} misses {h.matched_on}={value!r} "
                f"({h.matcher_kind} comparison)")
        assert timeout <= h.timeout, f"{agent} {h.event}: timeout {timeout} over {h.timeout}"
        if spec.timeout_unit == "ms":
            assert timeout >= 1000, f"{agent} {h.event}: {timeout} looks like seconds"
        else:
            assert timeout < 600, f"{agent} {h.event}: {timeout} looks like milliseconds"


@pytest.mark.parametrize("agent", list(AGENTS))
def test_captured_payloads_select_db0s_hooks(agent: str) -> None:
    """Replay the real payloads through the agent's matcher rule and db0's installed entries."""
    spec = AGENTS[agent]
    written = {event: matcher for event, (_, matcher, _) in installed(agent).items()}
    for p in payloads(agent):
        h = hook_for(spec, p["hook_event_name"])
        assert h is not None
        if h.matched_on is None:
            continue
        assert selects(h.matcher_kind, written.get(h.event), p[h.matched_on],
                       spec.matcher_all), \
            f"{agent}: db0's {h.event} hook would not run for {p[h.matched_on]!r}"


@pytest.mark.parametrize("agent", list(AGENTS))
@pytest.mark.parametrize("name", ["transcript.jsonl", "transcript-db0.jsonl"])
def test_transcripts_parse(agent: str, name: str) -> None:
    """store/transcripts.py finds the user's and the assistant's turns, and nothing of what
    the harness or db0 injected."""
    lines = (FIXTURES / agent / name).read_bytes().split(b"\n")
    turns, _ = transcripts.parse_lines(lines, agent)
    cleaned = [(t.role, transcripts.clean(t.text)) for t in turns]
    users = [text for role, text in cleaned if role == "user" and text]
    assistants = [text for role, text in cleaned if role == "assistant" and text]
    assert any(text.startswith(PREFERENCE) for text in users), \
        f"{agent} {name}: the user's turn is lost: {cleaned}"
    assert REPLY in assistants, f"{agent} {name}: the assistant's turn is lost: {cleaned}"
    for _, text in cleaned:
        for junk in ("db0-context", "hook_context", "session_context", "environment_context"):
            assert junk not in text, f"{agent} {name}: {junk} left in a turn: {text[:200]!r}"

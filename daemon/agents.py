"""What db0 must know about each coding agent it integrates with, as one table of data.

One `Agent` (a NamedTuple: the hook path imports this, and dataclasses are slow to import)
per agent (Claude Code, Codex CLI, Gemini CLI), each with the version it was
verified against (`checked_version`): the hook events db0 uses and the agent's name for each,
how the agent compares matchers, the payload field names, how a hook injects context, exit
codes, the timeout unit, the variables the agent sets for hooks, the settings files (where hooks
and MCP servers go), and the transcript format. Comments cite the file inside the npm package
each fact came from; docs/agents.md says the same for people, and tests/test_agents_table.py
checks the table against payloads and transcripts captured from real runs
(tests/fixtures/agents/).

This module is data, not logic, and imports nothing but the standard library, so the CLI's hook
path (db0cli/hook.py), `db0 integrate` and the daemon can all read it cheaply.

Package files cited below, by agent:
- Claude Code: `@anthropic-ai/claude-code-linux-x64/claude` is a Bun single-file executable
  whose embedded JavaScript holds the hook code; facts are cited by the JavaScript they come
  from (its identifiers are minified, its strings are not).
- Codex: `@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex` embeds its hook
  JSON Schemas (`<event>.command.input` / `.command.output`, the generated schemas of
  codex-rs/hooks); facts are cited by schema title.
- Gemini CLI: `@google/gemini-cli/bundle/docs/hooks/{index,reference}.md` and the bundled
  source in `bundle/chunk-*.js`, cited by the `// packages/core/src/...` file it came from.
"""

from __future__ import annotations

# typing stays unloaded at run time (the hook path imports this module at every prompt, and
# typing is a large part of a start-up): mypy reads typing's NamedTuple; at run time the same
# class statements build plain tuple classes with a read-only property per field (as
# collections.namedtuple's, without importing collections).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Literal, NamedTuple

    MatcherKind = Literal["exact-list", "exact", "regex", "ignored"]
else:
    def _field(i):
        return property(lambda self: self[i])

    class _Record(type):
        def __new__(mcs, name: str, bases: tuple, ns: dict) -> type:
            if not bases:
                return super().__new__(mcs, name, bases, ns)
            fields = tuple(ns.get("__annotations__", {}))
            defaults = {f: ns[f] for f in fields if f in ns}

            def __new__(cls, *args, **kw):
                if len(args) > len(fields):
                    raise TypeError(f"{name} takes {len(fields)} fields, {len(args)} given")
                vals = list(args)
                for f in fields[len(args):]:
                    if f in kw:
                        vals.append(kw.pop(f))
                    elif f in defaults:
                        vals.append(defaults[f])
                    else:
                        raise TypeError(f"{name} is missing field {f!r}")
                if kw:
                    raise TypeError(f"{name} has no field {next(iter(kw))!r}")
                return tuple.__new__(cls, vals)

            def __repr__(self):
                return f"{name}(" + ", ".join(f"{f}={v!r}" for f, v in
                                              zip(fields, self, strict=True)) + ")"

            body = {f: _field(i) for i, f in enumerate(fields)}
            body.update(__slots__=(), _fields=fields, __new__=__new__, __repr__=__repr__,
                        __doc__=ns.get("__doc__"), __module__=ns["__module__"],
                        __qualname__=ns.get("__qualname__", name))
            return type(name, (tuple,), body)

    class NamedTuple(metaclass=_Record):
        """`class X(NamedTuple): field: T = default`, as typing's, without typing."""


class Hook(NamedTuple):
    """One hook event db0 installs."""

    event: str  # the agent's event name (the key under "hooks")
    db0_event: str  # `db0 hook EVENT`
    matcher: str | None  # what db0 writes (None: no matcher, every firing)
    matcher_kind: MatcherKind  # how the agent compares this event's matcher
    matched_on: str | None  # the payload field the matcher is compared with
    values: tuple[str, ...]  # the values that field takes (the matcher must cover db0's)
    fields: tuple[str, ...]  # payload fields beyond the common ones
    injects: bool  # whether hookSpecificOutput.additionalContext reaches the model
    timeout: int  # what db0 writes, in the agent's unit (Agent.timeout_unit)


class Transcript(NamedTuple):
    """Where the agent writes a session's transcript and what its turns look like."""

    path: str  # under the home directory; <...> are placeholders
    format: Literal["jsonl"]
    user_line: str  # a user turn, as the agent writes it (shape, not a real line)
    assistant_line: str
    notes: str


class Agent(NamedTuple):
    name: str  # db0's name (`--agent NAME`)
    checked_version: str
    npm_package: str
    binary: str  # the command the package installs
    hooks: tuple[Hook, ...]
    other_events: tuple[str, ...]  # events the agent has that db0 does not use
    matcher_all: tuple[str, ...]  # matcher values that match every firing
    common_fields: tuple[str, ...]  # in every hook payload
    optional_fields: tuple[str, ...]  # in many payloads, when the agent knows them
    session_id_field: str
    cwd_field: str
    transcript_field: str  # may be empty or null (see transcript_nullable)
    transcript_nullable: bool
    prompt_field: str
    last_message_field: str  # on the turn-end event
    summary_field: str | None  # the compaction summary (on the post-compact event)
    inject_json: str  # the stdout that injects context; {event} and {text} are placeholders
    plain_stdout_injects: tuple[str, ...]  # events whose plain (non-JSON) stdout is context
    json_required: tuple[str, ...]  # events whose stdout must be JSON when not empty
    exit_ok: int
    exit_block: int  # stderr is the reason; other non-zero codes only warn
    timeout_unit: Literal["s", "ms"]
    default_timeout: int  # in timeout_unit
    hook_env: tuple[str, ...]  # variables the agent sets for every hook command
    session_env: str | None  # the variable holding the session id, if any
    hooks_file: str  # user scope, relative to the home directory
    project_hooks_file: str
    hooks_format: Literal["json", "jsonc", "toml"]
    mcp_file: str  # user scope, relative to the home directory
    project_mcp_file: str
    mcp_format: Literal["json", "jsonc", "toml"]
    mcp_key: str  # the table (JSON object or TOML table) MCP servers go in
    transcript: Transcript
    offline_env: tuple[str, ...]  # variables that point it at a stand-in model, quietly
    notes: tuple[str, ...]
    # The compaction triggers that mean a compaction happens (db0 checkpoints around those).
    checkpoint_triggers: tuple[str, ...] = ("manual", "auto")


# -- Claude Code ---------------------------------------------------------------------------
# Cited from the JavaScript embedded in @anthropic-ai/claude-code-linux-x64/claude (2.1.197).
CLAUDE_CODE = Agent(
    name="claude-code",
    checked_version="2.1.197",
    npm_package="@anthropic-ai/claude-code",
    binary="claude",
    # Matchers (function `mam`): "" or "*" or none match all; a value of only
    # [a-zA-Z0-9_|] is split on "|" and compared exactly, name by name (an exact list);
    # anything else is an unanchored JavaScript RegExp. The field compared per event is the
    # `switch(r.hook_event_name)` that picks `source` / `trigger` / `reason`.
    hooks=(
        # SessionStart input schema: source: enum ["startup","resume","clear","compact"]
        # (no "fork" in 2.1.197). Fields: agent_type?, model?, session_title?.
        Hook("SessionStart", "session-start", "startup|resume|clear|compact", "exact-list",
             "source", ("startup", "resume", "clear", "compact"),
             ("source", "model", "agent_type", "session_title"), True, 10),
        # UserPromptSubmit: prompt, session_title?; no matcher (none is consulted).
        Hook("UserPromptSubmit", "prompt", None, "ignored", None, (),
             ("prompt", "session_title"), True, 5),
        # Stop: stop_hook_active, last_assistant_message?, background_tasks?, session_crons?
        Hook("Stop", "turn-end", None, "ignored", None, (),
             ("stop_hook_active", "last_assistant_message", "background_tasks",
              "session_crons"), False, 10),
        # PreCompact: trigger enum ["manual","auto"], custom_instructions (nullable).
        Hook("PreCompact", "pre-compact", "manual|auto", "exact-list", "trigger",
             ("manual", "auto"), ("trigger", "custom_instructions"), False, 15),
        # PostCompact: trigger, compact_summary ("The conversation summary produced by
        # compaction").
        Hook("PostCompact", "post-compact", "manual|auto", "exact-list", "trigger",
             ("manual", "auto"), ("trigger", "compact_summary"), False, 15),
        # SessionEnd: reason in ["clear","resume","logout","prompt_input_exit","other",
        # "bypass_permissions_disabled"]; `claude -p` sends "other" (seen in a real run).
        Hook("SessionEnd", "session-end", None, "exact-list", "reason",
             ("clear", "resume", "logout", "prompt_input_exit", "other",
              "bypass_permissions_disabled"), ("reason",), False, 5),
    ),
    # The hook event list in the binary (`u1=[...]`).
    other_events=("PreToolUse", "PostToolUse", "PostToolUseFailure", "PostToolBatch",
                  "Notification", "UserPromptExpansion", "StopFailure", "SubagentStart",
                  "SubagentStop", "PermissionRequest", "PermissionDenied", "Setup",
                  "TeammateIdle", "TaskCreated", "TaskCompleted", "Elicitation",
                  "ElicitationResult", "ConfigChange", "WorktreeCreate", "WorktreeRemove",
                  "InstructionsLoaded", "CwdChanged", "FileChanged", "MessageDisplay"),
    matcher_all=("", "*"),
    # Base hook input (function `xd` and the zod base schema): session_id, transcript_path,
    # cwd always; prompt_id, permission_mode, agent_id, agent_type, effort when known.
    common_fields=("session_id", "transcript_path", "cwd", "hook_event_name"),
    optional_fields=("prompt_id", "permission_mode", "agent_id", "agent_type", "effort"),
    session_id_field="session_id",
    cwd_field="cwd",
    transcript_field="transcript_path",
    transcript_nullable=False,
    prompt_field="prompt",
    last_message_field="last_assistant_message",
    summary_field="compact_summary",
    inject_json='{"hookSpecificOutput": {"hookEventName": "{event}", '
                '"additionalContext": "{text}"}}',
    # Plain stdout of SessionStart/UserPromptSubmit becomes context; JSON is parsed when the
    # first character is "{" (`hdc` validates it; a hookSpecificOutput without hookEventName
    # is rejected).
    plain_stdout_injects=("SessionStart", "UserPromptSubmit"),
    json_required=(),
    exit_ok=0,
    exit_block=2,
    # `D=e.timeout?e.timeout*1000:pp` with pp=600000: seconds, default 600 s; the
    # UserPromptSubmit default is 30 s (`lfl=30000`). SessionEnd hooks share one budget: the
    # largest SessionEnd `timeout` in settings (function `OXt`), or
    # CLAUDE_CODE_SESSIONEND_HOOKS_TIMEOUT_MS.
    timeout_unit="s",
    default_timeout=600,
    # The hook spawn environment: CLAUDE_PROJECT_DIR always; CLAUDE_ENV_FILE for
    # SessionStart/Setup/CwdChanged/FileChanged; seen in a real run: CLAUDECODE=1,
    # CLAUDE_CODE_SESSION_ID, CLAUDE_CODE_ENTRYPOINT, CLAUDE_CODE_CHILD_SESSION, CLAUDE_EFFORT.
    hook_env=("CLAUDECODE", "CLAUDE_CODE_SESSION_ID", "CLAUDE_PROJECT_DIR",
              "CLAUDE_CODE_ENTRYPOINT", "CLAUDE_CODE_CHILD_SESSION"),
    session_env="CLAUDE_CODE_SESSION_ID",
    hooks_file=".claude/settings.json",
    project_hooks_file=".claude/settings.json",
    hooks_format="json",
    mcp_file=".claude.json",
    project_mcp_file=".mcp.json",
    mcp_format="json",
    mcp_key="mcpServers",
    transcript=Transcript(
        path=".claude/projects/<cwd, every non-alphanumeric as '-'>/<session_id>.jsonl",
        format="jsonl",
        user_line='{"type": "user", "uuid": ..., "sessionId": ..., "message": {"role": "user", '
                  '"content": "text" | [{"type": "text", "text": ...}]}}',
        assistant_line='{"type": "assistant", "uuid": ..., "message": {"role": "assistant", '
                       '"content": [{"type": "text", "text": ...}, ...]}}',
        notes="One line per content block; also queue-operation, attachment (injected hook "
              "context is an attachment of type hook_additional_context), last-prompt "
              "lines. Written asynchronously: use last_assistant_message at Stop.",
    ),
    offline_env=("ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY",
                 "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "DISABLE_AUTOUPDATER",
                 "DISABLE_TELEMETRY"),
    notes=(
        "-p sessions treat the folder as trusted: settings hooks run without a prompt.",
        "SessionEnd fires at the end of claude -p (reason 'other') in 2.1.197.",
        "Injected context is capped at 10,000 characters (longer goes to a file).",
    ),
)


# -- Codex CLI -----------------------------------------------------------------------------
# Cited from the JSON Schemas embedded in the codex binary of @openai/codex@0.171.0
# (@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex).
CODEX = Agent(
    name="codex",
    checked_version="0.171.0",
    npm_package="@openai/codex",
    binary="codex",
    # Matchers are Rust regexes (unanchored), "" or "*" match all; UserPromptSubmit and Stop
    # ignore theirs (codex-rs/hooks dispatcher, `select_handlers_for_matcher_inputs`).
    hooks=(
        # session-start.command.input: source enum ["startup","resume","clear","compact",
        # "fork"]; required: cwd, hook_event_name, model, permission_mode, session_id, source,
        # transcript_path (nullable).
        Hook("SessionStart", "session-start", "startup|resume|clear|compact|fork", "regex",
             "source", ("startup", "resume", "clear", "compact", "fork"),
             ("source", "model", "permission_mode"), True, 10),
        # user-prompt-submit.command.input: prompt, turn_id, model, permission_mode.
        Hook("UserPromptSubmit", "prompt", None, "ignored", None, (),
             ("prompt", "turn_id", "model", "permission_mode"), True, 5),
        # stop.command.input: last_assistant_message (nullable), stop_hook_active, turn_id.
        # stop.command.output has no hookSpecificOutput: Stop cannot inject.
        Hook("Stop", "turn-end", None, "ignored", None, (),
             ("last_assistant_message", "stop_hook_active", "turn_id", "model",
              "permission_mode"), False, 10),
        # pre-compact.command.input: trigger enum ["manual","auto"], turn_id.
        Hook("PreCompact", "pre-compact", "manual|auto", "regex", "trigger", ("manual", "auto"),
             ("trigger", "turn_id", "model"), False, 15),
        # post-compact.command.input: trigger, turn_id; no summary field.
        Hook("PostCompact", "post-compact", "manual|auto", "regex", "trigger",
             ("manual", "auto"), ("trigger", "turn_id", "model"), False, 15),
        # session-end.command.input: reason const "other"; required cwd, hook_event_name,
        # reason, session_id, transcript_path. Codex clamps a SessionEnd timeout to 3 s
        # (its warning "clamping SessionEnd hook timeout to 3s").
        Hook("SessionEnd", "session-end", None, "ignored", "reason", ("other",), ("reason",),
             False, 3),
    ),
    other_events=("PreToolUse", "PostToolUse", "PermissionRequest", "SubagentStart",
                  "SubagentStop", "Interrupt"),
    matcher_all=("", "*"),
    common_fields=("session_id", "transcript_path", "cwd", "hook_event_name"),
    # turn_id: "Codex extension: expose the active turn id to internal turn-scoped hooks";
    # agent_id / agent_type inside subagents.
    optional_fields=("turn_id", "model", "permission_mode", "agent_id", "agent_type"),
    session_id_field="session_id",
    cwd_field="cwd",
    transcript_field="transcript_path",
    transcript_nullable=True,  # definitions/NullableString in every input schema
    prompt_field="prompt",
    last_message_field="last_assistant_message",
    summary_field=None,
    # session-start.command.output / user-prompt-submit.command.output:
    # hookSpecificOutput {hookEventName (const), additionalContext}; additionalProperties
    # false, so no other keys (a bare {"continue": true} is valid, an unknown key is not).
    inject_json='{"hookSpecificOutput": {"hookEventName": "{event}", '
                '"additionalContext": "{text}"}}',
    plain_stdout_injects=("SessionStart", "UserPromptSubmit"),
    # stop.command.output: Stop's stdout must be a JSON object when not empty.
    json_required=("Stop",),
    exit_ok=0,
    exit_block=2,
    timeout_unit="s",
    default_timeout=600,
    # Seen in a real run: no session variable at all (CODEX_THREAD_ID is set for the agent's
    # shell commands, not for hooks); the npm launcher adds CODEX_MANAGED_BY_NPM.
    hook_env=(),
    session_env=None,
    hooks_file=".codex/hooks.json",  # or [hooks] in config.toml; $CODEX_HOME moves .codex
    project_hooks_file=".codex/hooks.json",
    hooks_format="json",
    mcp_file=".codex/config.toml",
    project_mcp_file=".codex/config.toml",
    mcp_format="toml",
    mcp_key="mcp_servers",
    transcript=Transcript(
        path=".codex/sessions/<YYYY>/<MM>/<DD>/rollout-<time>-<session_id>.jsonl",
        format="jsonl",
        user_line='{"type": "response_item", "payload": {"type": "message", "role": "user", '
                  '"content": [{"type": "input_text", "text": ...}]}}',
        assistant_line='{"type": "response_item", "payload": {"type": "message", '
                       '"role": "assistant", "content": [{"type": "output_text", '
                       '"text": ...}]}}',
        notes="Also session_meta, turn_context, world_state, event_msg (repeats the turns), "
              "token_usage_record lines; role 'developer' holds harness instructions, and "
              "the first user message is an <environment_context> block.",
    ),
    offline_env=("a [model_providers.X] with base_url, wire_api = \"responses\", env_key",
                 "check_for_update_on_startup = false", "[analytics] enabled = false"),
    notes=(
        "User hooks run only once trusted in the /hooks screen (trust is kept per hook "
        "hash); `codex exec --dangerously-bypass-hook-trust` skips that for one run.",
        "`codex exec` reads stdin when it is not a terminal: give it </dev/null.",
    ),
)


# -- Gemini CLI ----------------------------------------------------------------------------
# Cited from @google/gemini-cli@0.61.0: bundle/docs/hooks/{index,reference}.md and the bundled
# source (bundle/chunk-*.js, by its `// packages/core/src/...` file).
GEMINI = Agent(
    name="gemini",
    checked_version="0.61.0",
    npm_package="@google/gemini-cli",
    binary="gemini",
    # hooks/hookPlanner.ts `matchesContext`: "" or "*" match all; tool events (BeforeTool,
    # AfterTool) use `new RegExp(matcher)`; lifecycle events (SessionStart, SessionEnd,
    # PreCompress: a `trigger` context) use `matchesTrigger`, which is `matcher === trigger`
    # (exact, one value, no lists). Events without a context (BeforeAgent, AfterAgent) ignore
    # the matcher. docs/hooks/index.md: "Lifecycle events: Matchers are Exact Strings".
    hooks=(
        # hookEventHandler.ts fireSessionStartEvent(source); reference.md: source is
        # "startup" | "resume" | "clear".
        Hook("SessionStart", "session-start", None, "exact", "source",
             ("startup", "resume", "clear"), ("source",), True, 10_000),
        # fireBeforeAgentEvent(prompt): additionalContext is appended to the prompt.
        Hook("BeforeAgent", "prompt", None, "ignored", None, (), ("prompt",), True, 5_000),
        # fireAfterAgentEvent: prompt, prompt_response, stop_hook_active.
        Hook("AfterAgent", "turn-end", None, "ignored", None, (),
             ("prompt", "prompt_response", "stop_hook_active"), False, 10_000),
        # firePreCompressEvent(trigger): "auto" | "manual"; advisory. context/
        # chatCompressionService.ts fires it (trigger "auto") at every turn with history,
        # before it checks the threshold: an "auto" PreCompress does not mean a compaction.
        Hook("PreCompress", "pre-compact", None, "exact", "trigger", ("auto", "manual"),
             ("trigger",), False, 15_000),
        # fireSessionEndEvent(reason): "exit" | "clear" | "logout" | "prompt_input_exit" |
        # "other"; best effort, the CLI does not wait for it.
        Hook("SessionEnd", "session-end", None, "exact", "reason",
             ("exit", "clear", "logout", "prompt_input_exit", "other"), ("reason",), False,
             5_000),
    ),
    other_events=("BeforeTool", "AfterTool", "BeforeModel", "AfterModel",
                  "BeforeToolSelection", "Notification"),
    matcher_all=("", "*"),
    # hookEventHandler.ts createBaseInput: session_id, transcript_path (may be ""), cwd,
    # hook_event_name, timestamp.
    common_fields=("session_id", "transcript_path", "cwd", "hook_event_name", "timestamp"),
    optional_fields=(),
    session_id_field="session_id",
    cwd_field="cwd",
    transcript_field="transcript_path",
    transcript_nullable=True,
    prompt_field="prompt",
    last_message_field="prompt_response",
    summary_field=None,
    # reference.md: SessionStart and BeforeAgent take hookSpecificOutput.additionalContext.
    # hooks/types.ts getAdditionalContext escapes it (< as &lt;, > as &gt;: db0's fence
    # reaches the model as &lt;db0-context ...&gt;), and core/client.ts wraps it in
    # <hook_context>...</hook_context>. Non-interactively (gemini -p) SessionStart's context
    # is prepended to the prompt, so BeforeAgent's `prompt` and the transcript's user turn
    # carry it too: capture must cut <hook_context> blocks.
    inject_json='{"hookSpecificOutput": {"hookEventName": "{event}", '
                '"additionalContext": "{text}"}}',
    # hookRunner.ts: stdout (or, if empty, stderr) is parsed as JSON; plain text on exit 0
    # becomes {"decision": "allow", "systemMessage": text}: shown, never context.
    plain_stdout_injects=(),
    json_required=("SessionStart", "BeforeAgent", "AfterAgent", "PreCompress", "SessionEnd"),
    exit_ok=0,
    exit_block=2,
    # hookRunner.ts: DEFAULT_HOOK_TIMEOUT = 6e4, `Hook timed out after ${timeout}ms`.
    timeout_unit="ms",
    default_timeout=60_000,
    # hookRunner.ts: GEMINI_PROJECT_DIR, GEMINI_PLANS_DIR, GEMINI_CWD, GEMINI_SESSION_ID,
    # CLAUDE_PROJECT_DIR; the rest of the environment passes through sanitizeEnvironment
    # (services/environmentSanitization.ts), which drops all but an allow-list when
    # security.environmentVariableRedaction is on or GITHUB_SHA / SURFACE=Github is set
    # (then DB0_HOME and the like do not reach the hook).
    hook_env=("GEMINI_PROJECT_DIR", "GEMINI_PLANS_DIR", "GEMINI_CWD", "GEMINI_SESSION_ID",
              "CLAUDE_PROJECT_DIR"),
    session_env="GEMINI_SESSION_ID",
    hooks_file=".gemini/settings.json",
    project_hooks_file=".gemini/settings.json",
    hooks_format="jsonc",  # settings are read through stripJsonComments
    mcp_file=".gemini/settings.json",
    project_mcp_file=".gemini/settings.json",
    mcp_format="jsonc",
    mcp_key="mcpServers",
    transcript=Transcript(
        path=".gemini/tmp/<project name from ~/.gemini/projects.json>/chats/"
             "session-<time>-<session_id[:8]>.jsonl",
        format="jsonl",
        user_line='{"id": ..., "timestamp": ..., "type": "user", "content": [{"text": ...}]}',
        assistant_line='{"id": ..., "timestamp": ..., "type": "gemini", "content": "text", '
                       '"thoughts": [...], "tokens": {...}, "model": ...}',
        notes="services/chatRecordingService.ts: a first metadata line {sessionId, "
              "projectHash, startTime, ...}, message records (those with a string id; user "
              "content is a Part list without a 'type' key), {\"$set\": {...}} updates (a "
              "$set.messages list replaces every message so far) and {\"$rewindTo\": id}.",
    ),
    offline_env=("GOOGLE_GEMINI_BASE_URL", "GEMINI_API_KEY", "GEMINI_CLI_TRUST_WORKSPACE",
                 "GEMINI_TELEMETRY_ENABLED"),
    # PreCompress "auto" fires at every turn, before Gemini checks whether to compress
    # (context/chatCompressionService.ts): only a manual one surely compacts.
    checkpoint_triggers=("manual",),
    notes=(
        "hooksConfig.enabled (default true) turns all hooks off; hooksConfig.disabled lists "
        "hook names to skip.",
        "Project hooks are fingerprinted: a changed name or command warns before it runs.",
        "With model 'auto' the CLI asks a router model for JSON first (generateContent with "
        "responseJsonSchema).",
    ),
)


AGENTS: dict[str, Agent] = {a.name: a for a in (CLAUDE_CODE, CODEX, GEMINI)}


def injecting(agent: str) -> dict[str, str]:
    """db0's event -> the agent's event name, for the events whose output injects context."""
    return {h.db0_event: h.event for h in AGENTS[agent].hooks if h.injects}

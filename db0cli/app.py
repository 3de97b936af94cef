"""The `db0` entry point: builds the Typer app from `commands/*` and maps errors to exit codes.

Exit codes (STYLE.md): 0 ok, 1 failed, 2 usage, 3 daemon not running (`daemon status`),
4 not found, 5 daemon unavailable or incompatible, 130 interrupted. Errors are one line on
stderr; `--debug` adds the traceback.
"""

from __future__ import annotations

import os
import sys

from db0.daemon.protocol import EXIT_INTERRUPTED, EXIT_USAGE, Db0Error

TYPE_CHECKING = False  # typing stays unloaded at run time: it is costly to import
if TYPE_CHECKING:
    from typing import Any


def _import_typer() -> Any:
    # Typer imports rich and its Markdown stack at start-up whenever rich is installed
    # (most of a command's start-up). db0 draws with rich only on a terminal, on
    # demand, so Typer is shown no rich and falls back to click's plain help and errors.
    if sys.flags.no_site:  # started by db0's launcher (launcher.py): as pip's script would be
        import site

        site.main()
    missing = object()
    saved = sys.modules.get("rich", missing)
    sys.modules["rich"] = None  # type: ignore[assignment]
    try:
        import typer
        import typer.core
        import typer.main
    finally:
        if saved is missing:
            del sys.modules["rich"]
        else:
            sys.modules["rich"] = saved  # type: ignore[assignment]
    return typer


# Built on first use, so `db0 hook` (run by agents at every prompt) never imports Typer.
typer: Any = None
app: Any = None


def _build_app() -> Any:
    global typer, app
    if app is None:
        import typing
        from typing import Annotated

        typer = _import_typer()
        from typer.core import TyperGroup

        class Ordered(TyperGroup):
            """Everyday commands first, plumbing (run by hooks, not people) last."""

            def list_commands(self, ctx: Any) -> list[str]:
                rank = {n: i for i, n in enumerate(HELP_ORDER)}
                return sorted(super().list_commands(ctx),
                              key=lambda n: (rank.get(n, len(rank)), n))

        app = typer.Typer(
            cls=Ordered,
            name="db0",
            help="db0: memory for AI agents. Remember, recall and pack context through a local "
                 "daemon.",
            no_args_is_help=True,
            add_completion=False,
            pretty_exceptions_enable=False,
            context_settings={"help_option_names": ["-h", "--help"]},
        )

        def root(version: Annotated[bool, typer.Option(
                "--version", "-V", help="Print db0's version and exit.")] = False) -> None:
            """db0: memory for AI agents. Remember, recall and pack context through a local
            daemon."""
            # --version is answered in main(), before any of this is built; declared here so
            # that --help lists it.

        # Typer evaluates annotations in this module, where Annotated is not a global.
        root.__annotations__ = typing.get_type_hints(
            root, localns={"Annotated": Annotated, "typer": typer}, include_extras=True)
        app.callback()(root)
    return app


HELP_ORDER = ["remember", "recall", "pack", "list", "show", "forget", "history", "purge",
              "import", "export", "session", "task", "checkpoint", "link", "spawn", "watch",
              "integrate", "ingest", "mcp", "ui", "sync", "remote", "model", "daemon", "doctor",
              "stats", "completions", "git", "hook"]

# Which module under commands/ defines a top-level command. Building every command costs
# time (Typer inspects each signature), so a call builds only the module it needs.
# A command missing here still works: an unknown name loads every module.
COMMAND_MODULES = {
    "remember": "memory",
    "recall": "memory",
    "show": "memory",
    "list": "memory",
    "forget": "memory",
    "history": "memory",
    "purge": "memory",
    "import": "transfer",
    "export": "transfer",
    "daemon": "daemon",
    "doctor": "system",
    "stats": "system",
    "model": "model",
    "remote": "remote",
    "sync": "sync",
    "session": "session",
    "task": "session",
    "pack": "pack",
    "checkpoint": "checkpoint",
    "link": "link",
    "spawn": "spawn",
    "mcp": "mcp",
    "hook": "hook",
    "ingest": "ingest",
    "integrate": "integrate",
    "git": "git",
    "completions": "completions",
    "watch": "watch",
    "ui": "ui",
}


def _register_commands(only: str | None = None) -> None:
    import importlib
    import pkgutil

    import db0.cli.commands as pkg

    _build_app()
    names = [only] if only else sorted(i.name for i in pkgutil.iter_modules(pkg.__path__))
    from db0.cli.params import register

    for name in names:
        mod = importlib.import_module(f"{pkg.__name__}.{name}")
        if hasattr(mod, "COMMANDS"):
            register(app, mod.COMMANDS, getattr(mod, "GROUPS", {}))


def _module_for(args: list[str]) -> str | None:
    if any(k.endswith("_COMPLETE") for k in os.environ):  # shell completion needs them all
        return None
    first = next((a for a in args if not a.startswith("-")), None)
    return COMMAND_MODULES.get(first) if first else None


def fail(message: str, hint: str = "", code: int = 1) -> int:
    line = f"db0: error: {message}"
    if hint:
        line += f" (to fix: {hint})"
    sys.stderr.write(line + "\n")
    return code


# Set by main() when it ran a path without Typer (the hook, git capture, the fast path):
# nothing of those needs the interpreter's teardown (see entry).
_bare = False


def entry() -> None:
    """The `db0` console script: main(), and the exit code. After a path without Typer, the
    process leaves with os._exit once the atexit handlers ran and its output is flushed: the
    interpreter's teardown frees every module and object one by one, work no one waits for
    in a process that ends (measured in docs/performance.md). Typer's paths, and a flush
    that fails, exit as usual."""
    code = main()
    if not _bare:
        sys.exit(code)
    import atexit

    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, OSError):
        sys.exit(code)  # the interpreter reports it as it would have
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    global _bare
    args = list(sys.argv[1:] if argv is None else argv)
    if args in (["--version"], ["-V"]):
        from db0.daemon import __version__

        sys.stdout.write(f"db0 {__version__}\n")
        return 0
    if args[:1] == ["hook"]:  # the agents' hot path: no Typer, always exit 0
        from db0.cli.hook import main as hook_main

        _bare = True
        return hook_main(args[1:])
    if args[:2] == ["git", "capture"]:  # run by git hooks: no Typer, always exit 0
        from db0.cli.gitcapture import main as git_main

        _bare = True
        return git_main(args[2:])
    debug = "--debug" in args
    if debug:
        args.remove("--debug")
    name = _module_for(args)
    if name is not None and not debug:
        code = _fast(name, args)  # the common, well-formed command lines: no Typer, no click
        if code is not None:
            _bare = True
            return code
    return _typer_main(args, name, debug)


def _fast(name: str, args: list[str]) -> int | None:
    from db0.cli.params import explain, fast_call

    # __import__, not importlib.import_module: importlib's package (and warnings) would be
    # loaded for this one call.
    __import__(f"db0.cli.commands.{name}")
    mod = sys.modules[f"db0.cli.commands.{name}"]
    commands = getattr(mod, "COMMANDS", None)
    if commands is None:
        return None
    try:
        return fast_call(commands, args)
    except Db0Error as e:
        e = explain(e)
        return fail(e.message, e.hint, e.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("db0: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return _reader_gone()
    except Exception as e:
        return fail(f"{type(e).__name__}: {e}", "run again with --debug and report the trace")


def _reader_gone() -> int:
    """The reader went away (db0 recall x | head): not an error of ours."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _typer_main(args: list[str], name: str | None, debug: bool) -> int:
    import click

    _register_commands(name)
    command = typer.main.get_command(app)
    try:
        rv = command.main(args=args, prog_name="db0", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except Db0Error as e:
        if debug:
            raise
        from db0.cli.params import explain

        e = explain(e)
        return fail(e.message, e.hint, e.exit_code)
    except click.exceptions.Exit as e:
        return int(e.exit_code)
    except click.UsageError as e:  # one line, like every other error
        if type(e).__name__ == "NoArgsIsHelpError" and e.ctx is not None:
            # `db0` or a group alone (click 8.2+ raises this for no_args_is_help): its help,
            # whole, where a person typing it looks; a usage error's status.
            sys.stderr.write(e.ctx.get_help() + "\n")
            return EXIT_USAGE
        where = e.ctx.command_path if e.ctx is not None else "db0"
        return fail(" ".join(e.format_message().split()), f"see: {where} --help", EXIT_USAGE)
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except SystemExit as e:
        # Typer turns a reader that went away (db0 export | head -1) into exit 1.
        if e.code == 1 and isinstance(e.__context__, BrokenPipeError):
            return _reader_gone()
        raise
    except (KeyboardInterrupt, click.exceptions.Abort):
        sys.stderr.write("db0: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return _reader_gone()
    except Exception as e:
        if debug:
            raise
        return fail(f"{type(e).__name__}: {e}", "run again with --debug and report the trace")


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()

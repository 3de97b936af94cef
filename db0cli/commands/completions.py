"""db0 completions show|install [SHELL]: bash, zsh and fish completion for this db0."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from db0.cli import output
from db0.cli.options import JsonOpt
from db0.cli.params import Annotated, Arg, Command, cmd
from db0.daemon.protocol import Db0Error

FILES = {"bash": "db0.bash", "zsh": "_db0", "fish": "db0.fish"}
ShellArg = Annotated[str | None, Arg(help="bash, zsh or fish (default: your $SHELL).",
                                    choices=tuple(FILES))]


def _shell(shell: str | None) -> str:
    name = shell or Path(os.environ.get("SHELL", "")).name
    if name not in FILES:
        raise Db0Error("bad_request", f"no completion for shell {name or '(unknown)'!r}",
                       "name one: db0 completions install bash|zsh|fish")
    return name


def target(shell: str) -> Path:
    home = Path.home()
    data = Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share")
    config = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    return {"bash": data / "bash-completion" / "completions" / "db0",
            "zsh": home / ".zfunc" / "_db0",
            "fish": config / "fish" / "completions" / "db0.fish"}[shell]


def show(shell: ShellArg = None, json_: JsonOpt = False) -> int:
    """Print the completion script.

    \b
    Examples:
      db0 completions show bash > /etc/bash_completion.d/db0
      db0 completions show zsh --json     # {"shell", "script"}
    """
    from db0.cli.completions import generate

    name = _shell(shell)
    if json_:
        output.emit_json({"shell": name, "script": generate(name)})
    else:
        sys.stdout.write(generate(name))
    return 0


def install(shell: ShellArg = None, json_: JsonOpt = False) -> int:
    """Write the script where your shell loads completions from, and say any step left.

    \b
    Examples:
      db0 completions install          # the shell in $SHELL
      db0 completions install fish
    """
    from db0.cli.completions import generate

    name = _shell(shell)
    path = target(name)
    text = generate(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    changed = not path.exists() or path.read_text("utf-8") != text
    if changed:
        tmp = path.with_name(f".{path.name}.db0-tmp")
        tmp.write_text(text, "utf-8")
        tmp.replace(path)
    step = None
    if name == "zsh":
        rc = Path.home() / ".zshrc"
        if ".zfunc" not in (rc.read_text("utf-8", "replace") if rc.exists() else ""):
            step = ("add to ~/.zshrc, before compinit: fpath=(~/.zfunc $fpath); "
                    "autoload -Uz compinit && compinit")
    elif name == "bash":
        step = "open a new shell (bash-completion loads it on first use of db0)"
    else:
        step = "open a new fish shell"
    if json_:
        output.emit_json({"shell": name, "path": str(path), "changed": changed, "next": step})
    else:
        output.notice(f"db0: {name} completion {'written to' if changed else 'up to date in'} "
                      f"{path}" + (f"; next: {step}" if step else ""))
    return 0


COMMANDS: list[Command] = [
    cmd("completions show", show),
    cmd("completions install", install),
]
GROUPS = {
    "completions": "Shell completion scripts (bash, zsh, fish).",
}

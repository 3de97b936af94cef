"""Shell completion: the checked-in scripts are what the CLI generates now, bash completes a
subcommand, an option and stops offering words after an option that takes a value, and
`db0 completions install` writes where each shell looks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import DB0

REPO = Path(__file__).resolve().parent.parent
FILES = {"bash": "db0.bash", "zsh": "_db0", "fish": "db0.fish"}


def show(shell: str) -> str:
    p = subprocess.run([DB0, "completions", "show", shell], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout


@pytest.mark.parametrize("shell", sorted(FILES))
def test_checked_in_scripts_are_current(shell: str) -> None:
    checked_in = (REPO / "completions" / FILES[shell]).read_text()
    assert show(shell) == checked_in, f"completions/{FILES[shell]} is stale: run make completions"


def complete(*words: str) -> list[str]:
    """What bash offers for the command line `words` (the last one is being completed)."""
    script = REPO / "completions" / "db0.bash"
    arr = " ".join(f"'{w}'" for w in words)
    cmd = (f"source '{script}'; COMP_WORDS=({arr}); COMP_CWORD={len(words) - 1}; _db0; "
           'printf "%s\\n" "${COMPREPLY[@]}"')
    p = subprocess.run(["bash", "--norc", "--noprofile", "-c", cmd], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return [w for w in p.stdout.splitlines() if w]


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completes_subcommands_and_options() -> None:
    assert complete("db0", "sess") == ["session"]
    assert complete("db0", "session", "st") == ["start"]
    assert set(complete("db0", "checkpoint", "")) >= {"create", "list", "restore", "branch"}
    assert complete("db0", "recall", "--js") == ["--json"]
    assert complete("db0", "--json", "recall", "--exp") == ["--expand"]
    assert "--budget" in complete("db0", "pack", "--b")
    assert complete("db0", "pack", "--budget", "") == []  # a value goes there, not a word
    assert complete("db0", "zzz") == []


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_install_writes_where_the_shell_looks(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path), "SHELL": "/bin/bash"}
    env.pop("XDG_DATA_HOME", None)
    env.pop("XDG_CONFIG_HOME", None)
    p = subprocess.run([DB0, "completions", "install", "--json"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    path = tmp_path / ".local/share/bash-completion/completions/db0"
    assert out["path"] == str(path) and out["changed"] is True
    assert path.read_text() == show("bash")
    again = subprocess.run([DB0, "completions", "install", "bash", "--json"], env=env,
                           capture_output=True, text=True, timeout=60)
    assert json.loads(again.stdout)["changed"] is False
    fish = subprocess.run([DB0, "completions", "install", "fish"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert fish.returncode == 0
    assert (tmp_path / ".config/fish/completions/db0.fish").read_text() == show("fish")
    bad = subprocess.run([DB0, "completions", "install", "tcsh"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "tcsh" in bad.stderr and len(bad.stderr.splitlines()) == 1
    syntax = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_other_shells_parse_the_script(shell: str, tmp_path: Path) -> None:
    exe = shutil.which(shell)
    if exe is None:
        pytest.skip(f"{shell} is not installed")
    f = tmp_path / FILES[shell]
    f.write_text(show(shell))
    args = [exe, "-n", str(f)] if shell == "zsh" else [exe, "--no-execute", str(f)]
    p = subprocess.run(args, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    if shell == "fish":  # fish completes a command line on request
        p = subprocess.run([exe, "--no-config", "-c", f"source {f}; complete -C'db0 sess'; "
                            "complete -C'db0 session st'; complete -C'db0 recall --js'"],
                           capture_output=True, text=True, timeout=30)
        assert [ln.split("\t")[0] for ln in p.stdout.splitlines()] == \
            ["session", "start", "--json"], p.stdout + p.stderr

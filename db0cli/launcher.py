"""`python -m db0.cli.launcher [SCRIPT]`: replace pip's `db0` console script with one that
starts Python without `site` (`-S`). `make install` and `make refresh` run it after pip.

Why: `site` reads the environment's `.pth` files and imports what they name at every start
(docs/performance.md), and agents and git hooks start db0 at every prompt and commit. pip's
script cannot carry an interpreter flag, so this one is written in its place: its shebang has
`-S` and it puts this environment's site-packages on `sys.path` itself, where `site` would.

Rules:
- Only pip's own script for `db0.cli.app:entry` (or an earlier launcher) is replaced, and only
  by a launcher whose shebang the kernel takes as it is (an absolute interpreter path without
  spaces, short enough); otherwise the script stays as pip wrote it, and the output says why.
- An editable install (`make dev`) keeps pip's script: its finder is a `.pth` file.
- The paths without Typer need nothing a `.pth` file provides (the standard library, db0 and
  its dependencies, which pip installs as plain folders in site-packages: `db0 mcp`'s SDK
  included, which tests/test_mcp.py runs through this launcher), and run without `site`.
  Typer's path runs `site.main()` before it imports Typer (`app._import_typer`): it sees the
  environment pip's script would give it.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

ENTRY = "from db0.cli.app import entry"
MAX_SHEBANG = 127  # bytes the kernel reads of a `#!` line on older Linux (256 since 5.1)

TEMPLATE = """#!{python} -S
# db0's launcher, written by `make install` (db0/cli/launcher.py): Python starts without `site`
# and this environment's site-packages goes on the path here.
import sys
sys.path.extend({paths!r})
{entry}
entry()
"""


def launcher(python: str, paths: list[str]) -> str | None:
    """The launcher's text, or None when its shebang would not be taken as it is."""
    shebang = f"#!{python} -S"
    if (not os.path.isabs(python) or any(c.isspace() for c in python)
            or len(shebang.encode()) > MAX_SHEBANG):
        return None
    return TEMPLATE.format(python=python, paths=paths, entry=ENTRY)


def site_paths() -> list[str]:
    """This environment's site-packages, as `site` puts them on the path (pure, then platform
    specific, each once)."""
    found: list[str] = []
    for key in ("purelib", "platlib"):
        p = sysconfig.get_path(key)
        if p and p not in found:
            found.append(p)
    return found


def editable() -> bool:
    """db0 is installed editable (`make dev`): its modules are read from the tree's folders."""
    return Path(__file__).parent.name == "db0cli"


def install(script: Path) -> str:
    """Write the launcher over pip's script (or an earlier launcher) at `script`; what was
    done, in a few words. OSError when the file cannot be read or written."""
    text = script.read_text()
    if ENTRY not in text:
        return "left alone: not pip's script for db0.cli.app:entry"
    if editable():
        return "left alone: an editable install (its finder is a .pth file)"
    new = launcher(sys.executable, site_paths())
    if new is None:
        return f"left alone: {sys.executable} cannot be a shebang's interpreter as it is"
    if new == text:
        return "the launcher already"
    tmp = script.with_name(f".{script.name}.launcher")
    tmp.write_text(new)
    tmp.chmod(0o755)
    os.replace(tmp, script)
    return "replaced by the launcher"


def main(argv: list[str]) -> int:
    script = Path(argv[0]) if argv else Path(sys.executable).with_name("db0")
    try:
        what = install(script)
    except OSError as e:
        print(f"db0 launcher: {script}: {e.strerror or e}", file=sys.stderr)
        return 1
    print(f"{script}: {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

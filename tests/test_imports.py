"""The CLI's start-up stays lean: it never loads the store or the heavy libraries."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import Db0

HEAVY = ("apsw", "sqlite_vec", "llama_cpp", "psycopg", "watchdog", "numpy", "db0.store",
         "db0.daemon.server", "mcp", "pydantic")

PROBE = """
import sys, json
args, heavy = json.loads(sys.argv[1]), json.loads(sys.argv[2])
sys.argv = ["db0", *args]
import db0.cli.app as app
try:
    app.main(sys.argv[1:])
except SystemExit:
    pass
print("LOADED " + json.dumps(sorted(m for m in sys.modules
                        if any(m == h or m.startswith(h + ".") for h in heavy))),
      file=sys.stderr)
"""


def _loaded(args: list[str], env: dict[str, str]) -> list[str]:
    p = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args), json.dumps(HEAVY)],
                       capture_output=True, text=True, env=env, timeout=120)
    line = [ln for ln in p.stderr.splitlines() if ln.startswith("LOADED ")][-1]
    return json.loads(line[len("LOADED "):])  # type: ignore[no-any-return]


def test_help_loads_nothing_heavy(home: Path) -> None:
    d = Db0(home)
    assert _loaded(["--help"], d.env) == []
    assert _loaded(["recall", "--help"], d.env) == []


def test_commands_load_nothing_heavy(db0: Db0) -> None:
    db0.run("remember", "start-up matters")
    for args in (["recall", "start-up"], ["remember", "another"], ["daemon", "status"],
                 ["list"]):
        assert _loaded(args, db0.env) == [], args


def test_cli_sources_import_only_allowed_modules() -> None:
    """db0cli/ may import db0.daemon's client, protocol and paths, and nothing of db0.store."""
    import ast

    root = Path(__file__).resolve().parent.parent / "db0cli"
    allowed = {"db0.daemon", "db0.daemon.client", "db0.daemon.protocol", "db0.daemon.paths"}
    bad = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for n in names:
                if n.startswith("db0.") and not n.startswith("db0.cli") and n not in allowed:
                    bad.append(f"{path.name}: {n}")
    assert bad == []

"""The three floors and the one-door rules, read from the sources (no process started).

- `store/` imports nothing of the daemon or the CLI;
- the contract the CLI may import (`daemon/protocol`, `client`, `paths`, `agents`) imports only
  the standard library and itself;
- `db0cli/` imports only that contract (and the pure token counter);
- inside the daemon the direction holds: the runtime below components and handlers, no
  component importing a handler or the socket server;
- new memories are written by `store/write.py` alone, and nothing but `daemon/client.py`
  speaks the wire protocol.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {"db0cli": "db0.cli", "daemon": "db0.daemon", "store": "db0.store"}
CONTRACT = {"db0.daemon", "db0.daemon.protocol", "db0.daemon.wirejson", "db0.daemon.client",
            "db0.daemon.paths", "db0.daemon.agents"}
CLI_MAY = CONTRACT | {"db0.store.tokens"}


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT)
    parts = [FOLDERS[rel.parts[0]], *rel.with_suffix("").parts[1:]]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[str]:
    out: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
            out += [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names]
    return out


def _sources(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def _first_party(names: list[str]) -> set[str]:
    return {n for n in names if n.startswith("db0.")}


def _is_module(name: str) -> bool:
    """Whether `name` is one of db0's modules or packages (not a name imported from one)."""
    top, _, rest = name.partition(".")
    if top != "db0" or not rest:
        return False
    folder = {v: k for k, v in FOLDERS.items()}
    for prefix, f in folder.items():
        if name == prefix or name.startswith(prefix + "."):
            tail = name[len(prefix) + 1:].replace(".", "/")
            base = ROOT / f / tail if tail else ROOT / f
            return base.with_suffix(".py").exists() or (base / "__init__.py").exists()
    return False


def _modules_imported(path: Path) -> set[str]:
    return {n for n in _first_party(_imports(path)) if _is_module(n)}


def test_store_imports_nothing_above_it() -> None:
    bad = [f"{p.name}: {m}" for p in _sources("store") for m in _modules_imported(p)
           if not m.startswith("db0.store")]
    assert bad == []


def test_the_contract_is_standard_library_only() -> None:
    allowed_third_party = {"platformdirs"}  # paths.py, off Linux only
    stdlib = sys.stdlib_module_names
    bad = []
    for mod in sorted(CONTRACT):
        rel = mod.removeprefix("db0.daemon").lstrip(".") or "__init__"
        path = ROOT / "daemon" / f"{rel}.py"
        if not path.exists():
            continue
        for name in _imports(path):
            top = name.split(".")[0]
            if name.startswith("db0."):
                if _is_module(name) and name not in CONTRACT:
                    bad.append(f"{path.name}: {name}")
            elif top not in stdlib and top not in allowed_third_party and top != "__future__":
                bad.append(f"{path.name}: {name}")
    assert bad == []


def test_cli_imports_only_the_contract() -> None:
    bad = [f"{p.name}: {m}" for p in _sources("db0cli") for m in _modules_imported(p)
           if not m.startswith("db0.cli") and m not in CLI_MAY]
    assert bad == []


# Inside the daemon, who may import whom (prefixes of db0.daemon.*): each layer only below it.
LAYERS = {
    "models": ("protocol", "paths", "models"),
    "core.config": (),
    "core.shapes": ("protocol",),
    "core.writer": (),
    "core.runtime": ("core.config", "core.writer", "paths", "protocol"),
    "services": ("core.config", "core.runtime", "models", "services", "protocol", "paths"),
    "core.dispatch": ("core.runtime", "core.shapes", "protocol"),
    # The inspector: a service that reaches the dispatcher only through Runtime.replay.
    "ui": ("core.config", "core.runtime", "core.shapes", "protocol", "paths", "ui",
           "__init__"),
    "handlers": ("handlers", "core.dispatch", "core.runtime", "core.shapes", "services",
                 "models", "protocol", "paths", "agents", "ui", "__init__"),
    "core.components": ("core.runtime", "services", "ui"),
    "core.server": ("core", "handlers", "paths", "protocol", "__init__"),
}


def test_daemon_layers_keep_their_direction() -> None:
    """models and the core's base below services, services below handlers, the dispatcher
    below handlers, the socket server on top; nothing imports upward."""
    bad = []
    for p in _sources("daemon"):
        mod = _module(p).removeprefix("db0.daemon").lstrip(".")
        layer = next((k for k in sorted(LAYERS, key=len, reverse=True)
                      if mod == k or mod.startswith(k + ".")), None)
        if layer is None:
            continue  # the contract and the entry point, checked elsewhere
        for m in _modules_imported(p):
            if not m.startswith("db0.daemon"):
                continue
            target = m.removeprefix("db0.daemon").lstrip(".") or "__init__"
            if not any(target == a or target.startswith(a + ".") for a in LAYERS[layer]):
                bad.append(f"{mod} -> {target}")
    assert bad == []


def test_new_memories_have_one_door() -> None:
    """Only store/write.py inserts new memories (redaction, validation, de-duplication and
    keys happen there); core.py defines the primitives."""
    bad = []
    for p in _sources("store") + _sources("daemon"):
        if p.name in ("write.py", "core.py"):
            continue
        text = p.read_text()
        for needle in (r"insert_states\(", r"insert_rows\(", r"new=True",
                       r"INSERT INTO memories[ (]"):
            if re.search(needle, text):
                bad.append(f"{p.relative_to(ROOT)}: {needle}")
    assert bad == []


def test_one_wire_client() -> None:
    """Frames are built and read only by the protocol module, the client and the server."""
    speakers = {"protocol.py", "client.py", "server.py"}
    bad = []
    for p in _sources("db0cli") + _sources("daemon"):
        if p.name in speakers:
            continue
        names = _imports(p)
        if any(n.endswith((".read_frame", ".encode")) and "protocol" in n for n in names):
            bad.append(str(p.relative_to(ROOT)))
    assert bad == []

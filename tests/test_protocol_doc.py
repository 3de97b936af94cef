"""docs/protocol.md is generated from the method registry and kept current."""

from __future__ import annotations

from pathlib import Path

from db0.daemon.core.shapes import markdown
from db0.daemon.handlers import load_all


def test_protocol_doc_is_current() -> None:
    doc = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
    assert doc.read_text() == markdown(load_all()) + "\n", "run: make docs"


def test_every_method_says_what_it_does() -> None:
    undocumented = [n for n, m in load_all().items() if not m.doc]
    assert undocumented == []

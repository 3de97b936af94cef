"""Rendering: JSON for programs, rich tables for people at a terminal, plain lines when piped.

stdout is data; notices, progress and errors go to stderr. rich is imported only when a table
or a progress bar is actually drawn on a terminal.
"""

from __future__ import annotations

import os
import sys
import time

from db0.daemon import wirejson as json

TYPE_CHECKING = False  # typing (and collections, contextlib) stay unloaded at run time
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any


def is_tty(stream: Any = None) -> bool:
    stream = stream or sys.stdout
    return bool(getattr(stream, "isatty", lambda: False)())


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")


def emit_jsonl(rows: Sequence[Any]) -> None:
    w = sys.stdout.write
    for row in rows:
        w(json.dumps(row, ensure_ascii=False) + "\n")


def count(n: int, one: str, many: str = "") -> str:
    """`1 memory`, `3 memories`: a number and its noun, as a sentence says it."""
    return f"{n} {one if n == 1 else (many or one + 's')}"


def notice(msg: str) -> None:
    sys.stderr.write(msg + "\n")


def one_line(text: str, width: int = 0) -> str:
    s = " ".join(str(text).split())
    return s if not width or len(s) <= width else s[: width - 1] + "…"


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> None:
    """A rich table on a terminal; tab-separated lines when piped (so grep and cut work)."""
    if is_tty() and not os.environ.get("DB0_PLAIN"):
        from rich.console import Console
        from rich.table import Table

        plain = bool(os.environ.get("NO_COLOR"))  # no-color.org: no styling at all
        t = Table(title=title, show_lines=False, header_style="" if plain else "bold",
                  title_style="" if plain else "italic")
        for c in columns:
            t.add_column(c, overflow="fold")
        for r in rows:
            t.add_row(*("" if v is None else str(v) for v in r))
        Console(no_color=plain, highlight=not plain,
                style=None if not plain else "none").print(t)
        return
    for r in rows:
        sys.stdout.write("\t".join(one_line("" if v is None else str(v)) for v in r) + "\n")


def keyvalues(pairs: Sequence[tuple[str, Any]]) -> None:
    width = max((len(k) for k, _ in pairs), default=0)
    for k, v in pairs:
        sys.stdout.write(f"{k.ljust(width)}  {'' if v is None else v}\n")


class progress:
    """A progress bar on stderr when it is a terminal; silent otherwise."""

    def __init__(self, label: str, total: int | None) -> None:
        self.label, self.total = label, total
        self.bar: Any = None
        self.task: Any = None

    def __enter__(self) -> progress:
        if is_tty(sys.stderr):
            from rich.progress import Progress

            self.bar = Progress(transient=True, console=_stderr_console())
            self.bar.__enter__()
            self.task = self.bar.add_task(self.label, total=self.total)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def advance(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(self.task, advance=n)


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def age(iso: str | None) -> str:
    """'3m', '2h', '5d' since an ISO time (for people, not programs)."""
    if not iso:
        return ""
    when = _epoch(iso)
    if when is None:
        return iso
    s = max(0.0, time.time() - when)
    for unit, n in (("y", 31536000), ("d", 86400), ("h", 3600), ("m", 60)):
        if s >= n:
            return f"{int(s // n)}{unit}"
    return f"{int(s)}s"


def _epoch(iso: str) -> float | None:
    """Seconds since the epoch of an ISO 8601 time. The daemon's own form (UTC,
    `YYYY-MM-DDTHH:MM:SS[.fff]Z`) is read by hand, so listing memories does not import
    datetime; anything else goes to datetime.fromisoformat (None: not a time)."""
    if len(iso) >= 20 and iso[-1] == "Z" and iso[4] == "-" and iso[10] == "T":
        try:
            y, mo, d = int(iso[0:4]), int(iso[5:7]), int(iso[8:10])
            h, mi, sec = int(iso[11:13]), int(iso[14:16]), float(iso[17:-1])
        except ValueError:
            return None
        # Days from 1970-01-01 to y-mo-d in the proleptic Gregorian calendar.
        yy = y - (mo <= 2)
        era = yy // 400
        yoe = yy - era * 400
        doy = (153 * (mo + (-3 if mo > 2 else 9)) + 2) // 5 + d - 1
        days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
        return days * 86400 + h * 3600 + mi * 60 + sec
    from datetime import UTC, datetime

    try:
        dt = datetime.fromisoformat(iso)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()

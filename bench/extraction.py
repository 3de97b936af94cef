"""Fact extraction quality: precision and recall of rule-based fact extraction on a labelled set.

The set is tests/data/extraction.jsonl: user turns from coding-agent sessions, written by hand,
each with the facts a careful reader would keep (often none) and a `split` (`dev`, tuned on;
`test`, held out). `extract(text, project)` runs on each turn's raw text, with no daemon.

Matching rule: a predicted fact is correct when its kind and scope equal an expected fact's,
its key matches the expected key, and the expected substring is in its content (both compared
case-insensitively). An expected key ending in `*` matches any key with that prefix (it marks a
topic slug taken from free text, which no labeller can predict: `instruction.*`, `pref.*` for
"I prefer X over Y"); any other expected key, including null, must be equal. Each expected fact
is matched at most once; unmatched predictions are false positives, unmatched expectations false
negatives.

Splits: `dev` is what the rules were designed and tuned on (the first 433 turns, read while
writing the rules, and 259 more that were first measured blind, then tuned on); `test` (336
turns) was written after the rules were frozen and labelled before any run. Tune on dev only.

Prints a table (overall, per split, per category), the errors with --errors, and one JSON
document last. Usage: python bench/extraction.py [--errors] [--split dev|test] [--impl FILE]
[--clean]. --impl scores another extract.py (for example main's: `git show
main:store/extract.py > /tmp/main_extract.py`) on the same set; --clean first strips db0's
fences as the hook does (`transcripts.clean`), for an extract.py that does not.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "extraction.jsonl"


def load(path: Path = DATA) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def key_matches(expected: str | None, got: str | None) -> bool:
    if expected is not None and expected.endswith("*"):
        return got is not None and got.startswith(expected[:-1])
    return expected == got


def matches(exp: dict[str, Any], got: dict[str, Any]) -> bool:
    return (exp["kind"] == got["kind"] and exp["scope"] == got["scope"]
            and key_matches(exp["key"], got["key"])
            and exp["has"].lower() in got["content"].lower())


@dataclass
class Tally:
    items: int = 0
    expected: int = 0
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def add(self, other: Tally) -> None:
        self.items += other.items
        self.expected += other.expected
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def f1(self) -> float | None:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p and r else None

    def as_dict(self) -> dict[str, Any]:
        return {"items": self.items, "expected": self.expected, "tp": self.tp, "fp": self.fp,
                "fn": self.fn, "precision": self.precision, "recall": self.recall,
                "f1": self.f1}


@dataclass
class Result:
    overall: Tally = field(default_factory=Tally)
    splits: dict[str, Tally] = field(default_factory=dict)
    categories: dict[str, Tally] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)


def score_item(item: dict[str, Any], predicted: list[dict[str, Any]]
               ) -> tuple[Tally, list[dict[str, Any]], list[dict[str, Any]]]:
    """The tally of one turn, its false positives and its false negatives."""
    left = list(item["facts"])
    wrong = []
    for got in predicted:
        hit = next((e for e in left if matches(e, got)), None)
        if hit is None:
            wrong.append(got)
        else:
            left.remove(hit)
    t = Tally(items=1, expected=len(item["facts"]), tp=len(predicted) - len(wrong),
              fp=len(wrong), fn=len(left))
    return t, wrong, left


def score(items: Iterable[dict[str, Any]],
          extract: Callable[[str, str | None], Iterable[Any]]) -> Result:
    res = Result()
    for item in items:
        facts = extract(item["text"], item.get("project"))
        predicted = [{"kind": f.kind, "scope": f.scope, "key": f.key, "content": f.content}
                     for f in facts]
        t, fp, fn = score_item(item, predicted)
        res.overall.add(t)
        res.splits.setdefault(item["split"], Tally()).add(t)
        res.categories.setdefault(item["category"], Tally()).add(t)
        if fp or fn:
            res.errors.append({"id": item["id"], "split": item["split"], "text": item["text"],
                               "false_positives": fp, "missed": fn})
    return res


def load_impl(path: str | None) -> ModuleType:
    if path is None:
        return importlib.import_module("db0.store.extract")
    spec = importlib.util.spec_from_file_location("extract_impl", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}: give the path of an extract.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["extract_impl"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def _f(x: float | None) -> str:
    return "    -" if x is None else f"{x:5.3f}"


def table(res: Result) -> str:
    rows = [("overall", res.overall)]
    rows += [(f"split:{k}", v) for k, v in sorted(res.splits.items())]
    rows += [(k, v) for k, v in sorted(res.categories.items())]
    out = [f"{'':14} {'items':>5} {'facts':>5} {'tp':>4} {'fp':>4} {'fn':>4}  "
           f"{'prec':>5} {'rec':>5} {'f1':>5}"]
    for name, t in rows:
        out.append(f"{name:14} {t.items:5d} {t.expected:5d} {t.tp:4d} {t.fp:4d} {t.fn:4d}  "
                   f"{_f(t.precision)} {_f(t.recall)} {_f(t.f1)}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--errors", action="store_true", help="list every false positive and miss")
    ap.add_argument("--split", choices=["dev", "test"], help="score one split only")
    ap.add_argument("--impl", help="an extract.py to score instead of db0.store.extract")
    ap.add_argument("--clean", action="store_true",
                    help="strip fences with transcripts.clean first, as the hook does")
    args = ap.parse_args(argv)
    mod = load_impl(args.impl)
    items = [i for i in load() if args.split in (None, i["split"])]
    t = time.perf_counter()
    fn = mod.extract
    if args.clean:
        from db0.store.transcripts import clean

        def fn(text: str, project: str | None) -> Any:
            return mod.extract(clean(text), project)
    res = score(items, fn)
    took = time.perf_counter() - t
    print(table(res))
    if args.errors:
        for e in res.errors:
            print(f"\n[{e['id']} {e['split']}] {e['text']!r}")
            for f in e["false_positives"]:
                print(f"  + {f['kind']} {f['scope']} {f['key']}: {f['content']!r}")
            for f in e["missed"]:
                print(f"  - {f['kind']} {f['scope']} {f['key']}: ...{f['has']}...")
    print(json.dumps({"bench": "extraction", "took_ms": round(took * 1000, 1),
                      "overall": res.overall.as_dict(),
                      "splits": {k: v.as_dict() for k, v in sorted(res.splits.items())},
                      "categories": {k: v.as_dict() for k, v in sorted(res.categories.items())}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

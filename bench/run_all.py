"""`make bench`: run every benchmark under bench/ in turn and keep their JSON in bench/results/.

Each script is standalone (`python bench/NAME.py --help`) and prints one JSON document last.
Figures are medians (and p95 where it matters), with `python -c pass` or another baseline
measured in the same run where one exists. Run on an otherwise idle machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ["foundation_speed", "embed_speed", "embed_recall_speed", "pack_speed",
         "hook_speed", "capture_speed", "sync_speed", "locomo", "agentmem", "diy_compare"]


def main() -> int:
    only = set(sys.argv[1:])
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    scripts = [n for n in ORDER if (HERE / f"{n}.py").exists()]
    scripts += sorted(p.stem for p in HERE.glob("*.py")
                      if p.stem not in ORDER and p.stem != "run_all" and not p.stem.startswith("_"))
    failed = []
    for name in scripts:
        if only and name not in only:
            continue
        print(f"== {name}", flush=True)
        t = time.monotonic()
        p = subprocess.run([sys.executable, str(HERE / f"{name}.py")], capture_output=True,
                           text=True)
        took = time.monotonic() - t
        tail = p.stdout.strip()
        try:
            start = tail.rfind("\n{") + 1 if not tail.startswith("{") else 0
            result = json.loads(tail[start:])
        except ValueError:
            result = {"output": tail[-2000:]}
        if p.returncode != 0:
            failed.append(name)
            result = {"error": p.stderr.strip()[-2000:], **result}
        (out_dir / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2)[:4000])
        print(f"   ({took:.0f} s, exit {p.returncode})", flush=True)
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

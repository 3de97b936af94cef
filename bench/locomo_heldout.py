"""The five LoCoMo conversations kept out of ../shared/bench/locomo-dev.json, in its format.

LoCoMo's own release (github.com/snap-research/locomo, data/locomo10.zip, unzipped) holds one
file per conversation in data/multimodal_dialog/locomo10_v2/N.json with the sessions, the
speakers and `qa`; its files for the five dev conversations equal the dev file's, question for
question (checked here). Writes the other five (conv-44, 47, 48, 49, 50) as a list of
{sample_id, conversation, qa} for `bench/locomo.py --data` and `bench/rank_pool.py --data`.
Usage: python bench/locomo_heldout.py FOLDER_OF_N_JSON OUT.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# ../shared beside the repository (a clone), or beside its worktrees' folder
DEV = next((p / "shared" / "bench" / "locomo-dev.json" for p in HERE.parents
            if (p / "shared" / "bench" / "locomo-dev.json").exists()), None)


def main() -> None:
    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    if DEV is None:
        raise SystemExit("no shared/bench/locomo-dev.json above this repository")
    dev = {x["sample_id"]: x for x in json.loads(DEV.read_text())}
    held = []
    for f in sorted(src.glob("*.json"), key=lambda p: int(p.stem)):
        d = json.loads(f.read_text())
        conv = {k: v for k, v in d.items() if k.startswith(("session_", "speaker_"))}
        item = {"sample_id": f"conv-{f.stem}", "conversation": conv, "qa": d["qa"]}
        if item["sample_id"] in dev:
            ref = dev[item["sample_id"]]
            assert ref["qa"] == item["qa"] and all(
                ref["conversation"][k] == conv[k] for k in ref["conversation"]), f
            continue
        held.append(item)
    out.write_text(json.dumps(held))
    print(f"{len(held)} conversations: {[x['sample_id'] for x in held]}")


if __name__ == "__main__":
    main()

"""db0's token counter for budgets: "db0-conservative-v1".

Agents count with tokenizers db0 cannot ship offline (tiktoken downloads its tables), so pack
counts with a fixed, documented rule meant to count at least as many tokens as GPT-style BPE
(cl100k, o200k) on ordinary text, so a pack that fits here fits there:

- a run of letters: one token per 4 letters (rounded up);
- a run of digits: one token per 3 digits (BPE splits numbers into groups of up to 3);
- each other visible ASCII character (punctuation, symbols): one token;
- each non-ASCII character: one token per UTF-8 byte (BPE's worst case);
- a line break: one token; a run of two or more spaces or tabs: one token; a single space
  between words: none (BPE merges it into the next word).

The count is exact under these rules (pack's output never exceeds the budget by them), and
additive over lines: count("a\\nb") == count("a") + 1 + count("b").
"""

from __future__ import annotations

import re

NAME = "db0-conservative-v1"

_PIECE = re.compile(r"[A-Za-z]+|[0-9]+|\n|[ \t]{2,}|[ \t]|[\x21-\x7e]|[^\x00-\x7f]|[\x00-\x1f\x7f]")


def count(text: str) -> int:
    n = 0
    for m in _PIECE.finditer(text):
        piece = m.group()
        c = piece[0]
        if c.isascii() and c.isalpha():
            n += (len(piece) + 3) // 4
        elif c.isdigit() and c.isascii():
            n += (len(piece) + 2) // 3
        elif piece in {" ", "\t"}:
            continue
        elif c.isascii():
            n += 1  # a line break, a run of blanks, a symbol, a control character
        else:
            n += len(piece.encode("utf-8"))
    return n

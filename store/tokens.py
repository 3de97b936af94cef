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

# Each match of _ONE is exactly one token under the rules above: a letter run of length n
# splits greedily into ceil(n / 4) matches of up to 4 letters, a digit run into ceil(n / 3);
# a single blank matches nothing. Non-ASCII characters are counted apart, by their bytes.
_ONE = re.compile(r"[A-Za-z]{1,4}|[0-9]{1,3}|[ \t]{2,}|[\x21-\x2f\x3a-\x40\x5b-\x60\x7b-\x7e]"
                  r"|[\x00-\x08\x0a-\x1f\x7f]")
_WIDE = re.compile(r"[^\x00-\x7f]")


def count(text: str) -> int:
    n = len(_ONE.findall(text))
    if not text.isascii():
        wide = len(_WIDE.findall(text))
        # the UTF-8 bytes of the non-ASCII characters: all bytes less one per ASCII character
        n += len(text.encode("utf-8", "surrogatepass")) - (len(text) - wide)
    return n

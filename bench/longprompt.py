"""Questions asked as long prompts: the question before or after a block of pasted material,
as a user pastes a log into a coding agent's prompt and asks about it (`--wrap` of
bench/agentmem.py and bench/locomo.py). The block is about 2,000 tokens of a made-up test
run's output, the same every time, about nothing the benchmarks' memories hold."""

from __future__ import annotations

WHERE = ("none", "before", "after")


def _block() -> str:
    lines = ["$ make check", "python -m pytest -q tests/ --maxfail=1 -p no:cacheprovider"]
    for i in range(1, 41):
        lines.append(f"tests/test_codec.py::test_roundtrip[frame-{i:02d}] PASSED "
                     f"[{i * 100 // 48:3d}%]")
    lines += [
        "tests/test_codec.py::test_truncated_header FAILED",
        "=================================== FAILURES ===================================",
        "__________________________ test_truncated_header ______________________________",
        "    def test_truncated_header():",
        "        raw = encode_frame(b'x' * 300)[:7]",
        ">       with pytest.raises(FrameError):",
        "E       Failed: DID NOT RAISE <class 'codec.FrameError'>",
        "tests/test_codec.py:88: Failed",
        "----------------------------- Captured stderr call -----------------------------",
    ]
    for i in range(24):
        crc = i * 2654435761 % 2**32
        lines.append(f"DEBUG codec.reader: chunk {i} offset={i * 4096} len=4096 crc=0x{crc:08x}")
    lines += ["=========================== short test summary info ============================",
              "FAILED tests/test_codec.py::test_truncated_header - Failed: DID NOT RAISE",
              "1 failed, 40 passed in 3.21s", "make: *** [Makefile:12: check] Error 1"]
    return "\n".join(lines)


PASTED = _block()


def wrap(question: str, where: str) -> str:
    """The question alone ("none"), after the block ("before": the block comes first) or
    before it ("after")."""
    if where == "before":
        return f"{PASTED}\n\n{question}"
    if where == "after":
        return f"{question}\n\n{PASTED}"
    return question

"""How a watched Markdown file splits into sections (daemon/watchparse.py on markdown-it-py):
front matter becomes metadata, setext headings start sections, MyST targets and HTML comments
are not text, code stays verbatim, and plain ATX files keep the anchors (memory keys) and
contents they always had. Fast: no daemon, no database."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from db0.daemon.services import watchparse as wp


def secs(text: str, rel: str = "n.md") -> dict[str, str]:
    out = wp.sections(rel, text)
    assert [a for a, _ in out] == list(dict(out)), "an anchor is given twice"
    return dict(out)


# -- plain ATX files: what they gave before markdown-it, byte for byte -----------------------

PLAIN = """intro line

# Project #
about it

## Setup
run make
```sh
# a comment, not a heading
make install
```

### Linux
apt install x

## Setup
second setup

  ## Indented title ##
three spaces or fewer is a heading

    # four spaces is code
####### seven is text
#hashtag is text
"""


def test_plain_atx_anchors_and_contents_are_unchanged() -> None:
    assert wp.sections("n.md", PLAIN) == [
        ("", "intro line"),
        ("Project", "# Project #\nabout it"),
        ("Project > Setup", "# Project #\n## Setup\nrun make\n```sh\n"
                            "# a comment, not a heading\nmake install\n```"),
        ("Project > Setup > Linux", "# Project #\n## Setup\n### Linux\napt install x"),
        ("Project > Setup [2]", "# Project #\n## Setup\nsecond setup"),
        ("Project > Indented title", "# Project #\n  ## Indented title ##\nthree spaces or "
         "fewer is a heading\n\n    # four spaces is code\n####### seven is text\n"
         "#hashtag is text"),
    ]
    assert wp.sections("n.md", PLAIN) == wp.parse("n.md", PLAIN).sections
    assert wp.parse("n.md", PLAIN).front_matter is None


def test_headings_in_lists_and_quotes_split_as_before() -> None:
    # A heading flush with a list item started a section before and still does; one in a
    # block quote never did.
    got = secs("- item\n  ## In list\n  text\n\n> # Quoted\n> words\n")
    assert list(got) == ["", "In list"]
    assert got["In list"] == "## In list\n  text\n\n> # Quoted\n> words"


def test_nested_headings_close_deeper_ones() -> None:
    got = secs("# A\na\n## B\nb\n### C\nc\n## D\nd\n# E\ne\n### F\nf\n")
    assert list(got) == ["A", "A > B", "A > B > C", "A > D", "E", "E > F"]
    assert got["A > D"] == "# A\n## D\nd"
    assert got["E > F"] == "# E\n### F\nf"


def test_repeated_trails_and_a_literal_numbered_heading() -> None:
    got = wp.sections("n.md", "# N\na\n# N [2]\nb\n# N\nc\n# N\nd\n")
    assert [a for a, _ in got] == ["N", "N [2]", "N [3]", "N [4]"]
    assert [c.split("\n")[1] for _, c in got] == ["a", "b", "c", "d"]


# -- front matter -----------------------------------------------------------------------------

def test_front_matter_is_metadata_not_text() -> None:
    text = ("---\ntitle: \"Deploy: how\"  \ntags: [ops, 'on call']\naliases:\n  - deploy\n"
            "  - ship it # a comment\ndraft:\nurl: https://x.test/a#b\n# a yaml comment\n"
            "---\n# Deploy\nsteps\n")
    p = wp.parse("n.md", text)
    assert p.front_matter == {"title": "Deploy: how", "tags": ["ops", "on call"],
                              "aliases": ["deploy", "ship it"], "draft": "",
                              "url": "https://x.test/a#b"}
    assert p.sections == [("Deploy", "# Deploy\nsteps")]


def test_front_matter_alone_leaves_no_untitled_section() -> None:
    assert wp.parse("n.md", "---\na: 1\n...\n\n# H\nbody\n").sections == [("H", "# H\nbody")]
    p = wp.parse("n.md", "---\na: 1\n---\n")
    assert p.sections == [] and p.front_matter == {"a": "1"}
    p = wp.parse("n.md", "---\n---\nplain words\n")
    assert p.sections == [("", "plain words")] and p.front_matter == {}


def test_complex_front_matter_is_kept_raw() -> None:
    raw = "title: x\nauthor:\n  name: Ann\n  mail: a@x.test\nabstract: |\n  two\n  lines"
    p = wp.parse("n.md", f"---\n{raw}\n---\ntext\n")
    assert p.front_matter == raw
    assert p.sections == [("", "text")]
    for value in ("{a: 1}", "&anchor x", "[a, [b]]", '"unclosed', "'a' b"):
        assert wp.parse("n.md", f"---\nk: {value}\n---\nt\n").front_matter == f"k: {value}"


def test_a_thematic_break_at_the_top_is_not_front_matter() -> None:
    # No closing line, or not a mapping: CommonMark's reading (a rule, then text) stands.
    p = wp.parse("n.md", "---\njust a rule above this\n\nmore\n")
    assert p.front_matter is None
    assert p.sections == [("", "---\njust a rule above this\n\nmore")]
    p = wp.parse("n.md", "---\n- a list\n---\n")
    assert p.front_matter is None
    assert "- a list" in p.sections[0][1]
    p = wp.parse("n.md", "\n---\na: 1\n---\n")  # not on the first line
    assert p.front_matter is None


def test_front_matter_only_in_markdown() -> None:
    p = wp.parse("n.txt", "---\na: 1\n---\n# not a heading\n")
    assert p.front_matter is None
    assert p.sections == [("", "---\na: 1\n---\n# not a heading")]


def test_section_hash_follows_the_front_matter() -> None:
    assert wp.section_hash("x", None) == wp.text_hash("x") == wp.section_hash("x", {})
    a = wp.section_hash("x", {"tags": ["a"]})
    assert a != wp.text_hash("x")
    assert a != wp.section_hash("x", {"tags": ["b"]})
    assert wp.section_hash("x", "raw: text") != wp.section_hash("x", "raw: other")


# -- setext headings --------------------------------------------------------------------------

def test_setext_headings_start_sections() -> None:
    got = secs("Title\n=====\nintro\n\nPart one\n--------\nfirst\n\n### Deeper\nd\n\n"
               "Part\ntwo\n---\nsecond\n")
    assert list(got) == ["Title", "Title > Part one", "Title > Part one > Deeper",
                         "Title > Part two"]
    # The content names the headings in their ATX form, one line each.
    assert got["Title > Part one > Deeper"] == "# Title\n## Part one\n### Deeper\nd"
    assert got["Title > Part two"] == "# Title\n## Part two\nsecond"
    assert got["Title"] == "# Title\nintro"


def test_a_rule_after_a_blank_line_is_not_a_heading() -> None:
    got = secs("# H\ntext\n\n---\n\nafter\n")
    assert got == {"H": "# H\ntext\n\n---\n\nafter"}


# -- MyST targets and HTML comments -------------------------------------------------------------

def test_myst_targets_are_dropped() -> None:
    got = secs("(top)=\n# Top\nintro\n\n(setup-label)=\n## Setup\nrun\n(para)=\nA paragraph.\n\n"
               "(under)=\nUnder\n-----\nu\n")
    assert list(got) == ["Top", "Top > Setup", "Top > Under"]
    assert got["Top"] == "# Top\nintro"
    assert got["Top > Setup"] == "# Top\n## Setup\nrun\nA paragraph."
    assert got["Top > Under"] == "# Top\n## Under\nu"
    assert "(" not in "".join(got.values())


def test_myst_targets_in_code_and_prose_stay() -> None:
    text = "# H\n```\n(kept)=\n```\n\n    (also-kept)=\n\nsee (not-a-target)= here\n"
    assert secs(text)["H"] == ("# H\n```\n(kept)=\n```\n\n    (also-kept)=\n\n"
                               "see (not-a-target)= here")


def test_html_comments_are_dropped() -> None:
    text = ("# H\nbefore\n\n<!-- a note to self -->\n\nafter <!-- inline --> words\n\n"
            "<!--\nmany\nlines\n-->\n\nend\n\n# Only a comment\n<!-- nothing else -->\n\n"
            "# Html\n<div>\n<!-- x --><b>kept</b>\n</div>\n")
    got = secs(text)
    assert got == {"H": "# H\nbefore\n\nafter words\n\nend",
                   "Html": "# Html\n<div>\n<b>kept</b>\n</div>"}


def test_comments_in_code_and_unclosed_comments_stay() -> None:
    text = ("# H\nsee `<!-- shown -->` here\n\n```html\n<!-- in a fence -->\n```\n\n"
            "~~~\n# tilde fence\n~~~\n\n<!-- never closed\nstill text\n")
    assert secs(text)["H"] == text.rstrip("\n")


# -- code, empty sections, odd files --------------------------------------------------------------

def test_hash_lines_inside_fences_are_not_headings() -> None:
    text = ("# Code\n````md\n```\n# inner heading\n```\n````\n\n~~~~\n## also inside\n~~~~\n"
            "# After\nx\n")
    got = secs(text)
    assert list(got) == ["Code", "After"]
    assert "# inner heading" in got["Code"] and "## also inside" in got["Code"]
    # A fence never closed runs to the end, as CommonMark reads it.
    assert list(secs("# A\n```\n# B\ntext\n")) == ["A"]


def test_empty_sections_are_left_out() -> None:
    got = secs("\n\n# A\n\n\n## B\nb\n## C\n   \n(t)=\n# D\n")
    assert got == {"A > B": "# A\n## B\nb"}


def test_heading_only_and_empty_files() -> None:
    assert wp.sections("n.md", "# Just a title\n") == []
    assert wp.sections("n.md", "Title\n=====\n") == []
    assert wp.sections("n.md", "") == []
    assert wp.sections("n.md", "\n  \n") == []


def test_crlf_and_cr_line_endings() -> None:
    lf = "---\ntags: [a]\n---\nTitle\n===\nbody\n\n<!-- c -->\n\n## Sub\n```\n# x\n```\n"
    want = wp.parse("n.md", lf)
    assert want.front_matter == {"tags": ["a"]}
    assert [a for a, _ in want.sections] == ["Title", "Title > Sub"]
    for eol in ("\r\n", "\r"):
        got = wp.parse("n.md", lf.replace("\n", eol))
        assert got == want


def test_a_long_section_is_cut_into_parts() -> None:
    line = "word " * 30
    text = "Long\n====\n" + "\n".join(line for _ in range(300)) + "\n"
    got = wp.sections("n.md", text)
    assert [a for a, _ in got][:2] == ["Long", "Long [part 2]"]
    for _a, content in got:
        assert content.startswith("# Long\n")
        assert len(content.encode()) <= wp.MAX_SECTION_BYTES


def test_many_headings_take_linear_time() -> None:
    def doc(n: int) -> str:
        return "".join(f"## Notes\n(t{i})=\nline {i} <!-- c -->\n```\n# x\n```\n"
                       f"Sub {i}\n---\ns\n" for i in range(n))

    def took(n: int) -> float:
        text = doc(n)
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            got = wp.sections("n.md", text)
            best = min(best, time.perf_counter() - t)
        assert len(got) == 2 * n
        assert got[-2][0] == f"Notes [{n}]"  # every repeat numbered, none skipped
        return best

    small, big = took(300), took(2400)
    assert big < 8 * small * 2.5, (small, big)  # linear: ~8x; quadratic would be ~64x


# -- reading: non-UTF-8 and BOMs as before ------------------------------------------------------

def test_non_utf8_is_skipped_and_a_bom_is_dropped(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.md"
    bad.write_bytes("---\ntitle: caf\xe9\n---\n# caf\xe9\n".encode("latin-1"))
    got = wp.read(str(bad), 1 << 20)
    at = len("---\ntitle: caf")
    assert isinstance(got, wp.Skip)
    assert got.reason.startswith(f"not UTF-8 (invalid byte at offset {at};")
    bom = tmp_path / "bom.md"
    bom.write_bytes("\ufeff---\ntitle: café\n---\n# Café\nx\n".encode())
    note = wp.read(str(bom), 1 << 20)
    assert isinstance(note, wp.Note)
    p = wp.parse("bom.md", note.text)
    assert p.front_matter == {"title": "café"} and p.sections == [("Café", "# Café\nx")]


@pytest.mark.parametrize("text", ["# \udcff\nx\n", "---\na: \udcff\n---\ny\n"])
def test_lone_surrogates_do_not_break_parsing(text: str) -> None:
    got = wp.parse("n.md", text)
    assert got.sections and wp.text_hash(got.sections[0][1])

"""The CLI round trip through a real daemon: the JSON contract, stdin, errors, exit codes."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

from conftest import DB0, Db0


def test_remember_recall_round_trip(db0: Db0) -> None:
    r = db0.json("remember", "The deploy key lives in the vault under ops/deploy")
    assert r["status"] == "stored" and len(r["id"]) == 26
    db0.run("remember", "Lunch is at noon on Fridays")
    res = db0.json("recall", "where is the deploy key", "-n", "5")
    assert res["results"], res
    top = res["results"][0]
    assert top["id"] == r["id"]
    for field in ("id", "content", "scope", "score", "created_at", "metadata", "tags"):
        assert field in top
    assert top["scope"] == "user"
    assert [x["score"] for x in res["results"]] == sorted(
        (x["score"] for x in res["results"]), reverse=True)


def test_recall_reads_its_query_from_stdin_and_a_long_one_by_its_ends(db0: Db0) -> None:
    """`db0 recall -` takes the query from stdin; a pasted log of thousands of words before
    the question still finds what the question asks for (searched by its two ends)."""
    mid = db0.json("remember", "The deploy key lives in the vault under ops/deploy")["id"]
    db0.run("remember", "Lunch is at noon on Fridays")
    assert db0.json("recall", "-", input="where is the deploy key")["results"][0]["id"] == mid
    log = "\n".join(f"step {i}: compiled module m{i} in {i % 7}.{i % 10}s, cache hit {i * 31}"
                    for i in range(800))
    res = db0.json("recall", "-", input=f"{log}\n\nwhere is the deploy key?")
    assert res["results"][0]["id"] == mid
    empty = db0.run("recall", "-", input=" \n", check=False)
    assert empty.code == 2 and "no query given" in empty.err


def test_plain_output_is_pipe_friendly(db0: Db0) -> None:
    mid = db0.run("remember", "grep me if you can").out.strip()
    out = db0.run("recall", "grep").out
    line = out.splitlines()[0]
    assert line.split("\t")[0] == mid and line.endswith("grep me if you can")


def test_a_command_that_skips_the_teardown_loses_no_output_and_keeps_its_code(
        db0: Db0, tmp_path: Path) -> None:
    """The common commands leave with os._exit (app.entry): a file or a pipe still gets
    every byte, written in several buffers, and the exit code is the command's own."""
    lines = "".join(json.dumps({"content": f"memory number {i} " + "x" * 200}) + "\n"
                    for i in range(300))
    db0.run("import", "-", input=lines)
    env = {k: v for k, v in db0.env.items() if k != "PYTHONUNBUFFERED"}  # buffered, as usual

    def run(*args: str, stdout: Any = subprocess.PIPE) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([DB0, *args], stdout=stdout, stderr=subprocess.PIPE, env=env,
                              timeout=120, check=False)

    out = tmp_path / "list.json"
    with out.open("wb") as fh:  # a file
        p = run("list", "-n", "300", "--json", stdout=fh)
    assert p.returncode == 0, p.stderr
    listed = json.loads(out.read_text())
    assert len(listed["memories"]) == 300 and out.stat().st_size > 64 * 1024
    piped = run("list", "-n", "300")
    assert piped.returncode == 0 and len(piped.stdout.splitlines()) == 300
    missing = run("show", "01nosuchmemory")
    assert missing.returncode == 4 and missing.stderr.startswith(b"db0: error:"), missing


def test_duplicate_is_reported_not_stored(db0: Db0) -> None:
    a = db0.json("remember", "same text twice")
    b = db0.json("remember", "same text twice")
    assert b == {**b, "id": a["id"], "status": "duplicate"}
    assert db0.json("stats")["memories"] == 1


def test_stdin_dash_and_piped(db0: Db0) -> None:
    a = db0.json("remember", "-", input="from stdin with a dash\n")
    b = db0.json("remember", input="piped without a dash")
    assert db0.json("show", a["id"])["content"] == "from stdin with a dash"
    assert db0.json("show", b["id"])["content"] == "piped without a dash"


def test_fts_syntax_in_user_text_is_safe(db0: Db0) -> None:
    mid = db0.json("remember", 'He said "quotes" matter in C++ AND near the OR gate')["id"]
    db0.run("remember", "an unrelated memory about gardening")
    res = db0.json("recall", 'C++ "quotes AND OR NEAR( *')
    assert res["results"] and res["results"][0]["id"] == mid
    for weird in ['"', "*", "NEAR(", "AND", "a:b", "(((", "-x", "^start"]:
        r = db0.run("recall", "--json", "--", weird, check=False)
        assert r.code == 0, (weird, r.err)


def test_keys_supersede_and_history(db0: Db0) -> None:
    v1 = db0.json("remember", "--key", "editor", "My editor is vim")["id"]
    v2 = db0.json("remember", "--key", "editor", "My editor is emacs")
    v3 = db0.json("remember", "--key", "editor", "My editor is helix")
    assert v2["superseded"] == v1 and v3["superseded"] == v2["id"]
    found = [r["content"] for r in db0.json("recall", "editor")["results"]]
    assert found == ["My editor is helix"]
    h = db0.json("history", v1)
    assert [v["id"] for v in h["versions"]] == [v1, v2["id"], v3["id"]]
    assert h["current"] == v3["id"]
    assert h["versions"][0]["superseded_by"] == v2["id"]
    assert {e["kind"] for e in h["versions"][0]["events"]} == {"remember", "supersede"}
    assert db0.json("history", v3["id"])["versions"] == h["versions"]


def test_forget_show_list(db0: Db0) -> None:
    mid = db0.json("remember", "-t", "a", "-t", "b", "-m", "n=3", "tagged memory")["id"]
    m = db0.json("show", mid[:10])
    assert m["tags"] == ["a", "b"] and m["metadata"] == {"n": 3}
    assert [x["id"] for x in db0.json("list")["memories"]] == [mid]
    assert db0.json("forget", mid)["status"] == "forgotten"
    assert db0.json("list")["memories"] == []
    assert db0.run("recall", "tagged", check=False).code == 1
    assert db0.json("show", mid)["forgotten_at"]


def test_recall_queries_many_over_one_connection(db0: Db0) -> None:
    db0.run("remember", "apples are red")
    db0.run("remember", "the sky is blue")
    lines = '{"query": "apples", "k": 1}\nsky colour\n\n'
    out = db0.run("recall", "--queries", "-", input=lines).out.splitlines()
    assert len(out) == 2
    first, second = (json.loads(x) for x in out)
    assert first["query"] == "apples" and len(first["results"]) == 1
    assert first["results"][0]["content"] == "apples are red"
    assert second["results"][0]["content"] == "the sky is blue"


def test_a_value_refused_is_told_where_it_came_from(db0: Db0) -> None:
    """The daemon's refusal of a value names the option that gave it, or the line of a
    --queries file that did (its key is the request's own), never the other."""
    r = db0.run("recall", "x", "-n", "0", check=False)
    assert r.code == 2
    assert r.err.startswith("db0: error: -n/--limit must be a whole number from 1 to ")
    assert "db0 recall --help" in r.err
    r = db0.run("recall", "--queries", "-", "-n", "3", check=False,
                input='sky colour\n{"query": "apples", "k": 0}\n')
    assert r.code == 2 and r.err.startswith("db0: error: line 2: k must be a whole number")
    assert "--limit" not in r.err
    r = db0.run("recall", "--queries", "-", "-n", "0", check=False, input="sky colour\n")
    assert r.code == 2 and r.err.startswith("db0: error: -n/--limit must be ")


def test_import_export_round_trip(db0: Db0, home: Path, tmp_path: Path) -> None:
    lines = [
        {"content": "first fact", "tags": ["x"], "created_at": "2023-05-08T13:56:00"},
        {"content": "second fact", "metadata": {"k": "v"}, "key": "k2"},
        {"content": "agent fact", "scope": "agent"},
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(x) + "\n" for x in lines))
    res = db0.json("import", str(src))
    assert res["stored"] == 3 and res["duplicate"] == 0
    exported = [json.loads(x) for x in db0.run("export").out.splitlines()]
    assert {e["content"] for e in exported} == {"first fact", "second fact", "agent fact"}
    first = next(e for e in exported if e["content"] == "first fact")
    assert first["created_at"] == "2023-05-08T13:56:00" and first["tags"] == ["x"]
    other = Db0(home / "other")
    try:
        out = "".join(json.dumps(e) + "\n" for e in exported)
        assert other.json("import", "-", input=out)["stored"] == 3
        again = [json.loads(x) for x in other.run("export").out.splitlines()]
        assert again == exported
        assert other.json("import", "-", input=out)["duplicate"] == 3
    finally:
        other.stop()


def test_import_bad_line_imports_nothing(db0: Db0) -> None:
    good = json.dumps({"content": "fine"})
    r = db0.run("import", "-", input=f"{good}\n{good}x\n{{not json\n", check=False)
    assert r.code == 1 and "line 2" in r.err and len(r.err.strip().splitlines()) == 1
    r = db0.run("import", "-", input=f"{good}\n" + json.dumps({"content": ""}) + "\n",
                check=False)
    assert r.code == 1 and "line 2" in r.err and "content is empty" in r.err
    r = db0.run("import", "-", input=json.dumps({"content": "x", "scope": "galaxy"}),
                check=False)
    assert r.code == 1 and "unknown scope" in r.err
    # A memory's limits are the same whatever the door: remember refuses what import does.
    from db0.store.memories import MAX_KEY_CHARS, MAX_TAG_CHARS

    for field, value, words in (("tags", ["t" * (MAX_TAG_CHARS + 1)], "a tag of"),
                                ("key", "k" * (MAX_KEY_CHARS + 1), "key is")):
        line = json.dumps({"content": "x", field: value})
        r = db0.run("import", "-", input=f"{good}\n{line}\n", check=False)
        assert r.code == 1 and "line 2" in r.err and words in r.err, r.err
        flag = "--tag" if field == "tags" else "--key"
        r = db0.run("remember", "x", flag, value[0] if field == "tags" else value, check=False)
        assert r.code in (1, 2) and f"at most {len(value[0] if field == 'tags' else value) - 1}"\
            in r.err, r.err
    for field, value in (("tags", ["t" * MAX_TAG_CHARS]), ("key", "k" * MAX_KEY_CHARS)):
        r = db0.run("import", "-", input=json.dumps({"content": f"at {field}'s limit",
                                                      field: value}), check=False)
        assert r.code == 0, r.err
        assert db0.run("forget", db0.json("list")["memories"][0]["id"], check=False).code == 0
    assert db0.json("stats")["memories"] == 0


def test_import_parses_lines_as_json_loads_does() -> None:
    """`db0 import` decodes each line without json.loads' per-call wrapper, with its result
    and its error for every line."""
    from db0.cli.commands import transfer
    from db0.daemon.protocol import Db0Error

    obj = json.dumps({"content": "a\u2028b \u00e9"})
    cases = [obj, f" \t{obj}\r", '{"a": 1} x', '{"a": 1}, {"b": 2}', "\u00a0{}", "{} \u00a0",
             '{"a": NaN}', "5", "[{}]", '{"a": 1}{"b": 2}', "{", '"{}"']
    for line in cases:
        try:
            want: object = json.loads(line)
        except ValueError as e:
            want = f"line 2 is not JSON ({e})"
        else:
            if not isinstance(want, dict):
                want = "line 2 is not a JSON object"
        try:
            lines = transfer._text_lines(f"{{}}\n{line}\n".encode(), "f")
            got: object = next(transfer._batches(lines, "f", 10))[1][1]
        except Db0Error as e:
            got = e.message.removeprefix("f: ")
        assert got == want, line


def test_bad_input_one_line_errors(db0: Db0) -> None:
    cases = [
        (("remember", "-"), b"   \n", 1, "content is empty"),
        (("remember", "-"), b"\xff\xfe bad", 1, "not valid UTF-8"),
        (("remember", "-"), b"x" * (64 * 1024 + 1), 1, "over the"),
        (("remember", "--scope", "galaxy", "hi"), None, 2, "'galaxy' is not one of"),
        (("remember", "--scope", "session", "hi"), None, 1, "needs a session id"),
        (("show", "01nosuchid0000000000000000"), None, 4, "no memory"),
        (("forget", "zzzzzzzz"), None, 4, "no memory"),
        (("recall", "x", "-n", "0"), None, 2, "-n/--limit must be"),
        (("remember", "--ttl", "soon", "x"), None, 1, "not a duration"),
    ]
    for args, data, code, text in cases:
        r = db0.run(*args, input=data, check=False)
        assert r.code == code, (args, r.code, r.err)
        assert text in r.err, (args, r.err)
        assert len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err, r.err
    assert db0.json("stats")["memories"] == 0


def test_usage_error_exit_2(db0: Db0) -> None:
    r = db0.run("recall", "x", "--no-such-flag", check=False)
    assert r.code == 2


def test_context_flags_env_and_config(db0: Db0, home: Path) -> None:
    db0.run("remember", "--user", "alice", "alice likes tea")
    db0.run("remember", "bob likes coffee", env={"DB0_USER": "bob"})
    assert [r["content"] for r in db0.json("recall", "likes", "--user", "alice")["results"]] \
        == ["alice likes tea"]
    assert [r["content"] for r in db0.json("recall", "likes", env={"DB0_USER": "bob"})[
        "results"]] == ["bob likes coffee"]
    # the flag beats the environment
    got = db0.json("recall", "likes", "--user", "alice", env={"DB0_USER": "bob"})["results"]
    assert [r["user"] for r in got] == ["alice"]
    (home / "config").mkdir(exist_ok=True)
    (home / "config" / "config.toml").write_text('[context]\nuser = "carol"\n')
    db0.run("daemon", "restart")
    assert db0.json("remember", "carol from config")["id"]
    assert db0.json("recall", "config")["results"][0]["user"] == "carol"


def test_stats_doctor_status(db0: Db0, home: Path) -> None:
    db0.run("remember", "one")
    st = db0.json("stats")
    assert st["memories"] == 1 and st["ops"] == 1 and st["by_scope"] == {"user": 1}
    assert (st["rows"], st["superseded"], st["forgotten"], st["expired"]) == (1, 0, 0, 0)
    db0.run("remember", "--key", "port", "staging port 8080")
    db0.run("remember", "--key", "port", "staging port 9090")  # supersedes the first
    db0.run("forget", db0.run("remember", "a note to forget").out.strip())
    st = db0.json("stats")
    assert st["memories"] == 2 and st["by_scope"] == {"user": 2}
    assert (st["rows"], st["superseded"], st["forgotten"], st["expired"]) == (4, 1, 1, 0)
    doc = db0.json("doctor")
    assert doc["ok"] and doc["daemon"]["fts5"] and doc["daemon"]["quick_check"] == "ok"
    assert doc["paths"]["database"] == str(home / "data" / "db0.sqlite3")
    status = db0.json("daemon", "status")
    assert status["running"] is True and status["version"] and status["pid"] > 0
    assert status["socket"] == str(home / "run" / "daemon.sock")
    db0.run("daemon", "stop")
    r = db0.run("daemon", "status", "--json", check=False)
    assert r.code == 3 and json.loads(r.out)["running"] is False
    with sqlite3.connect(home / "data" / "db0.sqlite3") as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert c.execute("PRAGMA application_id").fetchone()[0] == 0x64623030


def test_help_for_every_command(db0: Db0) -> None:
    top = db0.run("--help").out
    for cmd in ("remember", "recall", "show", "list", "forget", "history", "import", "export",
                "doctor", "stats", "daemon"):
        assert cmd in top
        assert db0.run(cmd, "--help").code == 0


def test_purge_erases_text_everywhere(db0: Db0, home: Path) -> None:
    mid = db0.json("remember", "my passport number is XK1234567")["id"]
    db0.run("remember", "an unrelated thing")
    r = db0.run("purge", mid, check=False)
    assert r.code == 2 and "--yes" in r.err  # no confirmation from a pipe: refused
    assert db0.json("purge", mid, "--yes")["status"] == "purged"
    assert db0.run("show", mid, check=False).code == 4
    db0.run("daemon", "stop")  # checkpoint the WAL into the file
    for f in (home / "data").glob("db0.sqlite3*"):
        assert b"XK1234567" not in f.read_bytes(), f
    assert "XK1234567" not in db0.run("export", "--all").out


def test_purge_erases_the_copies_capture_keeps(db0: Db0, home: Path) -> None:
    """A prompt a hook captured is a turn (and the facts extracted from it), and capture
    copies its text into the agent session's first and last prompt, and into the context
    later prompts are given; a request the daemon set aside holds it too: purging the
    memories that hold it leaves it in no file."""
    def prompt(text: str) -> str:
        return db0.run("hook", "prompt", "--agent", "claude-code", input=json.dumps(
            {"session_id": "s1", "prompt": text, "hook_event_name": "UserPromptSubmit",
             "cwd": str(home)})).out

    db0.run("daemon", "start")  # a hook never starts it (the event would be spooled)
    prompt("I prefer the staging database named zebrafalcon for all load tests")
    assert "zebrafalcon" in prompt("which staging database should the load tests use")
    held = [m["id"] for line in db0.run("export", "--everyone").out.splitlines()
            if "zebrafalcon" in (m := json.loads(line))["content"]]
    assert len(held) >= 1
    bad = home / "data" / "spool" / "bad"  # requests the daemon set aside keep their text
    bad.mkdir(parents=True, exist_ok=True)
    (bad / "1-held.json").write_text(json.dumps({"method": "hook.event", "params": {
        "data": {"prompt": "I prefer the staging database named zebrafalcon for all load "
                           "tests"}}}))
    (bad / "2-other.json").write_text(json.dumps({"method": "hook.event", "params": {
        "data": {"prompt": "an unrelated prompt about lunch"}}}))
    (bad / "3-torn.json").write_text('{"method": "hook.event", "params": {"data": {"prompt": '
                                     '"I prefer the staging database named zebrafalcon for '
                                     'all load tests", "cw')
    for mid in held:
        assert db0.json("purge", mid, "--yes")["status"] == "purged"
    assert sorted(p.name for p in bad.iterdir()) == ["2-other.json"]
    db0.run("daemon", "stop")  # checkpoint the WAL into the file
    for f in (home / "data").glob("db0.sqlite3*"):
        assert b"zebrafalcon" not in f.read_bytes(), f
    other = [json.loads(line)["content"]
             for line in db0.run("export", "--everyone").out.splitlines()]
    assert "which staging database should the load tests use" in other  # the rest is kept


def test_purge_erases_text_everywhere_in_a_store_that_merged_around_it(db0: Db0, home: Path
                                                                        ) -> None:
    """The same promise once FTS5 has merged segments and b-trees have split around the text:
    thousands of single writes before and after it, then purge, then the files."""
    from db0.daemon.client import Client
    from db0.daemon.paths import Paths

    db0.run("remember", "warm up")
    c = Client(Paths(home, home / "config", home / "data", home / "logs", home / "run"),
               autostart="never")
    try:
        for i in range(800):
            c.call("memory.remember", {"content": f"note {i} about things {i % 13}"})
        mid = c.call("memory.remember", {"content": "my passport number is QZ7654321"})["id"]
        for i in range(2000):
            c.call("memory.remember", {"content": f"later note {i} about stuff {i % 11}"})
    finally:
        c.close()
    assert db0.json("purge", mid, "--yes")["status"] == "purged"
    db0.run("daemon", "stop")  # checkpoint the WAL into the file
    for f in (home / "data").glob("db0.sqlite3*"):
        assert b"qz7654321" not in f.read_bytes().lower(), f


def test_ages_read_the_daemons_times_by_hand_as_datetime_would() -> None:
    import datetime as dt
    import random

    import pytest

    from db0.cli import output

    r = random.Random(7)
    for _ in range(5000):
        t = r.uniform(-1e9, 4e9)
        d = dt.datetime.fromtimestamp(t, dt.UTC).replace(microsecond=r.randrange(1000) * 1000)
        iso = d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"
        assert output._epoch(iso) == pytest.approx(d.timestamp(), abs=1e-6), iso
    assert output._epoch("2026-12-02T10:00:00+02:00") == dt.datetime(
        2026, 12, 2, 8, tzinfo=dt.UTC).timestamp()  # other forms: datetime
    assert output._epoch("2026-1x-02T10:00:00.000Z") is None  # not a number: no error
    assert output._epoch("yesterday") is None
    assert output.age("yesterday") == "yesterday"
    assert output.age(None) == ""

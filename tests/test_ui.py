"""`db0 ui` end to end: a real daemon with memories, a session its hooks captured and injected
into, the inspector it serves, and headless Chromium driving the page.

- The page: search, a fact's timeline, forget (gone from `db0 recall`), edit (a supersede in
  `db0 history`), a session's injections, an edit that lost a race (409: the current version
  and the typed text both shown), a daemon restarted under the page.
- The guard, without a browser: no token, a wrong one, another Origin, another Host (DNS
  rebinding), a change without an Origin: refused; the token never in the daemon's log; the
  port closed after the idle timeout and after the daemon stops.
- The API: the CLI's JSON shapes, clear errors for malformed or unknown input, two edits at
  once (one wins, the other is a 409 that keeps its text).

Screenshots of every browser test are written under the test's tmp dir; a failing test prints
where. The browser tests are skipped, saying why, only when Chromium or its driver is missing
(`apt-get install -y chromium chromium-driver`, `pip install selenium`).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from conftest import Db0, _wait_dead, daemon_pids

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


# -- a populated daemon, shared by the module ----------------------------------------------------

class Ui:
    """The running inspector of one home: its port and token, and HTTP helpers."""

    def __init__(self, db: Db0) -> None:
        self.db = db
        self.refresh()

    def refresh(self, *args: str) -> None:
        info = self.db.json("ui", "--no-open", *args)
        self.port: int = info["port"]
        self.token: str = info["token"]
        self.url: str = info["url"]

    def request(self, method: str, path: str, body: Any = None, *,
                headers: dict[str, str] | None = None, token: str | None = "",
                origin: str | None = "", host: str | None = None) -> tuple[int, Any]:
        """One HTTP request, by default as the page would send it."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        h = {"Host": host or f"127.0.0.1:{self.port}"}
        if token is not None:
            h["X-Db0-Token"] = token or self.token
        if origin is not None and method == "POST":
            h["Origin"] = origin or f"http://127.0.0.1:{self.port}"
        elif origin:
            h["Origin"] = origin
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        conn.request(method, path, body=data, headers=h)
        resp = conn.getresponse()
        raw = resp.read()
        conn.close()
        try:
            return resp.status, json.loads(raw)
        except ValueError:
            return resp.status, raw.decode("utf-8", "replace")

    def get(self, path: str, **kw: Any) -> Any:
        status, out = self.request("GET", path, **kw)
        assert status == 200, out
        return out

    def action(self, action: str, **params: Any) -> tuple[int, Any]:
        return self.request("POST", "/api/action", {"action": action, "params": params})


def _cc(event: str, session: str, cwd: str, **extra: Any) -> dict[str, Any]:
    return {"session_id": session, "transcript_path": "", "cwd": cwd, "hook_event_name": event,
            "permission_mode": "default", **extra}


def _populate(db: Db0, cwd: str) -> dict[str, Any]:
    ids: dict[str, Any] = {}
    for text, extra in [
        ("Alice prefers dark roast coffee from the corner shop", ["--tag", "coffee"]),
        ("The staging database is postgres 16 on port 5433", ["--key", "staging-db"]),
        ("Bob is allergic to peanuts", []),
        ("The kitchen light switch is broken again", []),
        ("Priya's favourite editor is helix", ["--tag", "tools"]),
    ]:
        ids[text] = db.run("remember", text, *extra).out.strip()
    db.run("remember", "--key", "deploy-day", "The deploy runs on Fridays")
    ids["deploy"] = db.run("remember", "--key", "deploy-day",
                           "The deploy runs on Thursdays").out.strip()
    agent_sid = str(uuid.uuid4())
    ids["agent_session"] = agent_sid
    for event, name, extra in [
        ("session-start", "SessionStart", {"source": "startup"}),
        ("prompt", "UserPromptSubmit",
         {"prompt": "Which port does the staging postgres database listen on?"}),
    ]:
        r = db.run("hook", event, "--agent", "claude-code",
                   input=json.dumps(_cc(name, agent_sid, cwd, **extra)))
        assert r.code == 0, r
    sessions = db.json("session", "list", "--all")["sessions"]
    ids["session"] = next(s["id"] for s in sessions if agent_sid[:20] in (s["label"] or ""))
    return ids


@pytest.fixture(scope="module")
def env() -> Iterator[tuple[Db0, Ui, dict[str, Any]]]:
    with tempfile.TemporaryDirectory(prefix="db0u", dir="/tmp") as tmp:
        db = Db0(Path(tmp))
        try:
            ids = _populate(db, str(Path(tmp) / "shop"))
            yield db, Ui(db), ids
        finally:
            db.stop()
            for pid in daemon_pids(Path(tmp)):
                os.kill(pid, signal.SIGTERM)
                _wait_dead(pid, 20)


def _recall_ids(db: Db0, query: str) -> list[str]:
    return [r["id"] for r in db.json("recall", query, "-n", "50")["results"]]


def _closed(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return True
    return False


def _wait(pred: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return pred()


# -- the store rules the inspector's edits rely on ------------------------------------------------

def test_an_edit_needs_the_current_version_and_a_pin_is_a_version(tmp_path: Path) -> None:
    from db0.store import write
    from db0.store.context import Context
    from db0.store.core import Store
    from db0.store.errors import StoreError

    s = Store.open(tmp_path / "db0.sqlite3")
    ctx = Context("u")

    def remember(item: dict[str, Any], **kw: Any) -> dict[str, Any]:
        with s.transaction():
            return write.remember(s, ctx, write.prepare(item), **kw)

    a = remember({"content": "the printer is on floor 2"})
    b = remember({"content": "the printer is on floor 3"}, supersedes=a["id"],
                 current_only=True)
    assert b["superseded"] == a["id"]
    with pytest.raises(StoreError) as lost:  # an edit of what is no longer current
        remember({"content": "the printer is on floor 4"}, supersedes=a["id"],
                 current_only=True)
    assert lost.value.code == "conflict" and b["id"] in lost.value.message
    # Without current_only, superseding an old version supersedes its chain's current one.
    c = remember({"content": "the printer moved to floor 5"}, supersedes=a["id"])
    assert c["superseded"] == b["id"]
    # The same text, pinned: a new version all the same; with nothing else new, a duplicate.
    pinned = remember({"content": "the printer moved to floor 5", "pinned": True},
                      supersedes=c["id"])
    assert pinned["status"] == "stored" and pinned["superseded"] == c["id"]
    again = remember({"content": "the printer moved to floor 5", "pinned": True},
                     supersedes=pinned["id"])
    assert again == {"id": pinned["id"], "status": "duplicate", "scope": "user"}
    plain = remember({"content": "the printer moved to floor 5", "pinned": False})
    assert plain["status"] == "duplicate"  # no supersedes: the same text is never stored twice
    s.close()


# -- the guard ------------------------------------------------------------------------------------

def test_refused_without_the_token_from_elsewhere_or_to_another_host(
        env: tuple[Db0, Ui, dict[str, Any]]) -> None:
    _db, ui, ids = env
    some = ids["Bob is allergic to peanuts"]
    assert ui.request("GET", "/api/memories", token=None)[0] == 401
    assert ui.request("GET", "/api/memories", token="not-the-token")[0] == 401
    assert ui.request("GET", f"/?token={ui.token}x", token=None)[0] == 401
    assert ui.request("GET", "/", token=None)[0] == 401
    # Another site's page, and a name that resolves to 127.0.0.1 (DNS rebinding).
    assert ui.request("GET", "/api/memories", origin="http://evil.example")[0] == 403
    for host in (f"evil.example:{ui.port}", f"localhost:{ui.port}", "127.0.0.1",
                 f"127.0.0.1:{ui.port + 1}"):
        assert ui.request("GET", "/api/memories", host=host)[0] == 403, host
        assert ui.request("GET", f"/?token={ui.token}", token=None, host=host)[0] == 403
    # A change needs the page's Origin as well as the token.
    forget = {"action": "forget", "params": {"id": some}}
    assert ui.request("POST", "/api/action", forget, origin=None)[0] == 403
    assert ui.request("POST", "/api/action", forget, origin="http://evil.example")[0] == 403
    assert ui.request("POST", "/api/action", forget, token=None)[0] == 401
    assert some in _recall_ids(_db, "peanuts")  # none of those forgot it
    # What is allowed: the page with its token, the API with the header.
    status, page = ui.request("GET", f"/?token={ui.token}", token=None)
    assert status == 200 and "<title>db0 ui</title>" in page
    for outside in ("src=", "https://", "@import", "url("):  # nothing loaded from elsewhere
        assert outside not in page, outside
    assert ui.get("/api/ping")["ok"] is True


def test_the_token_never_reaches_the_log(env: tuple[Db0, Ui, dict[str, Any]]) -> None:
    db, ui, _ids = env
    ui.request("GET", f"/?token={ui.token}", token=None)
    ui.request("GET", f"/?token={ui.token}", token=None, host="evil.example")
    ui.request("GET", f"/api/memories?token={ui.token}")
    ui.request("GET", "/api/nothing-here")
    db.run("daemon", "status")
    logs = list((db.home).rglob("*.log*"))
    assert logs, "the daemon wrote no log"
    text = "".join(p.read_text("utf-8", "replace") for p in logs)
    assert "ui: serving on 127.0.0.1" in text  # the log is the one the daemon writes
    assert ui.token not in text


def test_malformed_input_gets_a_clear_answer(env: tuple[Db0, Ui, dict[str, Any]]) -> None:
    _db, ui, _ids = env
    cases: list[tuple[str, str, Any, int]] = [
        ("GET", "/api/memories?limit=100000", None, 400),
        ("GET", "/api/memories?limit=ten", None, 400),
        ("GET", "/api/memories?scope=everything", None, 400),
        ("GET", "/api/memories?%zz=1&&&", None, 400),
        ("GET", "/api/memories?limit=5&limit=6", None, 400),
        ("GET", "/api/memories?wat=1", None, 400),
        ("GET", "/api/memory?id=0000000000nope", None, 404),
        ("GET", "/api/fact?key=no-such-key", None, 404),
        ("GET", "/api/fact?id=" + "x" * 5000, None, 400),
        ("GET", "/api/session?id=nope", None, 404),
        ("GET", "/api/sessions?before=garbage", None, 400),
        ("GET", "/api/nothing", None, 404),
        ("GET", "/etc/passwd", None, 404),
        ("POST", "/api/action", b"{not json", 400),
        ("POST", "/api/action", b"[" * 200_000 + b"]" * 200_000, 400),
        ("POST", "/api/action", {"action": "format-disk"}, 400),
        ("POST", "/api/action", {"action": "forget", "params": {"id": 5}}, 400),
        ("POST", "/api/preview", {"action": "forget", "params": {"id": "zzzzzzzz"}}, 404),
        ("POST", "/api/action", {"action": "edit", "params": {"id": "x", "bogus": 1}}, 400),
        ("DELETE", "/api/memories", None, 405),
    ]
    for method, path, body, want in cases:
        status, out = ui.request(method, path, body)
        assert status == want, (path, out)
        assert isinstance(out, dict) and out["error"]["message"], (path, out)
        assert "Traceback" not in json.dumps(out)
    # A body announced too large is refused before it is read.
    with socket.create_connection(("127.0.0.1", ui.port), timeout=10) as s:
        s.sendall((f"POST /api/action HTTP/1.0\r\nHost: 127.0.0.1:{ui.port}\r\n"
                   f"Origin: http://127.0.0.1:{ui.port}\r\nX-Db0-Token: {ui.token}\r\n"
                   f"Content-Type: application/json\r\nContent-Length: {3 << 20}\r\n\r\n"
                   ).encode() + b"{")
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 413") and b"over" in body


def test_api_answers_in_the_cli_shapes(env: tuple[Db0, Ui, dict[str, Any]]) -> None:
    db, ui, ids = env
    mid = ids["Priya's favourite editor is helix"]
    shown = db.json("show", mid)
    got = ui.get(f"/api/memory?id={mid}")
    assert {k: got[k] for k in shown} == shown
    assert got["source"] == {"source": "typed"}
    recalled = db.json("recall", "helix editor")["results"]
    page = ui.get("/api/memories?q=helix+editor")
    assert [m["id"] for m in page["memories"]] == [r["id"] for r in recalled]
    shown_parts, recalled_parts = page["memories"][0]["score_parts"], recalled[0]["score_parts"]
    # recency decays between the two asks (by about 3e-7 a second), so it is compared near
    assert shown_parts.pop("recency") == pytest.approx(recalled_parts.pop("recency"), abs=1e-4)
    assert shown_parts == recalled_parts
    hist = db.json("history", ids["deploy"])
    fact = ui.get("/api/fact?key=deploy-day")
    assert [v["id"] for v in fact["versions"]] == [v["id"] for v in hist["versions"]]
    assert all(e["who"].startswith("typed") for e in fact["versions"][0]["events"][:1])
    # As of a time before the second version, the first was the live one.
    first, second = fact["versions"]
    between = first["created_at"]
    asof = ui.get(f"/api/fact?key=deploy-day&as_of={between}")
    assert asof["current_at"] == first["id"] != second["id"]
    # Keyset pages: every live memory once, newest first, in pages of two.
    seen: list[str] = []
    before = ""
    while True:
        page = ui.get(f"/api/memories?limit=2{before}")
        seen += [m["id"] for m in page["memories"]]
        if page["next"] is None:
            break
        before = f"&before={page['next']}"
    listed = [m["id"] for m in db.json("list", "--limit", "1000")["memories"]]
    assert set(listed) <= set(seen) and len(seen) == len(set(seen))
    tagged = ui.get("/api/memories?tag=coffee")["memories"]
    assert [m["id"] for m in tagged] == [ids["Alice prefers dark roast coffee from the corner "
                                             "shop"]]
    captured = ui.get("/api/memories?source=capture&state=all")["memories"]
    assert captured and all(m["source"]["source"] == "capture" for m in captured)
    assert all(m["source"]["agent"] == "claude-code" for m in captured)


def test_two_edits_at_once_one_wins_the_other_keeps_its_text(
        env: tuple[Db0, Ui, dict[str, Any]]) -> None:
    db, ui, ids = env
    mid = ids["The kitchen light switch is broken again"]
    texts = ["The kitchen light switch was fixed on Monday",
             "The kitchen light switch needs a new relay"]
    answers: list[tuple[int, Any]] = []
    gate = threading.Barrier(2)

    def edit(text: str) -> None:
        gate.wait()
        answers.append(ui.action("edit", id=mid, content=text))

    threads = [threading.Thread(target=edit, args=(t,)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(s for s, _ in answers) == [200, 409], answers
    won = next(a for s, a in answers if s == 200)
    lost = next(a for s, a in answers if s == 409)
    assert lost["error"]["code"] == "conflict"
    assert lost["current"]["id"] == won["id"]  # told what is current now
    assert lost["current"]["content"] in texts
    assert lost["yours"]["params"]["content"] in texts  # ... and given its own text back
    assert lost["yours"]["params"]["content"] != lost["current"]["content"]
    hist = db.json("history", mid)
    assert len(hist["versions"]) == 2 and hist["current"] == won["id"]
    # Pinning keeps the text: a new version all the same, and unpinning undoes it.
    status, pinned = ui.action("pin", id=won["id"])
    assert status == 200 and pinned["status"] == "stored", pinned
    assert db.json("show", pinned["id"])["pinned"] is True
    status, undone = ui.action(pinned["undo"]["action"], **pinned["undo"]["params"])
    assert status == 200 and db.json("show", undone["id"])["pinned"] is False
    assert len(db.json("history", mid)["versions"]) == 4


def test_actions_preview_before_they_change(env: tuple[Db0, Ui, dict[str, Any]]) -> None:
    db, ui, ids = env
    status, pv = ui.request("POST", "/api/preview",
                            {"action": "end_session", "params": {"id": ids["session"]}})
    assert status == 200 and "live session memories expire" in pv["summary"]
    assert "Not undoable" in pv["undo"]
    assert not db.json("session", "list", "--all")["sessions"][0]["ended_at"]
    status, pv = ui.request("POST", "/api/preview",
                            {"action": "forget", "params": {"id": ids["deploy"]}})
    assert status == 200 and "CLI has no command" in pv["undo"]
    assert ids["deploy"] in _recall_ids(db, "deploy Thursdays")


def test_restore_end_and_as_of_through_the_api(env: tuple[Db0, Ui, dict[str, Any]]) -> None:
    db, ui, _ids = env
    sid = db.json("session", "start", "--label", "ui restore")["id"]
    kept = db.run("remember", "--scope", "session", "--session", sid,
                  "the plan is to migrate on Monday").out.strip()
    cp = db.json("checkpoint", "create", "--session", sid, "--label", "before")["id"]
    late = db.run("remember", "--scope", "session", "--session", sid,
                  "actually, migrate on Tuesday").out.strip()
    status, pv = ui.request("POST", "/api/preview", {"action": "restore", "params": {"id": cp}})
    assert status == 200, pv
    assert [(c["id"], c["will"]) for c in pv["changes"]] == [(late, "rollback")]
    assert db.json("show", late)["forgotten_at"] is None  # a preview changes nothing
    status, out = ui.action("restore", id=cp)
    assert status == 200 and out["rolled_back"] == 1
    assert db.json("show", late)["forgotten_at"] and not db.json("show", kept)["forgotten_at"]
    detail = ui.get(f"/api/session?id={sid}")
    assert [c["id"] for c in detail["checkpoints"]] == [cp]
    assert detail["tree"]["checkpoints"][0]["id"] == cp
    task = db.json("task", "start", "--session", sid, "--label", "ui task")["id"]
    status, out = ui.action("end_task", id=task)
    assert status == 200 and out["ended_at"]
    status, out = ui.action("end_session", id=sid)
    assert status == 200 and out["ended_at"]
    assert ui.get(f"/api/session?id={sid}")["session"]["ended_at"]
    # As of a time between the two versions of a key, the first is the live one.
    first, second = ui.get("/api/fact?key=deploy-day")["versions"]
    at = (datetime.fromisoformat(first["created_at"]) + timedelta(milliseconds=1)).isoformat()
    then = ui.get(f"/api/memories?{urlencode({'as_of': at, 'limit': 200})}")["memories"]
    assert first["id"] in [m["id"] for m in then]
    assert second["id"] not in [m["id"] for m in then]
    now = ui.get("/api/memories?limit=200")["memories"]
    assert second["id"] in [m["id"] for m in now] and first["id"] not in [m["id"] for m in now]
    assert ui.request("GET", "/api/memories?as_of=yesterday")[0] == 400


# -- the port's lifetime --------------------------------------------------------------------------

def test_port_closes_after_idle_and_when_the_daemon_stops(db0: Db0) -> None:
    db0.run("remember", "something to look at")
    ui = Ui(db0)
    ui.refresh("--idle-timeout", "1")
    assert ui.get("/api/ping")["idle_timeout_s"] == 1
    # Pings from an open page do not keep it open.
    t0 = time.monotonic()
    while time.monotonic() - t0 < 2.5:
        try:
            assert ui.request("GET", "/api/ping")[0] == 200
        except OSError:
            break  # closed
        time.sleep(0.3)
    assert _wait(lambda: _closed(ui.port), 5), "the port stayed open past the idle timeout"
    assert db0.json("daemon", "status")["ui"] == {"serving": False}
    ui.refresh()  # a new launch: a new token, the same port when it is free
    assert ui.get("/api/ping")["ok"]
    pid = db0.daemon_pid()
    db0.stop()
    assert pid and _wait_dead(pid)
    assert _closed(ui.port)


# -- the page in headless Chromium ---------------------------------------------------------------

@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not CHROMIUM or not CHROMEDRIVER:
        pytest.skip("Chromium is not installed (apt-get install -y chromium chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install selenium)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--no-first-run",
                 "--disable-component-update", "--window-size=1280,1000",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def shots(browser: Any, tmp_path: Path, request: pytest.FixtureRequest
          ) -> Iterator[Callable[[str], Path]]:
    """Save a screenshot under the test's tmp dir (copied to $DB0_UI_SHOTS when set); a test
    saves one at each step, and `failing_shot` one at a failure, printing where."""
    folder = tmp_path / "screenshots"
    folder.mkdir()

    def shot(name: str) -> Path:
        p = folder / f"{request.node.name}-{name}.png"
        browser.save_screenshot(str(p))
        keep = os.environ.get("DB0_UI_SHOTS")
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(p, Path(keep) / p.name)
        return p

    yield shot


@contextmanager
def failing_shot(shot: Callable[[str], Path], name: str) -> Iterator[None]:
    try:
        yield
    except BaseException:
        p = shot(f"failed-{name}")
        print(f"\nscreenshot at the failure: {p}")
        raise


def _wait_css(driver: Any, css: str, timeout: float = 20) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, css)))


def _until(driver: Any, pred: Callable[[Any], Any], timeout: float = 20) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(pred)


def _card(driver: Any, text: str) -> Any:
    from selenium.webdriver.common.by import By

    def find(d: Any) -> Any:
        for c in d.find_elements(By.CSS_SELECTOR, ".card.memory"):
            if text in c.text:
                return c
        return False

    return _until(driver, find)


def test_page_search_and_timeline(env: tuple[Db0, Ui, dict[str, Any]], browser: Any,
                                  shots: Callable[[str], Path]) -> None:
    from selenium.webdriver.common.by import By

    _db, ui, _ids = env
    with failing_shot(shots, "search"):
        browser.get(ui.url)
        _wait_css(browser, ".card.memory")
        assert "db0 ui" in browser.title
        box = browser.find_element(By.ID, "q")
        box.send_keys("staging postgres port")
        browser.find_element(By.ID, "go").click()
        card = _card(browser, "postgres 16 on port 5433")
        assert card.find_elements(By.CSS_SELECTOR, ".bars .bar"), "no score bars"
        assert "#/memories?q=staging" in browser.current_url
        shots("search")
        card.find_element(By.CSS_SELECTOR, ".timeline-btn").click()
        _wait_css(browser, "#timeline .version")
        versions = browser.find_elements(By.CSS_SELECTOR, "#timeline .version")
        assert len(versions) == 1 and "postgres 16" in versions[0].text
        assert "typed" in versions[0].text and "this device" in versions[0].text
        browser.get(ui.url + "#/fact?key=deploy-day")
        _until(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#timeline .version"))
               == 2)
        text = browser.find_element(By.ID, "timeline").text
        assert text.index("Fridays") < text.index("Thursdays")
        assert "superseded" in text and "same key" in text
        shots("timeline")


def test_page_forget_leaves_recall(env: tuple[Db0, Ui, dict[str, Any]], browser: Any,
                                   shots: Callable[[str], Path]) -> None:
    from selenium.webdriver.common.by import By

    db, ui, ids = env
    mid = ids["Bob is allergic to peanuts"]
    assert mid in _recall_ids(db, "peanuts allergy")
    with failing_shot(shots, "forget"):
        browser.get(ui.url + "#/memories?q=peanuts")
        card = _card(browser, "allergic to peanuts")
        card.find_element(By.CSS_SELECTOR, ".forget-btn").click()
        summary = _wait_css(browser, "#preview-summary")
        assert "leaves recall" in summary.text
        assert "CLI has no command" in browser.find_element(By.ID, "dialog").text
        shots("forget-preview")
        browser.find_element(By.ID, "confirm").click()
        _until(browser, lambda d: not d.find_element(By.ID, "dialog").is_displayed())
        _until(browser, lambda d: "allergic to peanuts" not in d.find_element(
            By.ID, "results").text)
    assert mid not in _recall_ids(db, "peanuts allergy")
    assert db.json("show", mid)["forgotten_at"]


def test_page_edit_is_a_supersede_in_history(env: tuple[Db0, Ui, dict[str, Any]],
                                             browser: Any, shots: Callable[[str], Path]
                                             ) -> None:
    from selenium.webdriver.common.by import By

    db, ui, ids = env
    mid = ids["Alice prefers dark roast coffee from the corner shop"]
    with failing_shot(shots, "edit"):
        browser.get(ui.url + "#/memories?tag=coffee")
        card = _card(browser, "dark roast")
        card.find_element(By.CSS_SELECTOR, ".edit-btn").click()
        area = _wait_css(browser, "#edit-content")
        area.clear()
        area.send_keys("Alice switched to green tea")
        browser.find_element(By.ID, "edit-preview").click()
        _until(browser, lambda d: "supersedes" in d.find_element(By.ID, "preview-summary").text)
        shots("edit-preview")
        browser.find_element(By.ID, "confirm").click()
        _until(browser, lambda d: "stored" in d.find_element(By.ID, "toast").text)
    hist = db.json("history", mid)
    assert [v["content"] for v in hist["versions"]] == [
        "Alice prefers dark roast coffee from the corner shop", "Alice switched to green tea"]
    old, new = hist["versions"]
    assert old["superseded_by"] == new["id"] == hist["current"]
    assert old["reason"] == "edited in db0 ui"
    assert new["tags"] == ["coffee"]  # what the edit did not touch is kept


def test_page_conflict_keeps_what_was_typed(env: tuple[Db0, Ui, dict[str, Any]],
                                            browser: Any, shots: Callable[[str], Path]) -> None:
    from selenium.webdriver.common.by import By

    db, ui, _ids = env
    mid = db.run("remember", "The office wifi password rotates weekly").out.strip()
    with failing_shot(shots, "conflict"):
        browser.get(ui.url + "#/memories?q=office+wifi")
        card = _card(browser, "wifi password rotates weekly")
        card.find_element(By.CSS_SELECTOR, ".edit-btn").click()
        area = _wait_css(browser, "#edit-content")
        area.clear()
        area.send_keys("The office wifi password rotates monthly now")
        browser.find_element(By.ID, "edit-preview").click()
        _wait_css(browser, "#confirm")
        # Meanwhile, someone else edits the same fact.
        status, _other = ui.action("edit", id=mid, content="The wifi moved to a guest network")
        assert status == 200
        browser.find_element(By.ID, "confirm").click()
        yours = _wait_css(browser, "#yours")
        assert yours.get_attribute("value") == "The office wifi password rotates monthly now"
        assert "guest network" in browser.find_element(By.ID, "current").text
        shots("conflict")
        browser.find_element(By.ID, "reapply").click()
        _until(browser, lambda d: "supersedes" in d.find_element(By.ID, "preview-summary").text)
        browser.find_element(By.ID, "confirm").click()
        _until(browser, lambda d: "stored" in d.find_element(By.ID, "toast").text)
    hist = db.json("history", mid)
    assert [v["content"] for v in hist["versions"]][-2:] == [
        "The wifi moved to a guest network", "The office wifi password rotates monthly now"]


def test_page_session_shows_what_was_injected(env: tuple[Db0, Ui, dict[str, Any]],
                                              browser: Any, shots: Callable[[str], Path]
                                              ) -> None:
    from selenium.webdriver.common.by import By

    _db, ui, ids = env
    with failing_shot(shots, "session"):
        browser.get(ui.url + "#/sessions")
        _wait_css(browser, ".card.session a")
        links = [a for a in browser.find_elements(By.CSS_SELECTOR, ".card.session a")
                 if ids["agent_session"][:20] in a.text]
        assert links, browser.find_element(By.ID, "sessions").text
        links[0].click()
        inject = _wait_css(browser, ".inject")
        text = browser.find_element(By.ID, "turns").text
        assert "db0 injected at" in text and "tokens" in text
        assert "postgres 16 on port 5433" in text  # the memory the prompt was given
        assert "Which port does the staging postgres database listen on?" in text
        assert inject.find_elements(By.CSS_SELECTOR, "li a")
        assert "Branches and checkpoints" in browser.find_element(By.ID, "main").text
        shots("session")


def test_page_health(env: tuple[Db0, Ui, dict[str, Any]], browser: Any,
                     shots: Callable[[str], Path]) -> None:
    from selenium.webdriver.common.by import By

    _db, ui, _ids = env
    with failing_shot(shots, "health"):
        browser.get(ui.url + "#/health")
        _until(browser, lambda d: "Watched folders" in d.find_element(By.ID, "main").text)
        text = browser.find_element(By.ID, "main").text
        for part in ("Doctor", "Store", "Embeddings", "Sync", "Hooks", "schema version"):
            assert part in text
        assert "Traceback" not in text
        shots("health")


def test_page_errors_are_messages(env: tuple[Db0, Ui, dict[str, Any]], browser: Any,
                                  shots: Callable[[str], Path]) -> None:
    from selenium.webdriver.common.by import By

    _db, ui, _ids = env
    with failing_shot(shots, "errors"):
        for where, says in [("#/fact?id=zzzzzzzz0000", "no memory with id"),
                            ("#/session?id=nope", "no session nope"),
                            ("#/fact?key=" + "k" * 600, "at most 500 characters"),
                            ("#/nowhere", "no such view")]:
            browser.get(ui.url + where)
            box = _wait_css(browser, ".error")
            assert says in box.text, (where, box.text)
            assert "Traceback" not in browser.find_element(By.ID, "main").text
        shots("error")


def test_page_tells_of_a_restarted_daemon(browser: Any, shots: Callable[[str], Path],
                                          db0: Db0) -> None:
    from selenium.webdriver.common.by import By

    db0.run("remember", "a memory to show")
    ui = Ui(db0)
    with failing_shot(shots, "restart"):
        browser.get(ui.url)
        _card(browser, "a memory to show")
        db0.stop()
        _until(browser, lambda d: "not answering" in d.find_element(By.ID, "banner").text)
        shots("daemon-down")
        old = ui.port
        ui.refresh("--port", str(old))  # starts the daemon again, on the page's port
        _until(browser, lambda d: "earlier launch" in d.find_element(By.ID, "banner").text)
        shots("stale-key")
        browser.get(ui.url)  # the new address: works again
        _card(browser, "a memory to show")
        assert not browser.find_element(By.ID, "banner").is_displayed()


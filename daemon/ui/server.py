"""The inspector's HTTP server: a runtime component that listens only when asked (`ui.start`).

- It binds 127.0.0.1 alone, on the port asked for, else the one it had last time (kept in the
  runtime directory, so a page left open finds it again after a restart), else a free one.
- Each launch makes a new secret token; the page and the API need it (`guard.py`).
- It closes after `[ui] idle_timeout` without requests (a page's background pings do not
  count), when asked (`ui.stop`), and when the daemon stops.
- Requests are served on their own threads (stdlib `ThreadingHTTPServer`), one per
  connection, HTTP/1.0 (no idle keep-alive connection holds a thread). Nothing is logged per
  request: request lines carry the token.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import json
import logging
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from db0.daemon.core.config import Config
from db0.daemon.core.runtime import Component, Runtime
from db0.daemon.protocol import Db0Error
from db0.daemon.ui import guard
from db0.daemon.ui.api import Api, error_body

log = logging.getLogger("db0.daemon")
MAX_BODY = 2 * 1024 * 1024 + 4096  # an edit of a memory at its largest, and the JSON around it
PORT_FILE = "ui.port"
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def _page(nonce: str) -> bytes:
    """index.html with app.css and app.js inlined under a per-response nonce (one request,
    one token check, and a CSP that runs nothing else)."""
    static = importlib.resources.files("db0.daemon.ui") / "static"
    html = (static / "index.html").read_text("utf-8")
    css = (static / "app.css").read_text("utf-8")
    js = (static / "app.js").read_text("utf-8")
    return (html.replace("{{nonce}}", nonce).replace("/*{{style}}*/", css)
            .replace("/*{{script}}*/", js).encode("utf-8"))


class _Httpd(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True  # the remembered port, again after a restart (TIME_WAIT)
    request_queue_size = 64

    def __init__(self, port: int, ui: UiServer) -> None:
        self.ui = ui
        super().__init__(("127.0.0.1", port), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server_version = "db0-ui"
    sys_version = ""
    protocol_version = "HTTP/1.0"
    timeout = 15  # a client that stops sending mid-request is dropped
    server: _Httpd

    def do_GET(self) -> None:
        self.server.ui.serve(self, "GET")

    def do_POST(self) -> None:
        self.server.ui.serve(self, "POST")

    def _refuse_method(self) -> None:
        self.server.ui.send_json(self, 405, error_body(Db0Error(
            "bad_request", f"{self.command} is not served here", "use GET or POST")),
            {"Allow": "GET, POST"})

    do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _refuse_method

    def log_message(self, format: str, *args: Any) -> None:
        """Nothing: a request line holds the page's token."""

    def log_error(self, format: str, *args: Any) -> None:
        """Nothing either (malformed requests are answered, not logged)."""


class UiServer(Component):
    name = "ui"
    interval = None  # the worker only checks the idle timeout while a server is open

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        self._lock = threading.Lock()
        self._httpd: _Httpd | None = None
        self._serving: threading.Thread | None = None
        self.token = ""
        self.port = 0
        self.idle_timeout = Config().ui.idle_timeout
        self._idle_asked: float | None = None  # a launch's own idle timeout (ui.start)
        self.last_request = 0.0
        self.api = Api(rt, self)

    # -- lifetime ---------------------------------------------------------------------------

    def apply_config(self, cfg: Config) -> None:
        if self._idle_asked is None:
            self.idle_timeout = cfg.ui.idle_timeout
            self.wake()

    @property
    def serving(self) -> bool:
        return self._httpd is not None

    def open(self, port: int | None = None, idle_timeout: float | None = None
             ) -> dict[str, Any]:
        """Serve the inspector (or keep serving it): its address, port and token."""
        with self._lock:
            if self._httpd is not None and port not in (None, self.port):
                self._close_locked("asked for another port")
            reused = self._httpd is not None
            if idle_timeout is not None:
                self._idle_asked = idle_timeout
                self.idle_timeout = idle_timeout
            if self._httpd is None:
                self._httpd = self._bind(port)
                self.port = self._httpd.server_address[1]
                self.token = secrets.token_urlsafe(32)
                self._serving = threading.Thread(target=self._httpd.serve_forever,
                                                 kwargs={"poll_interval": 0.2},
                                                 name="db0-ui-http", daemon=True)
                self._serving.start()
                self._remember_port()
                log.info("ui: serving on 127.0.0.1:%d", self.port)
            self.last_request = time.monotonic()
            self.interval = max(0.05, min(1.0, self.idle_timeout / 4))
        self.wake()
        return {"url": f"http://127.0.0.1:{self.port}/?token={self.token}", "port": self.port,
                "token": self.token, "idle_timeout_s": self.idle_timeout, "reused": reused}

    def _bind(self, port: int | None) -> _Httpd:
        if port is not None:
            try:
                return _Httpd(port, self)
            except OSError as e:
                raise Db0Error("unavailable", f"cannot listen on 127.0.0.1:{port}: "
                               f"{e.strerror}", "pick another port, or leave --port out") from None
        last = self._last_port()
        if last:
            with contextlib.suppress(OSError):
                return _Httpd(last, self)
        return _Httpd(0, self)

    def _last_port(self) -> int | None:
        try:
            n = int((self.rt.paths.runtime_dir / PORT_FILE).read_text().strip())
        except (OSError, ValueError):
            return None
        return n if 1024 <= n <= 65535 else None

    def _remember_port(self) -> None:
        with contextlib.suppress(OSError):
            (self.rt.paths.runtime_dir / PORT_FILE).write_text(f"{self.port}\n")

    def close(self, why: str) -> bool:
        with self._lock:
            return self._close_locked(why)

    def _close_locked(self, why: str) -> bool:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return False
        httpd.shutdown()  # returns once serve_forever has stopped
        httpd.server_close()
        if self._serving is not None:
            self._serving.join(5)
        self.token = ""
        self._idle_asked = None
        self.idle_timeout = self.rt.config.ui.idle_timeout
        self.interval = None
        log.info("ui: closed 127.0.0.1:%d (%s)", self.port, why)
        return True

    def idle_left(self) -> float:
        return max(0.0, self.idle_timeout - (time.monotonic() - self.last_request))

    def tick(self) -> None:
        if self._httpd is not None and self.idle_left() <= 0:
            self.close(f"no requests for {self.idle_timeout:g}s")

    def on_stop(self) -> None:
        self.close("the daemon stops")

    def status(self) -> dict[str, Any]:
        if self._httpd is None:
            return {"serving": False}
        return {"serving": True, "port": self.port, "idle_timeout_s": self.idle_timeout,
                "idle_closes_in_s": round(self.idle_left(), 1)}

    # -- requests ---------------------------------------------------------------------------

    def serve(self, h: _Handler, method: str) -> None:
        try:
            self._serve(h, method)
        except (ConnectionError, TimeoutError):
            pass  # the browser went away
        except Exception:
            log.exception("ui: a request failed")
            with contextlib.suppress(Exception):
                self.send_json(h, 500, error_body(Db0Error(
                    "internal", "the inspector failed to answer",
                    f"see the daemon log: {self.rt.paths.log_file}")))

    def _serve(self, h: _Handler, method: str) -> None:
        token = self.token
        if not token:
            self.send_json(h, 503, error_body(Db0Error("unavailable", "the inspector closed",
                                                       "run db0 ui again")))
            return
        parts = urlsplit(h.path)
        path, query = parts.path, parts.query
        page = method == "GET" and path == "/"
        given = h.headers.get(guard.TOKEN_HEADER)
        if page:
            try:
                given = dict(parse_qsl(query)).get("token")
            except ValueError:
                given = None
        refused = guard.check(h.headers, port=self.port, token=token, given_token=given,
                              writes=method == "POST")
        if refused is not None:
            log.warning("ui: refused a request (%s)", refused.code)
            if page:
                self.send_html(h, refused.status, _refusal_page(refused))
            else:
                self.send_json(h, refused.status, error_body(
                    Db0Error(refused.code, refused.message, refused.hint)))
            return
        if path != "/api/ping":
            self.last_request = time.monotonic()
        if page:
            nonce = secrets.token_urlsafe(16)
            csp = (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
                   "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
                   "frame-ancestors 'none'")
            self.send_html(h, 200, _page(nonce), {"Content-Security-Policy": csp})
            return
        if not path.startswith("/api/"):
            self.send_json(h, 404, error_body(Db0Error("not_found", "nothing is served there",
                                                       "open the page: /?token=...")))
            return
        body = None
        if method == "POST":
            body = self._body(h)
            if body is None:
                return
        started = time.perf_counter()
        status, out = self.api.handle(method, path, query, body)
        self.send_json(h, status, out, started=started)

    def _body(self, h: _Handler) -> bytes | None:
        ctype = (h.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            self.send_json(h, 415, error_body(Db0Error(
                "bad_request", "a change is sent as JSON", "Content-Type: application/json")))
            return None
        try:
            n = int(h.headers.get("Content-Length") or "")
        except ValueError:
            n = -1
        if n < 0:
            self.send_json(h, 411, error_body(Db0Error("bad_request", "no Content-Length",
                                                       "send the body's length")))
            return None
        if n > MAX_BODY:
            self.send_json(h, 413, error_body(Db0Error(
                "too_large", f"the body is over {MAX_BODY} bytes", "send less at once")))
            return None
        return h.rfile.read(n)

    def send_json(self, h: _Handler, status: int, obj: dict[str, Any],
                  extra: dict[str, str] | None = None, started: float | None = None) -> None:
        """Send JSON; with `started`, a Server-Timing header of the time since (the answer
        made and encoded: what a benchmark of the server itself wants)."""
        data = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers = {"Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
                   **(extra or {})}
        if started is not None:
            headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.3f}"
        self._send(h, status, "application/json; charset=utf-8", data, headers)

    def send_html(self, h: _Handler, status: int, data: bytes,
                  extra: dict[str, str] | None = None) -> None:
        self._send(h, status, "text/html; charset=utf-8", data,
                   {"Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
                    **(extra or {})})

    def _send(self, h: _Handler, status: int, ctype: str, data: bytes,
              headers: dict[str, str]) -> None:
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(data)))
        for k, v in {**SECURITY_HEADERS, **headers}.items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)


def _refusal_page(r: guard.Refusal) -> bytes:
    import html

    return (f"<!doctype html><meta charset=utf-8><title>db0 ui</title>"
            f"<h1>db0 ui: {html.escape(r.message)}</h1><p>To fix: {html.escape(r.hint)}.</p>"
            ).encode()

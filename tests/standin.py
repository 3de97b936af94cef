"""A stand-in model endpoint for the live agent tests: a standard-library HTTP server on
127.0.0.1 (a free port) that answers the three coding agents' model APIs with one fixed reply,
streamed the way each client expects, and records every request it gets.

- Anthropic Messages (Claude Code): `POST /v1/messages` (SSE when `"stream": true`, else one
  JSON message) and `POST /v1/messages/count_tokens`.
- OpenAI Responses (Codex, `wire_api = "responses"`): `POST /v1/responses`, SSE
  (`response.created` ... `response.completed`); chat completions (`/v1/chat/completions`) too,
  for a provider configured with `wire_api = "chat"`.
- Gemini API (Gemini CLI): `POST /v1beta/models/M:generateContent` (JSON) and
  `:streamGenerateContent?alt=sse` (SSE), `:countTokens`.
- Anything else (model lists, update checks that slipped through): `GET` answers an empty
  JSON list/object, so a client never hangs on the stand-in; the request is still recorded.

How each agent is pointed here offline (see docs/agents.md):
  Claude Code: ANTHROPIC_BASE_URL=<url> ANTHROPIC_API_KEY=<dummy>
  Codex:       a [model_providers.standin] in config.toml with base_url=<url>/v1,
               wire_api="responses", env_key naming a variable holding a dummy key
  Gemini CLI:  GOOGLE_GEMINI_BASE_URL=<url> GEMINI_API_KEY=<dummy>

Run alone (`python tests/standin.py`) it serves until interrupted and prints its URL.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REPLY = "Noted. The stand-in model has nothing else to say."


@dataclass
class Recorded:
    """One request as the stand-in saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any  # the JSON body, or the raw text when it was not JSON
    ts: float = field(default_factory=time.time)

    @property
    def text(self) -> str:
        """The whole body as text (what a test searches for injected context)."""
        return self.body if isinstance(self.body, str) else json.dumps(self.body,
                                                                       ensure_ascii=False)


def _sse(event: str | None, data: Any) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n".encode()


def anthropic_events(model: str, text: str) -> Iterator[bytes]:
    mid = "msg_" + uuid.uuid4().hex[:24]
    usage = {"input_tokens": 10, "output_tokens": 0}
    yield _sse("message_start", {"type": "message_start", "message": {
        "id": mid, "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": usage}})
    yield _sse("content_block_start", {"type": "content_block_start", "index": 0,
                                       "content_block": {"type": "text", "text": ""}})
    yield _sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                       "delta": {"type": "text_delta", "text": text}})
    yield _sse("content_block_stop", {"type": "content_block_stop", "index": 0})
    yield _sse("message_delta", {"type": "message_delta",
                                 "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                 "usage": {"output_tokens": max(1, len(text.split()))}})
    yield _sse("message_stop", {"type": "message_stop"})


def anthropic_message(model: str, text: str) -> dict[str, Any]:
    return {"id": "msg_" + uuid.uuid4().hex[:24], "type": "message", "role": "assistant",
            "model": model, "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": max(1, len(text.split()))}}


def responses_events(model: str, text: str) -> Iterator[bytes]:
    rid = "resp_" + uuid.uuid4().hex[:24]
    item_id = "msg_" + uuid.uuid4().hex[:24]
    base = {"id": rid, "object": "response", "created_at": int(time.time()), "model": model,
            "status": "in_progress", "output": []}
    item = {"id": item_id, "type": "message", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}
    yield _sse("response.created", {"type": "response.created", "response": base})
    yield _sse("response.output_item.added", {
        "type": "response.output_item.added", "output_index": 0,
        "item": {**item, "status": "in_progress", "content": []}})
    yield _sse("response.output_text.delta", {"type": "response.output_text.delta",
                                              "item_id": item_id, "output_index": 0,
                                              "content_index": 0, "delta": text})
    yield _sse("response.output_item.done", {"type": "response.output_item.done",
                                             "output_index": 0, "item": item})
    usage = {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 0},
             "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 0},
             "total_tokens": 15}
    yield _sse("response.completed", {"type": "response.completed", "response": {
        **base, "status": "completed", "output": [item], "usage": usage}})


def chat_events(model: str, text: str) -> Iterator[bytes]:
    cid = "chatcmpl-" + uuid.uuid4().hex[:24]
    now = int(time.time())
    for delta, finish in (({"role": "assistant", "content": text}, None), ({}, "stop")):
        yield _sse(None, {"id": cid, "object": "chat.completion.chunk", "created": now,
                          "model": model, "choices": [{"index": 0, "delta": delta,
                                                       "finish_reason": finish}]})
    yield b"data: [DONE]\n\n"


def example(schema: Any) -> Any:
    """The smallest value that fits a JSON schema (Gemini's JSON-mode calls, such as its model
    router, want their schema's shape back, not prose)."""
    if not isinstance(schema, dict):
        return {}
    kind = str(schema.get("type") or "object").lower()
    if schema.get("enum"):
        return schema["enum"][0]
    if kind == "object":
        props = schema.get("properties") or {}
        return {k: example(props.get(k)) for k in schema.get("required") or list(props)}
    if kind == "array":
        return []
    if kind in ("integer", "number"):
        return 50
    if kind == "boolean":
        return False
    return "standin"


def gemini_response(text: str) -> dict[str, Any]:
    return {"candidates": [{"content": {"role": "model", "parts": [{"text": text}]},
                            "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5,
                              "totalTokenCount": 15}, "modelVersion": "standin"}


class StandIn:
    """The server: `with StandIn() as s:` ... `s.url`, `s.requests`, `s.model_requests()`."""

    def __init__(self, reply: str = REPLY) -> None:
        self.reply = reply
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> StandIn:
        self._thread = threading.Thread(target=self._server.serve_forever, name="standin",
                                        kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def model_requests(self) -> list[Recorded]:
        """The requests that asked a model for a reply (not token counts or lists)."""
        with self._lock:
            return [r for r in self.requests if r.method == "POST" and (
                r.path.split("?")[0].endswith(("/messages", "/responses", "/chat/completions"))
                or ":generateContent" in r.path or ":streamGenerateContent" in r.path)]

    def _record(self, r: Recorded) -> None:
        with self._lock:
            self.requests.append(r)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the record is the log

            def _body(self) -> Any:
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                if self.headers.get("Content-Encoding") in ("gzip", "zstd", "br"):
                    if self.headers.get("Content-Encoding") == "gzip":
                        import gzip

                        raw = gzip.decompress(raw)
                    else:
                        return f"<{self.headers.get('Content-Encoding')} body, {n} bytes>"
                try:
                    return json.loads(raw) if raw else None
                except ValueError:
                    return raw.decode("utf-8", "replace")

            def _json(self, obj: Any, status: int = 200) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, chunks: Iterator[bytes]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                for c in chunks:
                    self.wfile.write(c)
                    self.wfile.flush()
                self.close_connection = True

            def do_GET(self) -> None:
                standin._record(Recorded("GET", self.path, dict(self.headers), None))
                path = self.path.split("?")[0]
                if path.endswith("/models"):
                    self._json({"data": [], "models": [], "object": "list"})
                else:
                    self._json({})

            def do_HEAD(self) -> None:
                standin._record(Recorded("HEAD", self.path, dict(self.headers), None))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                body = self._body()
                standin._record(Recorded("POST", self.path, dict(self.headers), body))
                path = self.path.split("?")[0]
                b = body if isinstance(body, dict) else {}
                model = str(b.get("model") or "standin")
                text = standin.reply
                if path.endswith("/messages/count_tokens"):
                    self._json({"input_tokens": 10})
                elif path.endswith("/messages"):
                    if b.get("stream"):
                        self._stream(anthropic_events(model, text))
                    else:
                        self._json(anthropic_message(model, text))
                elif path.endswith("/responses"):
                    self._stream(responses_events(model, text))
                elif path.endswith("/chat/completions"):
                    self._stream(chat_events(model, text))
                elif ":generateContent" in path or ":streamGenerateContent" in path:
                    config = b.get("generationConfig") or {}
                    if config.get("responseMimeType") == "application/json":
                        text = json.dumps(example(config.get("responseJsonSchema")
                                                  or config.get("responseSchema")))
                    if ":streamGenerateContent" in path:
                        self._stream(iter([_sse(None, gemini_response(text))]))
                    else:
                        self._json(gemini_response(text))
                elif ":countTokens" in path:
                    self._json({"totalTokens": 10})
                else:
                    self._json({})

        return Handler


if __name__ == "__main__":
    with StandIn() as s:
        print(s.url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass

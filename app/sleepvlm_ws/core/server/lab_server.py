"""An OpenAI-compatible HTTP front for ``BatchEngine`` (``sleepvlm-ws serve``).

Speaks the part of the OpenAI API the workstation's client (``core.model.remote.RemoteRuntime``)
uses, so a lab runs it where llama.cpp's ``llama-server`` would go:

- ``GET /health``: ``{"status": "ok"}`` (no key needed);
- ``GET /v1/models``: the one served model (its name: ``--alias``, default the pack's name);
- ``POST /v1/chat/completions``: ``messages`` with the three epoch images as data URIs,
  ``max_tokens``, optional ``grammar`` (GBNF); decoding is greedy, so a request must ask for
  temperature 0 or ``top_k`` 1 (anything else is refused rather than silently answered
  greedily); no streaming, one choice;
- ``GET /stats``: the engine's counters (``BatchEngine.stats``: where the time went).

With an API key (``SLEEPVLM_WS_API_KEY``) every endpoint but ``/health`` wants
``Authorization: Bearer KEY``. Errors are OpenAI-style ``{"error": {"message": ...}}`` with
4xx for the request's fault and 503 while shutting down. One thread per connection
(``ThreadingHTTPServer``); tokenising happens in that thread, decoding in the engine's.
"""

from __future__ import annotations

import hmac
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .batch_engine import BatchEngine, EngineError

MAX_BODY_BYTES = 64 * 2**20
DEFAULT_MAX_TOKENS = 1024

__all__ = ["LabServer", "MAX_BODY_BYTES"]


class _Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _check_request(body: object) -> tuple[list, int, str | None]:
    """(messages, max_tokens, grammar) of a chat-completion body, or _Refused(400)."""
    if not isinstance(body, dict):
        raise _Refused(400, "the body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _Refused(400, "'messages' must be a non-empty list")
    if body.get("stream"):
        raise _Refused(400, "streaming is not supported")
    if body.get("n", 1) != 1:
        raise _Refused(400, "only one choice (n = 1) is supported")
    if body.get("response_format") is not None:
        raise _Refused(400, "send the answer constraint as a GBNF 'grammar', not response_format")
    temperature, top_k = body.get("temperature", 1.0), body.get("top_k")
    if not (temperature == 0 or top_k == 1):
        raise _Refused(400, "this server decodes greedily: ask for temperature 0 or top_k 1")
    for name in ("repeat_penalty", "repetition_penalty"):
        if body.get(name, 1.0) != 1.0:
            raise _Refused(400, f"{name} must be 1.0 (no penalty)")
    for name in ("presence_penalty", "frequency_penalty"):
        if body.get(name, 0.0) != 0.0:
            raise _Refused(400, f"{name} must be 0 (no penalty)")
    max_tokens = body.get("max_tokens", DEFAULT_MAX_TOKENS)
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise _Refused(400, "'max_tokens' must be a positive whole number")
    grammar = body.get("grammar")
    if grammar is not None and (not isinstance(grammar, str) or not grammar.strip()):
        raise _Refused(400, "'grammar' must be GBNF text")
    return messages, max_tokens, grammar or None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "LabServer"

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's name
        if self.server.access_log is not None:
            self.server.access_log(f"{self.address_string()} {format % args}")

    # -- replies ------------------------------------------------------------------------
    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass                      # the client gave up; the answer is dropped

    def _error(self, status: int, message: str) -> None:
        kind = ("authentication_error" if status == 401 else
                "server_error" if status >= 500 else "invalid_request_error")
        # a body left unread would be taken for the next request on a kept-alive connection
        self.close_connection = True
        self._send(status, {"error": {"message": message, "type": kind, "code": status}})

    def _authorised(self) -> bool:
        key = self.server.api_key
        if not key:
            return True
        given = self.headers.get("Authorization", "")
        if given.startswith("Bearer ") and hmac.compare_digest(given[7:].strip().encode(), key.encode()):
            return True
        self._error(401, "invalid or missing API key")
        return False

    def _path(self) -> str:
        return self.path.split("?", 1)[0].rstrip("/")

    # -- endpoints ------------------------------------------------------------------------
    def _loaded(self) -> bool:
        if self.server.engine is None:
            self._error(503, "the model is still loading")
            return False
        return True

    def do_GET(self):  # noqa: N802 - the stdlib's name
        path = self._path()
        if path in ("/health", "/v1/health"):
            if not self._loaded():
                return
            self._send(200, {"status": "ok"})
        elif path in ("/v1/models", "/models"):
            if self._authorised() and self._loaded():
                self._send(200, {"object": "list", "data": [{
                    "id": self.server.alias, "object": "model", "created": self.server.started,
                    "owned_by": "sleepvlm-ws", "sleepvlm_model_id": self.server.engine.model_id}]})
        elif path == "/stats":
            if self._authorised() and self._loaded():
                self._send(200, self.server.engine.stats())
        else:
            self._error(404, f"no such endpoint: {path}")

    def do_POST(self):  # noqa: N802
        path = self._path()
        if path not in ("/v1/chat/completions", "/chat/completions"):
            self._error(404, f"no such endpoint: {path}")
            return
        if not self._authorised() or not self._loaded():
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._error(411, "a Content-Length is required")
            return
        if not 0 < length <= MAX_BODY_BYTES:
            self._error(413, f"the body must be 1 byte to {MAX_BODY_BYTES // 2**20} MiB")
            return
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            self._error(400, "the body is not JSON")
            return
        try:
            messages, max_tokens, grammar = _check_request(body)
            engine = self.server.engine
            prepared = engine.prepare(messages, max_tokens=max_tokens, grammar=grammar)
            result = engine.submit(prepared).wait()
        except _Refused as exc:
            self._error(exc.status, str(exc))
            return
        except EngineError as exc:
            self._error(exc.status, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - a defect: still one line, never a dropped reply
            self._error(500, f"internal error ({type(exc).__name__})")
            return
        prompt, completion = result["prompt_tokens"], result["completion_tokens"]
        self._send(200, {
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
            "created": int(time.time()), "model": self.server.alias,
            "choices": [{"index": 0, "finish_reason": result["finish_reason"],
                         "message": {"role": "assistant", "content": result["content"]},
                         "logprobs": None}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion},
        })


class LabServer(ThreadingHTTPServer):
    """``engine`` behind HTTP on ``(host, port)`` (port 0: a free one; see ``url``)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, engine: BatchEngine | None, host: str = "127.0.0.1", port: int = 8080, *,
                 alias: str | None = None, api_key: str | None = None, access_log=None):
        """``engine`` may be set later (listen first, then load the model: a port already in
        use is then found before the model is loaded); until then requests get 503."""
        super().__init__((host, int(port)), _Handler)
        self.engine = engine
        self.alias = alias or (engine.manifest.name if engine is not None else "sleepvlm")
        self.api_key = api_key or None
        self.access_log = access_log
        self.started = int(time.time())

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def serve_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="lab-server", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        self.shutdown()
        self.server_close()

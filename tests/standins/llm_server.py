"""A stand-in for an OpenAI-compatible chat-completions server, on loopback.

No model can run in the tests, and mocking ``requests`` would test our guesses about HTTP rather
than what really crosses the wire. This server answers ``POST /v1/chat/completions`` in the shape
such servers use::

    {"id": "chatcmpl-...", "object": "chat.completion", "created": <epoch s>, "model": "<asked>",
     "choices": [{"index": 0, "message": {"role": "assistant", "content": "..."},
                  "finish_reason": "stop"}],
     "usage": {"prompt_tokens": n, "completion_tokens": n, "total_tokens": n}}

``behaviour`` (changeable at any time) decides the answer:

* ``valid``: a narrative naming the first ``"service": "<name>"`` found in the user message, so a
  test sees that the answer was derived from what was sent; ``fenced`` wraps it in a ```json block.
* ``invalid_json``: prose instead of JSON.  ``schema_violation``: JSON of the wrong shape.
* ``slow``: waits ``delay_s`` before answering.  ``error``: HTTP 500 with an error body.

With ``api_key`` set, a request without ``Authorization: Bearer <api_key>`` gets 401. A request
without ``model`` and ``messages`` gets 400. Every request is recorded before it is answered.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from standins.servers import serve_in_background

Behaviour = Literal["valid", "fenced", "invalid_json", "schema_violation", "slow", "error"]
_SERVICE = re.compile(r'"service":\s*"(?P<name>[^"]+)"')


@dataclass(frozen=True)
class ChatRequest:
    """One request as received: path, the Authorization header and the decoded JSON body."""

    path: str
    authorization: str | None
    body: Any


@dataclass
class StandInLLM:
    """The running server's knobs and what it received."""

    api_key: str | None = None
    behaviour: Behaviour = "valid"
    delay_s: float = 5.0
    url: str = ""
    requests: list[ChatRequest] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, request: ChatRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def received(self) -> list[ChatRequest]:
        with self._lock:
            return list(self.requests)

    def answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Status and JSON body for a well-formed, authorised request."""
        if self.behaviour == "error":
            return 500, {"error": {"message": "model crashed", "type": "server_error"}}
        if self.behaviour == "slow":
            self.stopping.wait(self.delay_s)
        return 200, _completion(body["model"], _content(self.behaviour, body["messages"]))


def _content(behaviour: Behaviour, messages: list[dict[str, Any]]) -> str:
    """The assistant's message text for ``behaviour``."""
    if behaviour == "invalid_json":
        return "The payment service is probably overloaded."
    if behaviour == "schema_violation":
        return json.dumps({"root_cause": "payment", "confidence": "high", "extra": [1, 2]})
    user = " ".join(m.get("content", "") for m in messages if m.get("role") == "user")
    found = _SERVICE.search(user)
    service = found.group("name") if found else "unknown"
    narrative = {
        "likely_root_cause": f"{service} degraded first and its callers followed",
        "evidence": [f"{service} has the highest-ranked deviation"],
        "confidence": 0.6,
        "suggested_fixes": [f"check recent deployments of {service}"],
    }
    text = json.dumps(narrative)
    return f"```json\n{text}\n```" if behaviour == "fenced" else text


def _completion(model: str, content: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 100, "completion_tokens": 40, "total_tokens": 140},
    }


def _handler(llm: StandInLLM) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (stdlib name)
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                body = json.loads(raw)
            except json.JSONDecodeError:
                body = None
            authorization = self.headers.get("Authorization")
            llm.record(ChatRequest(self.path, authorization, body))
            if self.path != "/v1/chat/completions":
                self._reply(404, {"error": {"message": f"no route {self.path}"}})
            elif llm.api_key is not None and authorization != f"Bearer {llm.api_key}":
                self._reply(401, {"error": {"message": "invalid API key", "type": "auth"}})
            elif not isinstance(body, dict) or not {"model", "messages"} <= body.keys():
                self._reply(400, {"error": {"message": "model and messages are required"}})
            else:
                self._reply(*llm.answer(body))

        def _reply(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test): nothing left to tell it

        def log_message(self, *args: object) -> None:
            """Quiet: the tests assert on recorded requests, not on access logs."""

    return Handler


@contextmanager
def running_llm(api_key: str | None = None) -> Iterator[StandInLLM]:
    """Serve a :class:`StandInLLM` on 127.0.0.1; its ``url`` is the ``/v1`` base URL."""
    llm = StandInLLM(api_key=api_key)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(llm))
    server.daemon_threads = True
    with serve_in_background(server) as base:
        llm.url = f"{base}/v1"
        try:
            yield llm
        finally:
            llm.stopping.set()  # release a handler still sleeping in "slow"

"""A real Alertmanager on loopback, and a recording webhook receiver for what it sends.

Mocking Alertmanager would test our guesses about its grouping, deduplication and resolution;
the Debian binary (``prometheus-alertmanager``, 0.25 in CI) is small and starts in about a second,
so the tests run the real one. Without it the tests skip with a hint, except under ``CI``, where
a missing binary is a broken environment and fails them.

:class:`RecordingWebhook` is a stdlib ``ThreadingHTTPServer`` on 127.0.0.1 that stores every JSON
body posted to it. It stands in for the chat/pager integration behind Alertmanager, and for the
generic webhook the daemon posts to directly (``statuses`` lets a test make it fail).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from standins.processes import free_port, require_binaries, running_process

ALERTMANAGER_BINARY = "prometheus-alertmanager"
_START_TIMEOUT_S = 20.0


def alertmanager_binary() -> str:
    """Path of the Alertmanager binary; skip without it, or fail when ``CI`` is set."""
    (path,) = require_binaries(
        (ALERTMANAGER_BINARY, "alertmanager"),
        install_hint=(
            "install it with 'apt-get install prometheus-alertmanager' "
            "to run the Alertmanager tests"
        ),
    )
    return path


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``condition`` every 50 ms; fail naming ``what`` when the deadline passes."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.05)


@dataclass(frozen=True)
class Received:
    """One POST the webhook received."""

    path: str
    headers: dict[str, str]
    body: Any


class RecordingWebhook:
    """Stores every JSON POST; answers with ``statuses`` popped in order, then 200."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.statuses: list[int] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/hook"

    def bodies(self) -> list[Any]:
        with self._lock:
            return [r.body for r in self.received]

    def __enter__(self) -> RecordingWebhook:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        webhook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (stdlib name)
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with webhook._lock:
                    status = webhook.statuses.pop(0) if webhook.statuses else 200
                    if status == 200:
                        received = Received(self.path, dict(self.headers), json.loads(raw))
                        webhook.received.append(received)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                """Quiet: the tests assert on what was received, not on access logs."""

        return Handler


def _config(webhook_url: str) -> str:
    """Route everything to one webhook, grouped per set, flushed within seconds.

    Alertmanager skips ``group_wait`` for an alert that started longer than ``group_wait`` ago,
    and then one POST of two alerts may reach the receiver as two notifications. Tests post
    alerts whose windows end "now", and 2 s leaves room for a slow machine.
    """
    return f"""
route:
  receiver: recorder
  group_by: [alertname, service_set]
  group_wait: 2s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: recorder
    webhook_configs:
      - url: {json.dumps(webhook_url)}
        send_resolved: true
"""


@contextmanager
def running_alertmanager(
    tmp_path: Path, webhook_url: str, port: int | None = None
) -> Iterator[str]:
    """Start Alertmanager on 127.0.0.1 (``port`` or a free one); yield its base URL; kill it."""
    binary = alertmanager_binary()
    port = port or free_port()
    workdir = tmp_path / f"alertmanager-{port}"
    (workdir / "data").mkdir(parents=True, exist_ok=True)
    config = workdir / "alertmanager.yml"
    config.write_text(_config(webhook_url), encoding="utf-8")
    log_path = workdir / "alertmanager.log"
    command = [
        binary,
        f"--config.file={config}",
        f"--storage.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",  # empty: no clustering (it would bind 9094)
        "--log.level=warn",
    ]
    base_url = f"http://127.0.0.1:{port}"
    with running_process(
        command, log_path, base_url, "alertmanager", _START_TIMEOUT_S, stop_timeout_s=5
    ):
        yield base_url

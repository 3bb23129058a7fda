"""One small HTTP server: ``/health`` (liveness), ``/ready`` (a model per set) and ``/metrics``.

stdlib :class:`~http.server.ThreadingHTTPServer` in a daemon thread, so a slow scrape never blocks
a job and the process can exit without waiting for it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ml_monitoring_service.errors import ConfigError

logger = logging.getLogger(__name__)

Readiness = Callable[[], dict[str, list[str]]]


class StatusServer:
    """Serves the three endpoints on ``host:port`` (port 0: any free port, see :attr:`port`)."""

    def __init__(
        self, host: str, port: int, metrics: Callable[[], bytes], missing_models: Readiness
    ) -> None:
        self._metrics, self._missing = metrics, missing_models
        try:
            self._server = ThreadingHTTPServer((host, port), self._handler())
        except OSError as exc:
            raise ConfigError(
                f"cannot serve /metrics on METRICS_HOST={host} METRICS_PORT={port}: {exc}"
            ) from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="status-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self._server.server_address[0]!s}:{self.port}"

    def start(self) -> None:
        self._thread.start()
        logger.info("serving /health, /ready and /metrics on %s", self.url)

    def stop(self) -> None:
        """Stop serving and release the port (``shutdown`` would wait forever if never started)."""
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (stdlib name)
                path = self.path.split("?", 1)[0]
                if path == "/health":
                    self._send(200, b"ok\n", "text/plain")
                elif path == "/ready":
                    missing = {k: v for k, v in server._missing().items() if v}
                    body = {"ready": not missing, "missing_models": missing}
                    payload = json.dumps(body).encode() + b"\n"
                    self._send(503 if missing else 200, payload, "application/json")
                elif path == "/metrics":
                    self._send(200, server._metrics(), CONTENT_TYPE_LATEST)
                else:
                    self._send(404, b"not found: try /health, /ready or /metrics\n", "text/plain")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                """Quiet: scrapes every 15 s would drown the job logs."""

        return Handler

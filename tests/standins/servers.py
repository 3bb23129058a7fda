"""Serving a stdlib HTTP server on loopback from a background thread, over HTTP or HTTPS."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import HTTPServer
from pathlib import Path


@contextmanager
def serve_in_background(server: HTTPServer, tls: tuple[Path, Path] | None = None) -> Iterator[str]:
    """Serve ``server`` in a thread and yield its base URL; shut it down and close it on exit.

    ``tls=(certfile, keyfile)`` wraps the listening socket, so the URL is ``https://``.
    """
    scheme = "http"
    if tls is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    url = f"{scheme}://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()
        thread.join()

"""Real server binaries (Prometheus, Alertmanager) run as child processes for the tests.

``require_binaries`` finds them on PATH: without them the calling test is skipped, except when
``CI`` is set, where they are installed and a missing one is a broken environment that fails it.
``running_process`` starts one on loopback, waits for its ``/-/ready`` endpoint, and always
stops it afterwards; everything it prints goes to a log file quoted when start-up fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_binaries(*names: str | tuple[str, ...], install_hint: str) -> tuple[str, ...]:
    """Paths of ``names`` on PATH; skips the test (fails it under ``CI``) if any is absent.

    A tuple among ``names`` lists alternative names of one binary, tried in order.
    """
    found: list[str] = []
    missing: list[str] = []
    for name in names:
        alternatives = (name,) if isinstance(name, str) else name
        path = next((p for p in map(shutil.which, alternatives) if p is not None), None)
        if path is None:
            missing.append(alternatives[0])
        else:
            found.append(path)
    if missing:
        message = f"{' and '.join(missing)} not found on PATH; {install_hint}"
        if os.environ.get("CI"):
            pytest.fail(f"{message} (CI is set, so the real-server tests must run)")
        pytest.skip(message)
    return tuple(found)


@contextmanager
def running_process(
    command: Sequence[str | Path],
    log_path: Path,
    url: str,
    name: str,
    timeout_s: float,
    *,
    cwd: Path | None = None,
    stop_timeout_s: float = 10.0,
) -> Iterator[str]:
    """Run ``command`` (output to ``log_path``) until ``url``/-/ready answers 200; yield ``url``.

    Fails the test, quoting the log, if the process exits or is not ready within ``timeout_s``.
    On exit the process is terminated, and killed if it has not stopped after ``stop_timeout_s``.
    """
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_ready(process, f"{url}/-/ready", log_path, name, timeout_s)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=stop_timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(
    process: subprocess.Popen[bytes], ready_url: str, log_path: Path, name: str, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = log_path.read_text(errors="replace")
            pytest.fail(f"{name} exited with {process.returncode}:\n{log}")
        try:
            if requests.get(ready_url, timeout=1).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):
            pass
        time.sleep(0.05)
    pytest.fail(f"{name} not ready after {timeout_s}s:\n{log_path.read_text(errors='replace')}")

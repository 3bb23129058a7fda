"""A real Prometheus server, loaded with a given history, for tests of the Prometheus collector.

Nothing about PromQL (lookback, aggregation, escaping, error bodies) is guessed: the history is
written as OpenMetrics text, turned into TSDB blocks by ``promtool tsdb create-blocks-from
openmetrics``, and served by the ``prometheus`` binary. Blocks must exist before the server
starts, because it opens them only at start-up; with a 100-year retention, history from any
past date stays queryable. Every file the server writes (blocks, WAL, query log, lock) lives
under the test's temporary directory, and it listens on loopback only.

Without the binaries the calling test is skipped, except when ``CI`` is set: CI installs them,
so there a missing binary is an error rather than a silently skipped suite.
"""

from __future__ import annotations

import math
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

_STARTUP_TIMEOUT_S = 30.0
_INSTALL_HINT = "install the 'prometheus' package (Debian/Ubuntu), which provides both"


@dataclass(frozen=True)
class Series:
    """One series of the history: metric name, labels and ``(epoch seconds, value)`` samples."""

    name: str
    labels: Mapping[str, str]
    samples: Sequence[tuple[float, float]]


def binaries() -> tuple[str, str]:
    """Paths of ``prometheus`` and ``promtool``; skips the test (fails it under CI) if absent."""
    found = {name: shutil.which(name) for name in ("prometheus", "promtool")}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        message = f"{' and '.join(missing)} not found on PATH; {_INSTALL_HINT}"
        if os.environ.get("CI"):
            pytest.fail(f"{message} (CI is set, so the real-server tests must run)")
        pytest.skip(message)
    return str(found["prometheus"]), str(found["promtool"])


@contextmanager
def running_prometheus(history: Iterable[Series], directory: Path) -> Iterator[str]:
    """Serve ``history`` from a fresh Prometheus under ``directory``; yields its base URL.

    The server is stopped (and killed if it does not stop) when the block exits.
    """
    prometheus, promtool = binaries()
    directory.mkdir(parents=True, exist_ok=True)
    data = directory / "tsdb"
    history_file = directory / "history.om"
    history_file.write_text(openmetrics(history))
    backfill = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(history_file), str(data)],
        capture_output=True,
        text=True,
    )
    if backfill.returncode != 0:
        raise RuntimeError(f"promtool backfill failed:\n{backfill.stdout}{backfill.stderr}")
    config = directory / "prometheus.yml"
    config.write_text("global: {}\nscrape_configs: []\n")
    port = _free_port()
    log = directory / "prometheus.log"
    with log.open("w") as log_file:
        process = subprocess.Popen(
            [
                prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={data}",
                "--storage.tsdb.retention.time=100y",
                f"--web.listen-address=127.0.0.1:{port}",
                f"--web.console.templates={directory}",
                f"--web.console.libraries={directory}",
            ],
            cwd=directory,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_ready(url, process, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def openmetrics(history: Iterable[Series]) -> str:
    """OpenMetrics text of ``history``: families contiguous, samples in time order, ``# EOF``."""
    lines = []
    for series in sorted(history, key=lambda s: s.name):
        labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(series.labels.items()))
        for seconds, value in sorted(series.samples):
            lines.append(f"{series.name}{{{labels}}} {_number(value)} {seconds:.3f}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_until_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + _STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prometheus exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"prometheus not ready after {_STARTUP_TIMEOUT_S}s:\n{log.read_text()}")

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
import subprocess
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from standins.processes import free_port, require_binaries, running_process

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
    prometheus, promtool = require_binaries("prometheus", "promtool", install_hint=_INSTALL_HINT)
    return prometheus, promtool


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
    port = free_port()
    command = [
        prometheus,
        f"--config.file={config}",
        f"--storage.tsdb.path={data}",
        "--storage.tsdb.retention.time=100y",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--web.console.templates={directory}",
        f"--web.console.libraries={directory}",
    ]
    with running_process(
        command,
        directory / "prometheus.log",
        f"http://127.0.0.1:{port}",
        "prometheus",
        _STARTUP_TIMEOUT_S,
        cwd=directory,
    ) as url:
        yield url


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

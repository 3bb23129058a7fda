"""What the benchmark scripts share: the detectors they compare and the record of the code measured.

``scripts/synthetic_benchmark.py`` and ``scripts/evaluate_public.py`` must build the transformer
and the baselines identically (same window, threshold percentile and seed handling), or their
tables would compare different detectors under one name; every script's JSON records the commit
it measured, so a number in the docs can be traced to the code that produced it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from ml_monitoring_service.detectors import (
    IsolationForestDetector,
    PCADetector,
    RandomDetector,
    RobustZScoreDetector,
    TransformerAutoencoderDetector,
    WindowDetector,
)

BENCHMARK_DETECTORS = ("transformer", "pca", "robust_zscore", "isolation_forest", "random")


def build_benchmark_detector(
    name: str,
    *,
    window_size: int,
    threshold_percentile: float,
    max_epochs: int,
    seed: int,
) -> WindowDetector:
    """Detector ``name`` (from ``BENCHMARK_DETECTORS``) with the shared window settings.

    The transformer keeps its defaults except the epoch cap and runs without a progress bar; the
    seeded baselines get the same seed, so a run is reproducible end to end.
    """
    common: dict[str, Any] = {
        "window_size": window_size,
        "threshold_percentile": threshold_percentile,
    }
    if name == "transformer":
        return TransformerAutoencoderDetector(
            **common, max_epochs=max_epochs, seed=seed, show_progress=False
        )
    if name == "pca":
        return PCADetector(**common)
    if name == "robust_zscore":
        return RobustZScoreDetector(**common)
    if name == "isolation_forest":
        return IsolationForestDetector(**common, seed=seed)
    if name == "random":
        return RandomDetector(**common, seed=seed)
    raise ValueError(f"unknown benchmark detector {name!r}; choose from {BENCHMARK_DETECTORS}")


def code_version(root: Path) -> dict[str, Any]:
    """Commit of the checkout at ``root`` and whether its ``src/`` differs from that commit.

    Outside a git checkout (an exported copy) the commit is ``""``: the record then says plainly
    that the code is unidentified rather than failing the benchmark.
    """

    def git(*args: str) -> str:
        done = subprocess.run(  # noqa: S603 - fixed git invocation
            ["git", *args],  # noqa: S607
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    return {
        "commit": git("rev-parse", "HEAD"),
        "src_modified": bool(git("status", "--short", "src")),
    }


def json_default(value: Any) -> Any:
    """``json.dumps`` fallback: numpy scalars as Python numbers, anything else as its text."""
    if isinstance(value, np.generic):
        return value.item()
    return str(value)

"""The benchmark scripts' shared pieces: one detector factory, the record of the code measured."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ml_monitoring_service.benchmarking import (
    BENCHMARK_DETECTORS,
    build_benchmark_detector,
    code_version,
    json_default,
)


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@localhost", *args],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_every_benchmark_detector_gets_the_shared_window_settings() -> None:
    kinds = []
    for name in BENCHMARK_DETECTORS:
        detector = build_benchmark_detector(
            name, window_size=12, threshold_percentile=97.0, max_epochs=3, seed=5
        )
        params = detector.get_params()
        assert params["window_size"] == 12
        assert params["threshold_percentile"] == 97.0
        kinds.append(detector.kind)
    assert kinds == [
        "transformer_autoencoder",
        "pca",
        "robust_zscore",
        "isolation_forest",
        "random",
    ]
    transformer = build_benchmark_detector(
        "transformer", window_size=12, threshold_percentile=97.0, max_epochs=3, seed=5
    ).get_params()
    assert (transformer["max_epochs"], transformer["seed"], transformer["show_progress"]) == (
        3,
        5,
        False,
    )


def test_an_unknown_detector_name_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown benchmark detector 'lstm'.*transformer"):
        build_benchmark_detector(
            "lstm", window_size=8, threshold_percentile=99.5, max_epochs=1, seed=0
        )


def test_code_version_names_the_commit_and_edits_to_src(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    module = tmp_path / "src" / "module.py"
    module.write_text("VALUE = 1\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "first")
    head = _git(tmp_path, "rev-parse", "HEAD")

    assert code_version(tmp_path) == {"commit": head, "src_modified": False}
    module.write_text("VALUE = 2\n")
    assert code_version(tmp_path) == {"commit": head, "src_modified": True}


def test_code_version_outside_a_checkout_is_unidentified_not_an_error(tmp_path: Path) -> None:
    exported = tmp_path / "exported"
    (exported / "src").mkdir(parents=True)
    # tmp_path lies outside any repository, so git has nothing to report.
    assert code_version(exported) == {"commit": "", "src_modified": False}


def test_json_default_writes_numpy_scalars_as_numbers() -> None:
    payload = {"auc": np.float32(0.5), "windows": np.int64(7), "when": Path("x")}
    assert json.loads(json.dumps(payload, default=json_default)) == {
        "auc": 0.5,
        "windows": 7,
        "when": "x",
    }

"""A tiny end-to-end run of scripts/synthetic_benchmark.py: JSON structure and a sanity bar."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

from ml_monitoring_service.detectors.base import ScoreResult
from ml_monitoring_service.injection import INJECTION_KINDS, Injection
from scripts_under_test import load_script


@pytest.fixture(scope="module")
def benchmark() -> ModuleType:
    return load_script("synthetic_benchmark")


def _small_run(benchmark: ModuleType, out: Path, *extra: str) -> dict:
    return benchmark.run(
        [
            "--variants",
            "grid:30s,grid:1h",
            "--seeds",
            "1,2",
            "--detectors",
            "pca,robust_zscore,random",
            "--max-epochs",
            "1",
            "--window-size",
            "16",
            "--train-hours",
            "6",
            "--score-hours",
            "2",
            "--injections",
            "6",
            "--out",
            str(out),
            *extra,
        ]
    )


def test_small_demo_run_writes_scores_and_reports_too_few_windows(
    benchmark: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results.json"
    payload = _small_run(benchmark, out)
    assert json.loads(out.read_text()) == json.loads(json.dumps(payload, default=str))

    summary = payload["summary"]
    grid = summary["grid:30s"]
    assert grid["status"] == "ok" and grid["seeds_scored"] == [1, 2]
    for name in ("pca", "robust_zscore", "random"):
        stats = grid["detectors"][name]
        for key in (
            "roc_auc",
            "pr_auc",
            "precision",
            "recall",
            "f1",
            "best_f1",
            "event_recall",
            "service_rank",
            "metric_rank",
        ):
            assert set(stats[key]) == {"mean", "std"}, (name, key)
        assert stats["best_f1"]["mean"] >= stats["f1"]["mean"] - 1e-9  # an upper bound
        assert 1 <= stats["service_rank"]["mean"] <= 6
    assert (
        grid["detectors"]["pca"]["roc_auc"]["mean"] > grid["detectors"]["random"]["roc_auc"]["mean"]
    )

    # A 1 h grid over 2 h gives 2 steps: reported as too few windows, not as a score.
    assert summary["grid:1h"]["status"] == "too few windows"
    assert "roc_auc" not in json.dumps(summary["grid:1h"])

    runs = [r for r in payload["runs"] if r["variant"] == "grid:30s"]
    assert len(runs) == 2
    # On the demo every kind, the demo's drift and cascade (along its call graph) included.
    assert {i["kind"] for i in runs[0]["injections"]} == set(INJECTION_KINDS)
    (cascade,) = [i for i in runs[0]["injections"] if i["kind"] == "cascade"]
    assert cascade["callers"] and cascade["service"] not in cascade["callers"]
    assert 0 < runs[0]["anomalous_windows"] < runs[0]["scored_windows"]
    for run in runs:  # every kind's windows judged against the untouched ones
        by_kind = run["detectors"]["random"]["roc_auc_by_kind"]
        assert set(by_kind) == {i["kind"] for i in run["injections"]}
        assert all(0.0 <= v <= 1.0 for v in by_kind.values())
    kinds = grid["detectors"]["pca"]["roc_auc_by_kind"]
    assert set(kinds) == set(INJECTION_KINDS)
    assert all(set(v) == {"mean", "std"} for v in kinds.values())

    table = capsys.readouterr().out
    assert "grid:30s" in table and "too few windows" in table and "bestF1(UB)" in table


def test_same_seed_same_numbers(benchmark: ModuleType, tmp_path: Path) -> None:
    args = [
        "--variants",
        "grid:30s",
        "--seeds",
        "3",
        "--detectors",
        "pca,random",
        "--window-size",
        "16",
        "--train-hours",
        "4",
        "--score-hours",
        "1",
        "--injections",
        "2",
    ]
    first = benchmark.run([*args, "--out", str(tmp_path / "a.json")])
    second = benchmark.run([*args, "--out", str(tmp_path / "b.json")])
    strip = lambda p: [  # noqa: E731 - seconds differ between runs, nothing else may
        {k: v for k, v in d.items() if k != "seconds"}
        for r in p["runs"]
        for d in r["detectors"].values()
    ]
    assert strip(first) == strip(second)


def test_a_dropout_is_credited_to_whichever_silence_feature_ranks_better(
    benchmark: ModuleType,
) -> None:
    features = ("cpu", "severity_level", "event_count", "seconds_since_event")
    peaks = np.array([[[1.0, 0.5, 2.0, 9.0]], [[3.0, 0.1, 0.2, 0.3]]])  # services a, b
    result = ScoreResult(
        window_scores=np.array([9.0]),
        service_scores=peaks.max(axis=2).T,
        metric_scores=peaks.transpose(1, 0, 2),
        starts=pd.DatetimeIndex(["2024-05-01T00:00Z"]),
        ends=pd.DatetimeIndex(["2024-05-01T00:01Z"]),
        services=("a", "b"),
        features=features,
        threshold=5.0,
    )
    inside = np.array([True])
    start, end = result.starts[0], result.ends[0]
    dropout = Injection("dropout", "a", "event_count", start, end, 0.0)
    assert benchmark.channel_rank(result, dropout, inside) == 1.0  # the gap, not the count (4th)
    spike = Injection("spike", "a", "cpu", start, end, 6.0)
    assert benchmark.channel_rank(result, spike, inside) == 4.0  # b's cpu, a's gap and count lead


def test_a_cascade_on_a_recording_without_a_call_graph_is_a_clear_error(
    benchmark: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recording = Path(__file__).parent / "resources" / "combined_small.json"  # no nested traces
    args = ["--dataset", str(recording), "--kinds", "spike,cascade", "--variants", "grid:1s"]
    assert benchmark.main([*args, "--seeds", "1", "--out", str(tmp_path / "r.json")]) == 2
    error = capsys.readouterr().err
    assert "cascade injections need a call graph" in error and "combined_small.json" in error
    assert not (tmp_path / "r.json").exists()

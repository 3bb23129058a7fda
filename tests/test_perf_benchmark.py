"""A tiny run of scripts/perf_benchmark.py: JSON structure and sane values, never timings."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from scripts_under_test import load_script


@pytest.fixture(scope="module")
def benchmark() -> ModuleType:
    return load_script("perf_benchmark")


def test_parameters_grow_linearly_in_services(benchmark: ModuleType) -> None:
    detector = benchmark.build_detector({"epochs": 1, "windows_per_epoch": 8})
    params = {
        s: sum(p.numel() for p in detector._build_network(s, 7).parameters()) for s in (3, 50, 200)
    }
    # Only the service embedding depends on S: the same d_model parameters per extra service.
    per_service = (params[50] - params[3]) / 47
    assert per_service == detector.d_model
    assert params[200] - params[50] == 150 * per_service


def test_smoke_run_writes_tables_and_json(
    benchmark: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "perf.json"
    payload = benchmark.run(
        [
            "--services",
            "3",
            "--rows",
            "20000",
            "--prep-services",
            "5",
            "--trace-lines",
            "2400",
            "--epochs",
            "1",
            "--windows-per-epoch",
            "16",
            "--repeats",
            "1",
            "--variants",
            "event,grid:30s",
            "--workdir",
            str(tmp_path / "data"),
            "--out",
            str(out),
        ]
    )
    assert json.loads(out.read_text(encoding="utf-8")) == json.loads(json.dumps(payload))
    assert set(payload) >= {"config", "code", "machine", "model", "preprocessing"}
    assert set(payload["code"]) == {"commit", "src_modified"}

    (model,) = payload["model"]
    assert model["services"] == 3 and model["features_model"] == 8  # 5 metrics + 3 derived
    assert model["device"] == "cpu"  # the default: timings name where they ran
    assert model["peak_gpu_mb"] is None
    assert model["parameters"] > 0 and model["parameters_per_service"] > 0
    assert model["epochs"] == 1 and model["trained_windows"] == 16
    assert model["train_windows_per_s"] > 0 and model["inference_seconds_per_set"] > 0
    # 2 h at 30 s = 240 steps; window 32, stride 1 -> 209 windows, as the daemon scores per tick.
    assert (model["inference_steps"], model["inference_windows"]) == (240, 209)
    assert model["peak_rss_mb"] >= model["rss_after_imports_mb"] > 0

    prep = payload["preprocessing"]
    assert prep["data"]["rows"] == 20000
    runs = {(r["format"], r.get("variant")): r for r in prep["runs"]}
    assert set(runs) == {("parquet", "event"), ("parquet", "grid:30s"), ("csv", None)}
    for run in runs.values():
        assert run["rows"] == 20000 and run["peak_rss_mb"] > 0
    event = runs["parquet", "event"]
    assert event["tensor_shape"][1:] == [5, 8]
    assert event["windows_shape"][1:] == [32, 5, 8]
    assert event["ingest_tensorise_seconds"] >= sum(event["stages"].values()) - 1e-9

    # 5 services as a binary tree (0 -> 1, 2; 1 -> 3, 4): 4 calls and 2 through a middle service.
    mining = payload["call_graph_mining"]
    assert (mining["lines"], mining["services"], mining["edges"]) == (2400, 5, 6)
    assert mining["seconds"] > 0 and mining["peak_rss_mb"] > 0

    printed = capsys.readouterr().out
    assert "| S | device | params |" in printed and "| parquet | event |" in printed
    assert "call graph from 2,400 log lines of 5 services: 6 edges" in printed

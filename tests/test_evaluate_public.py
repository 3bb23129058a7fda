"""``scripts/evaluate_public.py``: the command line and JSON layout that held-out evaluations use.

``--dataset smd|asd|nezha --path DIR [--machines a,b] --out results.json``; the JSON has
``summary.<detector>.<metric>`` and ``machines.<name>.<detector>.<metric>``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from scripts_under_test import load_script

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "resources" / "smd_tiny"
TINY_NEZHA = REPO / "tests" / "resources" / "nezha_tiny"
SCRIPT = REPO / "scripts" / "evaluate_public.py"
DETECTORS = ["ours", "pca", "iforest", "zscore", "random"]
SMD_METRICS = [
    "auc_pr",
    "vus_pr",
    "roc_auc",
    "f1_operational",
    "best_f1",
    "hitrate_100",
    "hitrate_150",
]
NEZHA_METRICS = ["detection_rate", "ac_at_1", "ac_at_3"]
# The tiny SMD machine has 5-minute rows and 160 test steps: a 16-step window fits.
SMD_TINY = ["--dataset", "smd", "--path", str(TINY), "--interval", "5min", "--window-size", "16"]


SCRIPT_MODULE = load_script("evaluate_public")


def _run(argv: list[str], out: Path) -> dict[str, Any]:
    SCRIPT_MODULE.run([*argv, "--out", str(out)])
    payload: dict[str, Any] = json.loads(out.read_text())
    return payload


@pytest.mark.parametrize("mode", ["one-service", "per-metric"])
def test_smd_layout_json(tmp_path: Path, mode: str) -> None:
    payload = _run(
        [*SMD_TINY, "--mode", mode, "--detectors", "zscore,pca,random"], tmp_path / "r.json"
    )
    assert payload["code"]["commit"]
    assert payload["config"]["mode"] == mode and payload["config"]["layout"] == "smd"
    assert list(payload["machines"]) == ["tiny-1"] and payload["errors"] == {}
    for detector in ("zscore", "pca", "random"):
        summary = payload["summary"][detector]
        assert summary["n_machines"] == 1 and summary["n_failed"] == 0
        record = payload["machines"]["tiny-1"][detector]
        for metric in SMD_METRICS:
            assert summary[metric] == pytest.approx(record[metric])
            assert 0.0 <= record[metric] <= 1.0
        for extra in ("vus_roc", "pa_best_f1_legacy", "seconds", "threshold"):
            assert extra in record
    zscore = payload["machines"]["tiny-1"]["zscore"]
    # A +1.0 shift on m2 over 10 steps: the z-score finds it and blames m2.
    assert zscore["roc_auc"] > 0.9
    assert zscore["hitrate_100"] == 1.0
    assert payload["summary"]["random"]["roc_auc"] < 0.8
    assert payload["details"]["tiny-1"]["test_steps"] == 160


def test_nezha_layout_json(tmp_path: Path) -> None:
    payload = _run(
        [
            "--dataset", "nezha", "--path", str(TINY_NEZHA), "--detectors", "zscore,random,ours",
            "--max-epochs", "2",
        ],
        tmp_path / "nezha.json",
    )  # fmt: skip
    # The Train-Ticket-style day is too short to train on: reported, not silently dropped.
    assert list(payload["machines"]) == ["2024-05-01", "2024-05-02"]
    failed = payload["machines"]["2024-05-02"]
    assert set(failed) == {"zscore", "random", "ours", "zscore_rca"}
    assert "InsufficientDataError" in failed["zscore"]["error"]
    assert set(payload["errors"]) == {"2024-05-02"}
    day = payload["machines"]["2024-05-01"]
    for detector in ("zscore", "random", "ours"):
        summary = payload["summary"][detector]
        assert summary["n_machines"] == 1 and summary["n_failed"] == 1
        for metric in NEZHA_METRICS:
            assert summary[metric] == pytest.approx(day[detector][metric])
        assert {"ac_at_5", "avg_at_5", "false_alarms", "mean_delay_min"} <= set(day[detector])
    assert day["ours"]["epochs"] <= 2
    # Both faults are obvious: the z-score detector alerts within the first minute and blames
    # the injected service, and so does the z-score root-cause ranking.
    assert day["zscore"]["detection_rate"] == 1.0 and day["zscore"]["ac_at_1"] == 1.0
    assert payload["summary"]["zscore_rca"]["ac_at_1"] == 1.0
    assert payload["pooled"]["zscore"]["ac_at_1"] == 1.0 and payload["pooled"]["zscore"]["days"]
    details = payload["details"]["2024-05-01"]
    assert details["services"] == ["cartservice", "checkoutservice", "frontend"]
    assert details["metrics"][-1] == "network_delay_in"  # the day records edge latencies
    assert ["frontend", "cartservice"] in details["call_graph"]
    assert details["training_range"][0].startswith("2024-05-01 00:55:30")
    faults = details["faults"]
    assert [(f["service"], f["kind"]) for f in faults] == [
        ("frontend", "cpu_contention"),
        ("cartservice", "network_delay"),
    ]
    for f in faults:
        assert f["zscore"]["detected"] is True and f["zscore"]["delay_minutes"] < 1.0
        assert f["zscore"]["rank"] == 1 and f["zscore_rca"]["rank"] == 1
        assert f["ours"]["detected"] is not None
    config = payload["config"]
    assert config["window_size"] == 8 and "memory" not in config["metrics"]
    assert config["summary_over"] == "days"


def _smd_copy(tmp_path: Path) -> Path:
    """smd_tiny plus ``tiny-2`` (a copy) and ``tiny-short`` (too few test rows for a window)."""
    root = tmp_path / "smd"
    shutil.copytree(TINY, root)
    for sub in ("train", "test", "test_label", "interpretation_label"):
        for path in (root / sub).glob("tiny-1.*"):
            shutil.copy(path, path.with_name(path.name.replace("tiny-1", "tiny-2")))
    for sub in ("train", "test"):
        values = np.loadtxt(next((TINY / sub).glob("tiny-1.*")), delimiter=",", ndmin=2)
        rows = values if sub == "train" else values[:5]
        np.savetxt(root / sub / "tiny-short.txt", rows, delimiter=",")
    np.savetxt(root / "test_label" / "tiny-short.txt", [0, 0, 1, 1, 0], fmt="%d")
    return root


def test_machines_selection_and_failures_reported(tmp_path: Path) -> None:
    root = _smd_copy(tmp_path)
    payload = _run(
        [
            "--dataset", "asd", "--path", str(root), "--machines", "tiny-short,tiny-2",
            "--window-size", "16", "--detectors", "robust_zscore,random",
        ],
        tmp_path / "r.json",
    )  # fmt: skip
    assert payload["config"]["sampling_interval"] == "0 days 00:05:00"  # ASD: 5 min
    assert payload["config"]["detectors"] == ["zscore", "random"]  # the long name is an alias
    assert list(payload["machines"]) == ["tiny-short", "tiny-2"]
    assert "error" in payload["machines"]["tiny-short"]["zscore"]
    assert set(payload["errors"]["tiny-short"]) == {"zscore", "random"}
    assert payload["machines"]["tiny-2"]["zscore"]["roc_auc"] > 0.9
    summary = payload["summary"]["zscore"]
    assert summary["n_machines"] == 1 and summary["n_failed"] == 1
    assert summary["roc_auc"] == payload["machines"]["tiny-2"]["zscore"]["roc_auc"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--dataset", "smd", "--path", str(TINY), "--machines", "tiny-1,nope"], "nope"),
        (["--dataset", "nezha", "--path", str(TINY_NEZHA), "--machines", "2024-01-01"], "2024-05"),
        (["--dataset", "smd", "--path", str(TINY), "--detectors", "zscore,lstm"], "lstm"),
        (["--dataset", "nezha", "--path", str(TINY)], "not in the Nezha layout"),
        (["--dataset", "smd", "--path", str(TINY_NEZHA)], "train/"),
        (["--dataset", "smd", "--path", str(TINY / "missing")], "does not exist"),
    ],
)
def test_bad_arguments_are_clear_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        SCRIPT_MODULE.parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_unknown_machine_lists_the_available_ones(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        SCRIPT_MODULE.parse_args(["--dataset", "smd", "--path", str(TINY), "--machines", "x"])
    assert "unknown machines ['x']; available: ['tiny-1']" in capsys.readouterr().err


def test_defaults_and_older_forms() -> None:
    smd = SCRIPT_MODULE.parse_args(["--dataset", "smd", "--path", str(TINY)])
    assert smd.detector_list == DETECTORS and smd.mode == "one-service"
    assert smd.max_epochs == 10 and smd.window_size == 32 and smd.machine_list == ["tiny-1"]
    nezha = SCRIPT_MODULE.parse_args(["--dataset", "nezha", "--path", str(TINY_NEZHA)])
    assert nezha.nezha and nezha.max_epochs == 200 and nezha.window_size == 8
    assert nezha.machine_list == ["2024-05-01", "2024-05-02"]
    # The day directories themselves, and the older `--dataset DIR` (layout detected), work too.
    days = SCRIPT_MODULE.parse_args(
        ["--dataset", "nezha", "--path", str(TINY_NEZHA / "rca_data"), "--days", "2024-05-01"]
    )
    assert days.machine_list == ["2024-05-01"]
    assert SCRIPT_MODULE.parse_args(["--dataset", str(TINY_NEZHA)]).nezha
    older = SCRIPT_MODULE.parse_args(["--dataset", str(TINY), "--detectors", "transformer,pca"])
    assert not older.nezha and older.detector_list == ["ours", "pca"]


def test_runs_as_a_command_without_pythonpath(tmp_path: Path) -> None:
    python = REPO / ".venv" / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = tmp_path / "results.json"
    completed = subprocess.run(
        [
            str(python if python.exists() else sys.executable), str(SCRIPT), *SMD_TINY,
            "--machines", "tiny-1", "--max-epochs", "1", "--torch-threads", "1",
            "--out", str(out),
        ],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    payload = json.loads(out.read_text())
    assert sorted(payload["summary"]) == sorted(DETECTORS)
    for detector in DETECTORS:
        assert set(SMD_METRICS) <= set(payload["summary"][detector])
        assert set(SMD_METRICS) <= set(payload["machines"]["tiny-1"][detector])
    assert "| mean of 1 | ours |" in completed.stdout  # the Markdown table

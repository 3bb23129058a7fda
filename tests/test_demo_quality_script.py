"""Smoke test of scripts/demo_quality.py: the command behind the README's demo table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts_under_test import load_script

demo_quality = load_script("demo_quality")


def test_one_short_period_is_judged_with_and_without_logs(tmp_path: Path) -> None:
    out = tmp_path / "quality.json"
    args = ["--variants", "grid:30s", "--ends", "2024-06-05T18:00:00Z", "--hours", "3"]
    results = demo_quality.run([*args, "--detectors", "robust_zscore", "--out", str(out)])
    assert json.loads(out.read_text()) == results
    (record,) = results["grid:30s@2024-06-05T18:00:00+00:00"].values()
    assert record["events"] >= 3  # the demo injects an incident every 40 minutes
    assert 0 <= record["events_detected"] <= record["events"]
    assert 0.5 < record["roc_auc"] <= 1.0
    assert 0.0 <= record["root_cause_top1"] <= 1.0
    assert 0.0 <= record["root_cause_top1_without_logs"] <= 1.0
    assert 0 <= record["incidents_with_a_report_naming_the_root"] <= record["events"]
    assert record["incident_reports"] >= 1
    assert 0 <= record["incident_reports_without_an_incident"] <= record["incident_reports"]


def test_unknown_detectors_are_refused() -> None:
    with pytest.raises(SystemExit):
        demo_quality.parse_args(["--detectors", "transformer,prophet"])

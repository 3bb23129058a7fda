"""Incident reports on a real demo run: one per anomalous period, numbers traceable to the tensor.

A robust z-score detector (fitted in a fraction of a second on 6 hours of demo data) stands in for
the transformer: the reports only need scores, periods and the densified tensor, and every
detector produces those through the same base class.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import networkx as nx
import pandas as pd
import pytest

from conftest import TINY_DEMO_SET
from ml_monitoring_service.config import (
    EnvironmentSettings,
    NarrativeConfig,
    ServiceSetConfig,
    load_config,
)
from ml_monitoring_service.daemon.jobs import SetRunner
from ml_monitoring_service.daemon.metrics import DaemonMetrics
from ml_monitoring_service.data.sources import inference_data, training_data
from ml_monitoring_service.detectors.baselines import RobustZScoreDetector
from ml_monitoring_service.explain.narrative import narrator
from ml_monitoring_service.outputs.incident_checks import metric_kind, suggested_checks
from ml_monitoring_service.outputs.incidents import (
    prune_incidents,
    render_markdown,
    write_incident,
)
from ml_monitoring_service.pipeline.inference import InferenceOutcome, score_variant
from ml_monitoring_service.pipeline.model_store import model_root, promote, save_version
from ml_monitoring_service.pipeline.training import chronological_split, count_horizon
from ml_monitoring_service.prepare.densify import ServiceTensor, densify
from ml_monitoring_service.prepare.variants import Variant
from ml_monitoring_service.tracking import RunTracker
from standins.llm_server import running_llm

SETS = (
    TINY_DEMO_SET
    + """    schedule: {training_lookback: 6h, inference_lookback: 1h}
    alerting: {fire_min_anomalous: 2, window_count: 4}
"""
)
NOW = pd.Timestamp("2024-03-04T12:00:00Z")
VARIANTS = (Variant.parse("grid:30s"), Variant.parse("event"))
INCIDENT_KEYS = {
    "schema_version",
    "id",
    "set",
    "variant",
    "model_version",
    "headline",
    "start",
    "end",
    "peak_time",
    "peak_score",
    "threshold",
    "windows",
    "candidates",
    "logs",
    "plots",
    "suggested_checks",
    "narrative",
}
CANDIDATE_KEYS = {
    "rank",
    "service",
    "metric",
    "confidence",
    "onset",
    "explained_by",
    "evidence",
    "metric_deviations",
    "call_path",
}
DEVIATION_KEYS = {"metric", "score", "baseline_median", "period_value", "direction"}


def fitted(config: ServiceSetConfig, variant: Variant) -> RobustZScoreDetector:
    frame = training_data(config, NOW).frame
    horizon = count_horizon(config, frame)
    tensor = densify(frame, config.services, list(config.metrics), variant, horizon)
    train, val = chronological_split(tensor, 0.2, config.preprocessing.window_size)
    return RobustZScoreDetector(window_size=16, train_stride=4).fit(train, val)


@pytest.fixture(scope="module")
def run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[ServiceSetConfig, Path, dict[str, tuple[InferenceOutcome, ServiceTensor]]]:
    """Both variants scored through ``score_variant``, reports written under ``output/``."""
    root = tmp_path_factory.mktemp("incidents")
    (root / "sets.yaml").write_text(SETS)
    config = load_config(root / "sets.yaml").service_set("tiny")
    output = root / "output"
    frame = inference_data(config, NOW).frame
    runs = {}
    for variant in VARIANTS:
        detector = fitted(config, variant)
        outcome = score_variant(config, frame, variant, detector, "v1", output)
        horizon = detector.count_horizon_
        assert horizon is not None
        tensor = densify(frame, config.services, list(config.metrics), variant, horizon)
        runs[variant.name] = (outcome, tensor)
    return config, output, runs


def load(outcome: InferenceOutcome, index: int) -> tuple[dict[str, Any], str]:
    report = outcome.incident_reports[index]
    return json.loads(report.with_suffix(".json").read_text()), report.read_text()


@pytest.mark.parametrize("variant", ["grid_30s", "event"])
def test_one_complete_report_per_period(run: Any, variant: str) -> None:
    config, output, runs = run
    outcome, _ = runs[variant]
    assert outcome.periods, "the demo hour holds incidents: expected anomalous periods"
    assert len(outcome.incident_reports) == len(outcome.periods)
    for index, period in enumerate(outcome.periods):
        incident, markdown = load(outcome, index)
        assert set(incident) == INCIDENT_KEYS
        assert incident["id"] == f"tiny-{variant}-{period.start.strftime('%Y%m%dT%H%M%SZ')}"
        assert outcome.incident_reports[index].name == f"{incident['id']}.md"
        assert incident["narrative"] is None
        assert incident["logs"] == period.logs.to_dict()  # the demo logs text: evidence is mined
        assert set(incident["logs"]["services"]) == set(config.services)
        assert "## Log evidence" in markdown
        assert incident["threshold"] == outcome.result.threshold
        for candidate in incident["candidates"]:
            assert set(candidate) == CANDIDATE_KEYS
            assert all(set(d) == DEVIATION_KEYS for d in candidate["metric_deviations"])
        for name in incident["plots"].values():
            assert (outcome.incident_reports[index].parent / name).stat().st_size > 1000
        assert incident["suggested_checks"]
        assert render_markdown(incident) == markdown


def _traced_requests(start: pd.Timestamp, count: int) -> pd.DataFrame:
    """Info lines of ``count`` requests, each under its own trace id: frontend around checkout
    around payment, and frontend around cart after them (the tiny set's documented graph)."""
    spans = {
        "frontend": (0.0, 0.9),
        "checkout": (0.1, 0.6),
        "payment": (0.2, 0.3),
        "cart": (0.7, 0.8),
    }
    rows = [
        {
            "timestamp": start + pd.Timedelta(minutes=2 * i, seconds=second),
            "service": service,
            "severity_level": 0.0,
            "message": f"{service} handled request",
            "trace_id": f"request-{i}",
        }
        for i in range(count)
        for service, (first, last) in spans.items()
        for second in (first, last)
    ]
    return pd.DataFrame(rows)


def test_a_set_without_relationships_reports_the_graph_learned_from_trace_ids(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "sets.yaml").write_text(
        SETS.replace("    relationships: {frontend: [cart, checkout], checkout: [payment]}\n", "")
    )
    config = load_config(tmp_path / "sets.yaml").service_set("tiny")
    assert config.edges == ()
    frame = inference_data(config, NOW).frame
    traced = pd.concat([frame, _traced_requests(frame["timestamp"].iloc[0], 30)])
    traced = traced.sort_values("timestamp", kind="stable").reset_index(drop=True)
    variant = VARIANTS[0]
    with caplog.at_level("INFO", logger="ml_monitoring_service.pipeline.inference"):
        outcome = score_variant(config, traced, variant, fitted(config, variant), "v1", tmp_path)
    assert "4 call edges learned from trace ids" in caplog.text
    learned = nx.DiGraph(
        [
            ("frontend", "cart"),
            ("frontend", "checkout"),
            ("frontend", "payment"),
            ("checkout", "payment"),
        ]
    )
    assert outcome.periods
    paths = [
        candidate["call_path"]
        for index in range(len(outcome.periods))
        for candidate in load(outcome, index)[0]["candidates"]
    ]
    assert any(len(path) > 1 for path in paths)
    for path in paths:
        assert path[0] == "frontend"
        assert all(learned.has_edge(a, b) for a, b in zip(path, path[1:], strict=False))
    summary = json.loads((tmp_path / "tiny" / "inference_summary_grid_30s.json").read_text())
    assert summary["call_graph"]["source"] == "trace ids"
    assert sorted(map(tuple, summary["call_graph"]["edges"])) == sorted(learned.edges)


@pytest.mark.parametrize("variant", ["grid_30s", "event"])
def test_first_lines_say_what_where_since_when(run: Any, variant: str) -> None:
    _, _, runs = run
    outcome, _ = runs[variant]
    for index, period in enumerate(outcome.periods):
        incident, markdown = load(outcome, index)
        what, where, since = markdown.splitlines()[:3]
        ratio = period.peak_score / outcome.result.threshold
        assert what.startswith("# Anomaly in tiny") and f"{ratio:.1f}× threshold" in what
        assert f"**{period.top_service}**" in where and f"**{period.top_metric}**" in where
        onset = period.candidates[0].onset or period.start
        assert onset.strftime("%Y-%m-%d %H:%M:%S UTC") in since
        assert period.start.strftime("%Y-%m-%d %H:%M:%S UTC") in since
        assert period.top_service in incident["headline"]


@pytest.mark.parametrize("variant", ["grid_30s", "event"])
def test_metric_deviations_are_real_values_of_the_tensor(run: Any, variant: str) -> None:
    _, _, runs = run
    outcome, tensor = runs[variant]
    checked = 0
    for index, period in enumerate(outcome.periods):
        incident, _ = load(outcome, index)
        for candidate in incident["candidates"]:
            s = tensor.services.index(candidate["service"])
            for deviation in candidate["metric_deviations"]:
                f = tensor.features.index(deviation["metric"])
                series = pd.Series(tensor.values[:, s, f], index=tensor.timestamps).dropna()
                before = series[series.index < period.start]
                during = series[(series.index >= period.start) & (series.index <= period.end)]
                if before.empty:
                    assert deviation["baseline_median"] is None
                    continue
                assert deviation["baseline_median"] == pytest.approx(before.median())
                assert deviation["period_value"] in set(during)
                furthest = (during - before.median()).abs().max()
                assert abs(deviation["period_value"] - before.median()) == pytest.approx(furthest)
                expected = "up" if deviation["period_value"] > before.median() else "down"
                assert deviation["direction"] in (expected, "flat")
                checked += 1
            scores = [d["score"] for d in candidate["metric_deviations"]]
            assert scores == sorted(scores, reverse=True)
            result = outcome.result
            inside = (result.starts >= period.start) & (result.ends <= period.end)
            top = tensor.features.index(candidate["metric_deviations"][0]["metric"])
            assert scores[0] == pytest.approx(result.metric_scores[inside, s, top].max())
    assert checked > 0


@pytest.mark.parametrize("variant", ["grid_30s", "event"])
def test_call_path_runs_from_an_entry_point_to_the_candidate(run: Any, variant: str) -> None:
    config, _, runs = run
    outcome, _ = runs[variant]
    graph = nx.DiGraph(list(config.edges))
    for index in range(len(outcome.periods)):
        incident, _ = load(outcome, index)
        for candidate in incident["candidates"]:
            path = candidate["call_path"]
            assert path[-1] == candidate["service"]
            assert path[0] == "frontend"  # the only service nobody calls
            assert all(graph.has_edge(a, b) for a, b in zip(path, path[1:], strict=False))


def test_summary_links_resolve_to_the_reports(run: Any) -> None:
    _, output, runs = run
    for variant, (outcome, _) in runs.items():
        summary_path = output / "tiny" / f"inference_summary_{variant}.json"
        summary = json.loads(summary_path.read_text())
        assert summary["schema_version"] == 1
        assert summary["call_graph"] == {
            "source": "relationships",
            "edges": [["frontend", "cart"], ["frontend", "checkout"], ["checkout", "payment"]],
        }
        links = [p["incident_report"] for p in summary["anomalous_periods"]]
        assert len(links) == len(outcome.periods)
        for link, report in zip(links, outcome.incident_reports, strict=True):
            assert not Path(link).is_absolute()
            assert (summary_path.parent / link).resolve() == report.resolve()
            assert report.is_file()


def test_an_unchanged_report_is_not_rewritten_and_old_ones_are_pruned(run: Any) -> None:
    config, output, runs = run
    outcome, _ = runs["grid_30s"]
    report = outcome.incident_reports[0]
    stamp = report.stat().st_mtime_ns
    frame = inference_data(config, NOW).frame
    again = score_variant(config, frame, VARIANTS[0], fitted(config, VARIANTS[0]), "v1", output)
    assert again.incident_reports == outcome.incident_reports
    assert report.stat().st_mtime_ns == stamp

    directory = report.parent
    ids = sorted({p.name.split(".")[0] for p in directory.glob("*.md")})
    newest = sorted(ids, key=lambda i: i.rsplit("-", 1)[1])[-1]
    deleted = prune_incidents(directory, keep=1, protect={report.stem})
    assert set(deleted) == set(ids) - {newest, report.stem}
    left = {p.name for p in directory.iterdir()}
    assert all(not name.startswith(tuple(deleted)) for name in left)
    assert f"{newest}.md" in left and report.name in left


def test_alert_annotation_links_the_incident_report(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The daemon's inference job: the alert carries its period's report path, also when resolved.

    The demo stream's windows ending 11:04–11:23 are anomalous for this model, those ending at
    11:45 are not.
    """
    (tmp_path / "sets.yaml").write_text(SETS)
    config = load_config(tmp_path / "sets.yaml").service_set("tiny")
    env = EnvironmentSettings(output_dir=tmp_path / "output", metrics_port=0)  # type: ignore[call-arg]
    variant = VARIANTS[0]
    root = model_root(env.output_dir, "tiny", variant.name)
    promote(root, save_version(fitted(config, variant), root).name)
    runner = SetRunner(config, env, [variant], DaemonMetrics(), None, RunTracker("", False))
    firing = [n for n in runner.infer(pd.Timestamp("2024-03-04T11:20:00Z")) if n.event == "firing"]
    assert len(firing) == 1
    report = Path(firing[0].alert.annotations["incident_report"])
    assert report.is_file() and report.parent == env.output_dir / "tiny" / "incidents"
    incident = json.loads(report.with_suffix(".json").read_text())
    start, end = pd.Timestamp(incident["start"]), pd.Timestamp(incident["end"])
    assert start <= pd.Timestamp(firing[0].alert.starts_at) <= end
    summary = json.loads((env.output_dir / "tiny" / "inference_summary_grid_30s.json").read_text())
    assert incident["end"] == summary["time_range"]["end"]  # the period is still open
    assert f"(incident report {report})" in caplog.text  # no receivers: the log line names it

    later = runner.infer(pd.Timestamp("2024-03-04T11:45:00Z"))
    resolved = [n for n in later if n.event == "resolved"]
    assert len(resolved) == 1 and resolved[0].alert.id == firing[0].alert.id
    assert resolved[0].alert.annotations["incident_report"] == str(report)


LOGS = {
    "services": {
        "payment": {
            "baseline_events": 40,
            "period_events": 55,
            "templates": [
                {
                    "template": "Timeout calling <*> after <NUM> ms | retry",
                    "baseline_count": 0,
                    "period_count": 12,
                    "baseline_problems": 0,
                    "period_problems": 12,
                    "new": True,
                    "example": "Timeout calling <*> after <NUM> ms",
                }
            ],
            "exceptions": [
                {
                    "fingerprint": "a1b2c3d4",
                    "type": "java.net.SocketTimeoutException",
                    "frames": ["com.shop.payment.Client.call", "com.shop.payment.Api.pay"],
                    "baseline_count": 0,
                    "period_count": 7,
                    "new": True,
                    "example": "java.net.SocketTimeoutException: Read timed out",
                }
            ],
        },
        "checkout": {
            "baseline_events": 360,
            "period_events": 31,
            "templates": [],
            "exceptions": [],
            "missing_templates": [
                {
                    "template": "INFO c.s.CheckoutServiceImpl#88 charged order <NUM>",
                    "baseline_count": 180,
                    "period_count": 0,
                    "expected_count": 15.4,
                    "example": "INFO c.s.CheckoutServiceImpl#88 charged order <NUM>",
                }
            ],
            "missing_lines": 15.4,
        },
        "cart": {"baseline_events": 10, "period_events": 9, "templates": [], "exceptions": []},
    }
}
NARRATIVE = {
    "likely_root_cause": "payment's database connection pool is exhausted",
    "evidence": ["payment latency 24.8 → 41.4", "new SocketTimeoutException in payment"],
    "confidence": 0.7,
    "suggested_fixes": ["raise the pool size", "find the slow query"],
}


def test_markdown_renders_log_evidence_and_narrative(run: Any, tmp_path: Path) -> None:
    _, _, runs = run
    incident, plain = load(runs["grid_30s"][0], 0)
    assert "## Narrative" not in plain
    assert "## Log evidence" not in render_markdown({**incident, "logs": None})
    enriched = {**incident, "logs": LOGS, "narrative": NARRATIVE}
    markdown_path, json_path = write_incident(enriched, tmp_path)
    markdown = markdown_path.read_text()
    assert json.loads(json_path.read_text()) == enriched
    assert markdown.splitlines()[:3] == plain.splitlines()[:3]
    logs = markdown.split("## Log evidence", 1)[1].split("## Narrative", 1)[0]
    assert "### payment" in logs and "55 events in the period, 40 before" in logs
    assert "`Timeout calling <*> after <NUM> ms \\| retry` | 0 | 12 | 0 → 12 | new |" in logs
    assert "`java.net.SocketTimeoutException` ×7 (new; fingerprint a1b2c3d4)" in logs
    assert "`com.shop.payment.Client.call` ← `com.shop.payment.Api.pay`" in logs
    checkout = logs.split("### checkout", 1)[1].split("###", 1)[0]
    assert "Usual messages it stopped writing (its code path changed)" in checkout
    assert "| `INFO c.s.CheckoutServiceImpl#88 charged order <NUM>` | 180 | 15 | 0 |" in checkout
    assert "### cart" in logs and "no new, risen or missing messages" in logs
    narrative = markdown.split("## Narrative (LLM, unverified)", 1)[1]
    assert "payment's database connection pool is exhausted" in narrative
    assert "**Confidence:** 0.70" in narrative
    assert "- find the slow query" in narrative and "- payment latency 24.8 → 41.4" in narrative


def test_suggested_checks_follow_metric_kind_and_explanations() -> None:
    assert [metric_kind(m) for m in ("latency", "error_count", "event_count", "cpu")] == [
        "latency",
        "errors",
        "silence",
        "cpu",
    ]
    deviation = {"score": 9.0, "baseline_median": 4.0, "period_value": 0.0, "direction": "down"}
    candidates = [
        {
            "service": "payment",
            "explained_by": None,
            "metric_deviations": [{**deviation, "metric": "event_count"}],
        },
        {
            "service": "checkout",
            "explained_by": "payment",
            "metric_deviations": [{**deviation, "metric": "latency", "direction": "up"}],
        },
    ]
    checks = suggested_checks(candidates, [("frontend", "checkout"), ("checkout", "payment")])
    assert checks[0].startswith("Is payment up?") and "log shipping" in checks[0]
    assert checks[-1].startswith("Compare with checkout, which is explained by payment")
    assert not any("checkout's dependencies" in c for c in checks)  # an echo gets no runbook
    # the gap since the last event rises when a service falls silent, and falls in a log storm
    for direction, opening in (("up", "Is payment up?"), ("down", "payment logs far more")):
        gap = {**deviation, "metric": "seconds_since_event", "direction": direction}
        lead = [{**candidates[0], "metric_deviations": [gap]}]
        assert suggested_checks(lead, [])[0].startswith(opening)


def test_narrative_is_asked_once_per_new_incident_and_lands_in_the_report(tmp_path: Path) -> None:
    """The LLM path end to end: the stand-in's answer is in JSON and Markdown; a rescore of the
    same data (the daemon's every tick) asks nothing; without a narrator the reports are the same
    apart from the narrative."""
    (tmp_path / "sets.yaml").write_text(SETS)
    base = load_config(tmp_path / "sets.yaml").service_set("tiny")
    frame = inference_data(base, NOW).frame
    variant = VARIANTS[0]
    detector = fitted(base, variant)
    plain = score_variant(base, frame, variant, detector, "v1", tmp_path / "plain")
    with running_llm() as llm:
        settings = NarrativeConfig(enabled=True, url=llm.url, model="stand-in", timeout_s=5.0)
        config = base.model_copy(update={"narrative": settings})
        output = tmp_path / "narrated"
        told = score_variant(config, frame, variant, detector, "v1", output, narrator(settings))
        asked = len(llm.received())
        score_variant(config, frame, variant, detector, "v1", output, narrator(settings))
        assert len(llm.received()) == asked, "an unchanged incident must not be sent again"
    assert asked == len(told.periods) > 0
    for with_llm, without in zip(told.incident_reports, plain.incident_reports, strict=True):
        incident = json.loads(with_llm.with_suffix(".json").read_text())
        reference = json.loads(without.with_suffix(".json").read_text())
        narrative = incident["narrative"]
        assert narrative["likely_root_cause"].split()[0] in base.services
        assert 0.0 <= narrative["confidence"] <= 1.0
        assert "Narrative (LLM, unverified)" in with_llm.read_text()
        assert reference["narrative"] is None
        assert {**incident, "narrative": None} == reference

"""Graph-aware root-cause ranking on small hand-made score results."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml_monitoring_service.detectors.base import ScoreResult
from ml_monitoring_service.explain.silence import Silence
from ml_monitoring_service.metric_roles import TRAFFIC_WEIGHT, MetricRoles
from ml_monitoring_service.pipeline.periods import anomalous_periods, rank_services
from ml_monitoring_service.rootcause import rank_root_causes

SERVICES = ("frontend", "checkout", "payment")
EDGES = (("frontend", "checkout"), ("checkout", "payment"))
FEATURES = ("latency", "cpu")


def _result(service_scores: list[list[float]], threshold: float = 2.0) -> ScoreResult:
    """``[N, S]`` service scores; each service's score sits on its latency metric."""
    scores = np.asarray(service_scores, dtype=float)
    metric = np.stack([scores, np.full_like(scores, 0.5)], axis=2)
    starts = pd.date_range("2024-06-01", periods=len(scores), freq="1min", tz="UTC")
    return ScoreResult(
        window_scores=scores.max(axis=1),
        service_scores=scores,
        metric_scores=metric,
        starts=starts,
        ends=starts + pd.Timedelta("5min"),
        services=SERVICES,
        features=FEATURES,
        threshold=threshold,
    )


# payment is slow first; checkout and frontend follow a window later, with larger scores.
CASCADE = _result([[1, 1, 3], [6, 7, 3], [8, 9, 3], [8, 9, 3]])
ALL = np.ones(4, dtype=bool)


def test_cascade_ranks_the_callee_first() -> None:
    ranking = rank_root_causes(CASCADE, ALL, EDGES)
    assert [c.service for c in ranking] == ["payment", "checkout", "frontend"]
    assert ranking[0].explained_by is None
    assert ranking[1].explained_by == "payment"
    assert ranking[2].explained_by == "payment"  # the earliest anomalous downstream service
    assert ranking[0].onset == CASCADE.ends[0]
    assert ranking[0].metric == "latency"
    assert "explained by anomalous callee payment" in ranking[1].evidence


def test_without_a_graph_the_ranking_is_the_summed_score_ranking() -> None:
    plain = [service for service, _ in rank_services(CASCADE, ALL)]
    assert [c.service for c in rank_root_causes(CASCADE, ALL)] == plain
    assert [c.service for c in rank_root_causes(CASCADE, ALL, ())] == plain


def test_confidences_are_ordered_and_sum_to_at_most_one() -> None:
    for edges in ((), EDGES):
        confidences = [c.confidence for c in rank_root_causes(CASCADE, ALL, edges)]
        assert all(0.0 <= c <= 1.0 for c in confidences)
        assert confidences == sorted(confidences, reverse=True)
        assert sum(confidences) <= 1.0 + 1e-9


def test_a_service_whose_callees_are_normal_stays_first() -> None:
    # frontend breaks alone; its callees stay below the level throughout.
    result = _result([[1, 1, 1], [9, 1.5, 1], [9, 1, 1.5], [9, 1, 1]])
    ranking = rank_root_causes(result, ALL, EDGES)
    assert ranking[0].service == "frontend"
    assert ranking[0].explained_by is None
    assert ranking[0].confidence > 0.5


def test_a_callee_that_deviates_later_explains_nothing() -> None:
    # checkout breaks first; payment deviates only at the end, so checkout stays first.
    result = _result([[1, 5, 1], [1, 6, 1], [1, 6, 1], [1, 6, 3]])
    ranking = rank_root_causes(result, ALL, EDGES)
    assert ranking[0].service == "checkout"
    assert ranking[0].explained_by is None


def test_a_tie_in_onset_pushes_no_caller_down() -> None:
    # frontend and its callee cross the level in the same window: the larger frontend stays first.
    result = _result([[1, 1, 1], [9, 3, 1], [9, 3, 1], [9, 3, 1]])
    ranking = rank_root_causes(result, ALL, EDGES)
    assert [c.service for c in ranking[:2]] == ["frontend", "checkout"]
    assert ranking[0].explained_by is None


def test_a_caller_slow_on_its_calls_is_explained_by_a_callee_crossing_with_it() -> None:
    # checkout and payment cross the level in the same window; checkout's latency is the larger.
    result = _result([[1, 1, 1], [1, 9, 3], [1, 9, 3], [1, 9, 3]])
    as_server = rank_root_causes(result, ALL, EDGES, roles=MetricRoles(client=("cpu",)))
    assert [c.service for c in as_server[:2]] == ["checkout", "payment"]
    # Declared as what checkout measures about its own calls, the latency points at payment.
    as_client = rank_root_causes(result, ALL, EDGES, roles=MetricRoles(client=("latency",)))
    assert as_client[0].service == "payment"
    # Explained, checkout ranks last: below frontend too, which was never anomalous and so is
    # not ruled out.
    assert [(c.service, c.explained_by) for c in as_client[1:]] == [
        ("frontend", None),
        ("checkout", "payment"),
    ]
    # The inference summary's periods rank with the same declaration.
    (period,) = anomalous_periods(result, EDGES, roles=MetricRoles(client=("latency",)))
    assert period.top_service == "payment"


def test_traffic_metrics_weigh_less_than_a_services_own_health() -> None:
    # payment's CPU burns; frontend, which shares no metric with it, sees its request rate fall
    # by more (a closed-loop load slows down everywhere). Both cross the level together.
    request_rate = np.array([[1, 1, 1], [8, 1, 1], [8, 1, 1]], dtype=float)
    cpu = np.array([[1, 1, 1], [1, 1, 6], [1, 1, 6]], dtype=float)
    metric = np.stack([request_rate, cpu], axis=2)
    starts = pd.date_range("2024-06-01", periods=3, freq="1min", tz="UTC")
    result = ScoreResult(
        window_scores=metric.max(axis=(1, 2)),
        service_scores=metric.max(axis=2),
        metric_scores=metric,
        starts=starts,
        ends=starts + pd.Timedelta("5min"),
        services=SERVICES,
        features=("request_rate", "cpu"),
        threshold=2.0,
    )
    every = np.ones(3, dtype=bool)
    assert [c.service for c in rank_root_causes(result, every, EDGES)][0] == "frontend"
    # An unknown name changes nothing.
    unknown = rank_root_causes(result, every, EDGES, roles=MetricRoles(traffic=("qps",)))
    assert [c.service for c in unknown][0] == "frontend"
    roles = MetricRoles(traffic=("request_rate",))
    weighed = rank_root_causes(result, every, EDGES, roles=roles)
    assert [c.service for c in weighed][:2] == ["payment", "frontend"]
    assert weighed[1].metric == "request_rate"
    assert weighed[1].score == pytest.approx(16 * TRAFFIC_WEIGHT + 1)
    # Detection is untouched: only the ranking weighs traffic down.
    assert roles.ranking_scores(result, every)[0][1, 0] == pytest.approx(8 * TRAFFIC_WEIGHT)
    assert result.window_scores.tolist() == [1, 8, 8]
    (period,) = anomalous_periods(result, EDGES, roles=roles)
    assert period.top_service == "payment"


def test_a_service_below_its_level_is_not_explained() -> None:
    # Only checkout is anomalous; frontend stays under the level, so nothing pushes it down.
    result = _result([[1.8, 1, 1], [1.8, 6, 1], [1.8, 6, 1], [1.8, 6, 1]])
    ranking = rank_root_causes(result, ALL, EDGES)
    assert [c.service for c in ranking] == ["checkout", "frontend", "payment"]
    assert all(c.explained_by is None for c in ranking)


def test_per_service_levels_and_json_form() -> None:
    # With payment's level above its scores it is normal, so checkout is no longer explained.
    levels = np.array([2.0, 2.0, 5.0])
    ranking = rank_root_causes(CASCADE, ALL, EDGES, levels)
    assert ranking[0].service == "checkout"
    payload = ranking[0].to_dict()
    assert set(payload) == {"service", "metric", "confidence", "onset", "evidence"}
    assert payload["onset"] == CASCADE.ends[1].isoformat()
    never = next(c for c in ranking if c.service == "payment")
    assert never.onset is None and never.to_dict()["onset"] is None


def _silence() -> Silence:
    start = CASCADE.starts[1]
    return Silence(start, start + pd.Timedelta("4min"), expected_events=24.0, surprise=20.0)


def test_a_silent_service_outranks_its_louder_callers() -> None:
    # checkout fell silent (it is down): frontend sees errors and scores highest; payment, which
    # only checkout calls, lost its traffic and fell silent too.
    result = _result([[1, 1, 1], [9, 2, 3], [9, 2, 3], [9, 2, 3]])
    silent = {"checkout": _silence(), "payment": _silence()}
    ranking = rank_root_causes(result, ALL, EDGES, silent=silent)
    assert [c.service for c in ranking] == ["checkout", "payment", "frontend"]
    assert ranking[0].explained_by is None and ranking[0].silence is silent["checkout"]
    assert ranking[1].explained_by == "checkout"  # silence flows down to callees
    assert ranking[0].evidence.startswith("silent: no log events for 4.0 min")
    assert "its caller checkout is silent too" in ranking[1].evidence
    assert ranking[0].confidence > ranking[2].confidence
    assert rank_root_causes(result, ALL, EDGES)[0].service == "frontend"  # scores alone


def test_a_service_complaining_in_its_logs_outranks_louder_quiet_scores() -> None:
    # payment writes new errors about itself; frontend's metrics moved more but its logs did not.
    result = _result([[1, 1, 1], [9, 2, 3], [9, 2, 3], [9, 2, 3]])
    ranking = rank_root_causes(result, ALL, (), log_problems={"payment": 14.0, "checkout": 0.0})
    assert [c.service for c in ranking] == ["payment", "frontend", "checkout"]
    assert ranking[0].evidence.startswith("14 more warning/error log lines than usual")
    silent = {"checkout": _silence()}
    both = rank_root_causes(result, ALL, (), silent=silent, log_problems={"payment": 14.0})
    assert [c.service for c in both][:2] == ["checkout", "payment"]  # silence comes first


def test_missing_usual_log_lines_rank_below_complaints_and_above_scores_alone() -> None:
    # checkout stopped writing a usual statement (its code path broke) without an error line;
    # frontend's metrics moved more; payment complains in its logs.
    result = _result([[1, 1, 1], [9, 2, 3], [9, 2, 3], [9, 2, 3]])
    missing = {"checkout": 41.0, "frontend": 0.0}
    alone = rank_root_causes(result, ALL, (), missing_lines=missing)
    assert [c.service for c in alone] == ["checkout", "frontend", "payment"]
    assert alone[0].evidence.startswith("41 of its usual log lines missing")
    assert alone[0].missing_lines == 41.0 and alone[1].missing_lines == 0.0
    both = rank_root_causes(result, ALL, (), log_problems={"payment": 3.0}, missing_lines=missing)
    assert [c.service for c in both] == ["payment", "checkout", "frontend"]


def test_a_caller_missing_lines_ranks_below_its_callee_missing_lines_too() -> None:
    # payment's code path broke (it misses a usual statement); checkout, whose call to it now
    # fails, takes another path and misses lines too, with larger scores.
    result = _result([[1, 1, 1], [3, 9, 2], [3, 9, 2], [3, 9, 2]])
    missing = {"checkout": 30.0, "payment": 12.0}
    ranking = rank_root_causes(result, ALL, EDGES, missing_lines=missing)
    assert [c.service for c in ranking] == ["payment", "checkout", "frontend"]
    assert ranking[0].missing_below is None and ranking[1].missing_below == "payment"
    assert ranking[1].evidence.endswith("its callee payment misses usual lines too")
    # Without the callee's missing lines, or without the graph, checkout is no echo.
    alone = rank_root_causes(result, ALL, EDGES, missing_lines={"checkout": 30.0})
    assert [c.service for c in alone][0] == "checkout" and alone[0].missing_below is None
    no_graph = rank_root_causes(result, ALL, (), missing_lines=missing)
    assert [c.service for c in no_graph] == ["checkout", "payment", "frontend"]
    # The echo stays above services that miss nothing.
    only_frontend_scores = _result([[1, 1, 1], [9, 3, 2], [9, 3, 2], [9, 3, 2]])
    echo = rank_root_causes(only_frontend_scores, ALL, EDGES, missing_lines=missing)
    assert [c.service for c in echo] == ["payment", "checkout", "frontend"]


def test_the_lead_is_a_share_of_the_window_duration_not_a_count_of_windows() -> None:
    # Event-variant windows: 32 s long, ending a second apart. checkout (large score) crosses its
    # level at window 10; its callee payment one window (1 s) earlier is jitter, not an order.
    # Eight windows (8 s, over an eighth of 32 s) earlier, payment explains checkout.
    def dense(payment_onset: int) -> ScoreResult:
        scores = np.full((20, 3), 1.0)
        scores[10:, 1] = 9.0  # checkout
        scores[payment_onset:, 2] = 3.0  # payment
        ends = pd.date_range("2024-06-01", periods=20, freq="1s", tz="UTC")
        return ScoreResult(
            window_scores=scores.max(axis=1),
            service_scores=scores,
            metric_scores=np.stack([scores, np.full_like(scores, 0.5)], axis=2),
            starts=ends - pd.Timedelta("32s"),
            ends=ends,
            services=SERVICES,
            features=FEATURES,
            threshold=2.0,
        )

    every = np.ones(20, dtype=bool)
    close = rank_root_causes(dense(9), every, EDGES)
    assert [c.service for c in close][:2] == ["checkout", "payment"]
    assert close[0].explained_by is None
    early = rank_root_causes(dense(2), every, EDGES)
    assert [c.service for c in early] == ["payment", "frontend", "checkout"]
    assert early[2].explained_by == "payment"


def _minutely(scores: np.ndarray) -> ScoreResult:
    """``[N, S]`` service scores of 8-minute windows ending a minute apart, threshold 2."""
    ends = pd.date_range("2024-06-01T00:08", periods=len(scores), freq="1min", tz="UTC")
    return ScoreResult(
        window_scores=scores.max(axis=1),
        service_scores=scores,
        metric_scores=np.stack([scores, scores], axis=2),
        starts=ends - pd.Timedelta("8min"),
        ends=ends,
        services=SERVICES,
        features=FEATURES,
        threshold=2.0,
    )


def _flagged(flags: list[int]) -> ScoreResult:
    """``flags`` says which windows are above threshold."""
    return _minutely(np.array([[3.0 if f else 1.0] * 3 for f in flags]))


def test_periods_merge_short_normal_gaps_and_keep_incidents_apart() -> None:
    # A 2-minute dip inside an incident (a quarter of the 8-minute window) is one period; a
    # 3-minute gap, though the windows still overlap, separates two incidents.
    one = anomalous_periods(_flagged([0, 1, 1, 0, 1, 1, 0]))
    assert [(p.start, p.end, p.windows) for p in one] == [
        (pd.Timestamp("2024-06-01T00:01Z"), pd.Timestamp("2024-06-01T00:13Z"), 5)
    ]
    two = anomalous_periods(_flagged([0, 1, 1, 0, 0, 1, 1]))
    assert [p.windows for p in two] == [2, 2]


def _topped_by(tops: str) -> ScoreResult:
    """Every window anomalous; window i is topped by service ``tops[i]`` ('f', 'c' or 'p')."""
    column = {"f": 0, "c": 1, "p": 2}
    scores = np.full((len(tops), 3), 2.5)
    for i, letter in enumerate(tops):
        scores[i, column[letter]] = 6.0
    return _minutely(scores)


def test_a_run_splits_where_another_service_takes_over() -> None:
    # 8-minute windows: payment tops 7 windows (ends spanning 6 min >= half a window), then
    # checkout 6 (5 min): two reports, each naming its own origin, and the cut is where checkout
    # took over.
    periods = anomalous_periods(_topped_by("ppppppp" + "cccccc"))
    assert [(p.top_service, p.windows) for p in periods] == [("payment", 7), ("checkout", 6)]
    assert periods[1].start == pd.Timestamp("2024-06-01T00:07Z")


def test_brief_changes_of_the_top_service_do_not_split() -> None:
    # frontend on top for 4 windows (3 min < half a window) inside payment's run, and a short
    # tail: one period.
    periods = anomalous_periods(_topped_by("ppppp" + "ffff" + "ppppp" + "ccc"))
    assert [(p.top_service, p.windows) for p in periods] == [("payment", 17)]


def test_threshold_flickers_are_not_reported() -> None:
    # 8-minute windows a minute apart: a lone anomalous window spans no time and makes no period;
    # two consecutive ones span a minute, an eighth of a window, and do.
    assert anomalous_periods(_flagged([0, 0, 1, 0, 0, 0, 0])) == []
    assert anomalous_periods(_flagged([0, 0, 1, 0, 0, 1, 0])) == []
    assert [p.windows for p in anomalous_periods(_flagged([0, 1, 1, 0, 0, 0, 0]))] == [2]

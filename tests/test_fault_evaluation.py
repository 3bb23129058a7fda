"""Judging detectors against injected faults: fault windows, training range, detection, AC@k."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml_monitoring_service.data.pod_recordings import InjectedFault
from ml_monitoring_service.data.schema import MESSAGE, SERVICE, SEVERITY, TIMESTAMP
from ml_monitoring_service.detectors import ScoreResult
from ml_monitoring_service.explain.log_evidence import LogEvidence, ServiceEvidence
from ml_monitoring_service.fault_evaluation import (
    FaultOutcome,
    FaultWindow,
    accuracy_at_k,
    alarm_counts,
    fault_windows,
    judge,
    quiet_stretches,
    summarise,
    training_range,
)
from ml_monitoring_service.rootcause import rank_period

T0 = pd.Timestamp("2024-01-01T00:00Z")


def minutes(n: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(minutes=n)


def fault(at: float, service: str = "api") -> InjectedFault:
    return InjectedFault(minutes(at), service, f"{service}-5d8b7c6d9f-abcde", "cpu")


def test_fault_windows_are_cut_at_the_next_injection() -> None:
    windows = fault_windows([fault(20), fault(10, "db")])
    assert [(w.service, w.start, w.stop) for w in windows] == [
        ("db", minutes(10), minutes(15)),
        ("api", minutes(20), minutes(25)),
    ]
    assert fault_windows([fault(10), fault(13)])[0].stop == minutes(13)


def test_quiet_stretches_leave_fifteen_minutes_after_each_injection() -> None:
    injections = [minutes(10), minutes(20), minutes(60)]
    assert quiet_stretches(injections, minutes(0), minutes(100)) == [
        (minutes(0), minutes(10)),
        (minutes(35), minutes(60)),
        (minutes(75), minutes(100)),
    ]


def test_training_prefers_an_hour_of_quiet_between_injections() -> None:
    injections = [minutes(0), minutes(100), minutes(200)]
    # 15..100 (85 min) lies between injections and lasts over an hour: same load as the faults.
    assert training_range(injections, minutes(-5), minutes(600)) == (minutes(15), minutes(100))
    # Without such a stretch, the longest quiet one wins.
    short = [minutes(0), minutes(50), minutes(100)]
    assert training_range(short, minutes(-5), minutes(600)) == (minutes(115), minutes(600))
    with pytest.raises(ValueError, match="clear of an injection"):
        training_range([minutes(0)], minutes(0), minutes(10))


def result_for(scores: np.ndarray, service_scores: np.ndarray, threshold: float) -> ScoreResult:
    """Windows of one step ending at minutes 0, 1, 2, …; services ``api`` and ``db``."""
    ends = pd.DatetimeIndex([minutes(i) for i in range(len(scores))])
    return ScoreResult(
        window_scores=scores,
        service_scores=service_scores,
        metric_scores=service_scores[:, :, None],
        starts=ends,
        ends=ends,
        services=("api", "db"),
        features=("cpu",),
        threshold=threshold,
    )


def test_judge_detection_delay_and_rank() -> None:
    scores = np.array([0.1, 0.1, 0.1, 0.2, 0.9, 0.9, 0.1, 0.1])
    services = np.array([[0.0, 1.0]] * 4 + [[0.0, 3.0], [5.0, 0.0]] + [[0.0, 1.0]] * 2)
    result = result_for(scores, services, threshold=0.5)
    window = FaultWindow("api", "cpu", minutes(2.5), minutes(7.5))
    # Ends 3..7 inside; first alert at 4 (1.5 min after 2.5); api sums 5, db 6: db first.
    assert judge(result, window) == FaultOutcome(True, 1.5, 2)
    # Ends 6..7: below threshold; db has the only non-zero service score.
    missed = FaultWindow("db", "cpu", minutes(5.5), minutes(7.5))
    assert judge(result, missed) == FaultOutcome(False, None, 1)
    unscored = FaultWindow("db", "cpu", minutes(30), minutes(35))
    assert judge(result, unscored) == FaultOutcome(None, None, None)


def log_lines(
    service: str, first: float, last: float, every_s: float, text: str, level: float
) -> pd.DataFrame:
    times = pd.date_range(minutes(first), minutes(last), freq=pd.Timedelta(seconds=every_s))
    return pd.DataFrame(
        {TIMESTAMP: times, SERVICE: service, SEVERITY: level, MESSAGE: f"{text} request 42"}
    )


def complaining_api() -> tuple[ScoreResult, FaultWindow, pd.DataFrame]:
    """db scores highest; api, the injected service, writes new errors about itself."""
    scores = np.array([0.1, 0.1, 0.1, 0.2, 0.9, 0.9, 0.1, 0.1])
    services = np.array([[0.0, 1.0]] * 4 + [[0.0, 3.0], [5.0, 0.0]] + [[0.0, 1.0]] * 2)
    result = result_for(scores, services, threshold=0.5)
    window = FaultWindow("api", "cpu", minutes(2.5), minutes(7.5))
    logs = pd.concat(
        [
            log_lines("api", -50, 7.5, 10, "served", 0.0),
            log_lines("db", -50, 7.5, 10, "query ok for", 0.0),
            log_lines("api", 3.2, 7, 20, "connection pool exhausted for", 2.0),
        ]
    ).sort_values(TIMESTAMP, ignore_index=True)
    return result, window, logs


def test_judge_ranks_a_service_complaining_in_its_logs_first() -> None:
    result, window, logs = complaining_api()
    assert judge(result, window) == FaultOutcome(True, 1.5, 2)  # scores alone: db first
    assert judge(result, window, logs=logs) == FaultOutcome(True, 1.5, 1)
    # The ranking looks back one hour, like a daemon: the same errors at the same rate until
    # 61 minutes before would have made them look ordinary, but they are out of sight.
    history = log_lines("api", -200, -61, 20, "connection pool exhausted for", 2.0)
    with_history = pd.concat([history, logs]).sort_values(TIMESTAMP, ignore_index=True)
    assert judge(result, window, logs=with_history) == FaultOutcome(True, 1.5, 1)
    inside = np.asarray((result.ends >= window.start) & (result.ends < window.stop))
    unbounded = rank_period(result, inside, (), with_history)
    assert [c.service for c in unbounded] == ["db", "api"]


def test_alarm_counts_skip_the_training_range() -> None:
    scores = np.array([0.9, 0.1, 0.9, 0.9, 0.9, 0.1, 0.9, 0.9])
    result = result_for(scores, np.zeros((8, 2)), threshold=0.5)
    # Injection at 3 disturbs ends 3..7 (recovery 15 min); ends 0..1 are training.
    counts = alarm_counts(result, [minutes(3)], (minutes(0), minutes(2)))
    assert counts == {"windows": 6, "alerts": 5, "quiet_windows": 1, "false_alarms": 1}


def test_accuracy_at_k_hand_computed() -> None:
    # Ranks 1, 2, 4, 6: AC@1 1/4, AC@2 2/4, AC@3 2/4, AC@4 3/4, AC@5 3/4.
    assert accuracy_at_k([1, 2, 4, 6, None]) == {
        "ac@1": 0.25,
        "ac@3": 0.5,
        "ac@5": 0.75,
        "avg@5": pytest.approx((0.25 + 0.5 + 0.5 + 0.75 + 0.75) / 5),
    }
    assert accuracy_at_k([None])["avg@5"] is None


def test_summarise_leaves_unscorable_faults_out_of_the_rates() -> None:
    outcomes = [
        FaultOutcome(True, 1.0, 1),
        FaultOutcome(False, None, 3),
        FaultOutcome(None, None, None),
    ]
    summary = summarise(outcomes)
    assert (summary["faults"], summary["scorable"], summary["detected"]) == (3, 2, 1)
    assert summary["detection_rate"] == 0.5 and summary["mean_delay_min"] == 1.0
    assert summary["ac@1"] == 0.5


def test_judges_of_one_recording_share_the_log_evidence_of_a_span() -> None:
    result, window, logs = complaining_api()
    cache: dict[tuple[pd.Timestamp, pd.Timestamp], LogEvidence] = {}
    assert judge(result, window, logs=logs, evidence_cache=cache) == FaultOutcome(True, 1.5, 1)
    (span,) = cache
    assert cache[span].services["api"].problem_excess > 0
    # The next detector's judge reads the evidence kept for the span instead of mining again.
    cache[span] = LogEvidence({"api": ServiceEvidence(), "db": ServiceEvidence(problem_excess=9.0)})
    assert judge(result, window, logs=logs, evidence_cache=cache) == FaultOutcome(True, 1.5, 2)

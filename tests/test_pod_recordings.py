"""Reading per-pod metric and log CSVs (the Nezha layout) into the canonical combined dataset."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml_monitoring_service.config import DEFAULT_CONFIG_PATH, load_config
from ml_monitoring_service.data.pod_recordings import (
    INBOUND_NETWORK_DELAY,
    deployment_names,
    has_edge_latencies,
    inbound_network_delay,
    read_call_graph,
    read_fault_list,
    read_pod_recording,
    recording_services,
)
from ml_monitoring_service.data.schema import MESSAGE, SERVICE, SEVERITY, TIMESTAMP, TRACE_ID
from ml_monitoring_service.data.sources import inference_data, training_data
from ml_monitoring_service.errors import DataValidationError

TINY = Path(__file__).resolve().parent / "resources" / "nezha_tiny" / "rca_data"
BOUTIQUE = TINY / "2024-05-01"
TRAIN_TICKET = TINY / "2024-05-02"
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nezha" / "rca_data"
METRICS = {"cpu": "CpuUsageRate(%)", "latency": "PodServerLatencyP90(s)"}
OB = ("frontend", "cartservice", "checkoutservice")


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def test_deployment_names_strip_replicaset_hash_and_pod_suffix() -> None:
    pods = pd.Series(
        ["frontend-579b9bff58-t2dbm", "ts-order-service-5d8b7c6d9f-abcde", "redis-cart", "web-0"]
    )
    assert deployment_names(pods).tolist() == [
        "frontend",
        "ts-order-service",
        "redis-cart",
        "web-0",
    ]


def test_services_are_the_deployments_with_metric_files() -> None:
    # front_service, dependency and destination_50 are not pods.
    assert recording_services(BOUTIQUE) == ("cartservice", "checkoutservice", "frontend")


def test_metric_rows_use_time_not_the_corrupted_timestamp_column() -> None:
    frame = read_pod_recording(BOUTIQUE, OB, METRICS, logs=False)
    assert list(frame.columns) == [TIMESTAMP, SERVICE, "cpu", "latency", SEVERITY]
    assert len(frame) == 480 and frame[SEVERITY].isna().all()
    checkout = frame[frame[SERVICE] == "checkoutservice"]
    # Its TimeStamp column is 2e8 s off; Time keeps the nanoseconds and the right day.
    assert checkout[TIMESTAMP].iloc[0].floor("min") == utc("2024-05-01 00:00")
    assert checkout[TIMESTAMP].iloc[0].nanosecond != 0
    frontend = frame.loc[frame[SERVICE] == "frontend"].set_index(TIMESTAMP)["cpu"]
    assert frontend[frontend == 95.0].index.floor("min").tolist() == list(
        pd.date_range("2024-05-01 00:21", periods=4, freq="1min", tz="UTC")
    )


def test_log_rows_carry_severity_from_the_message() -> None:
    frame = read_pod_recording(BOUTIQUE, OB, METRICS)
    logs = frame[frame["cpu"].isna()].set_index(SERVICE)
    assert len(logs) == 4
    assert logs[TIMESTAMP].iloc[0] == utc("2024-05-01T00:20:40.123456789")
    assert logs.loc["checkoutservice", SEVERITY] == 2.0
    # JSON "info" and "WARNING" from the same pod; the plain cartservice line has no level.
    assert sorted(logs.loc["frontend", SEVERITY].tolist()) == [0.0, 1.0]
    assert np.isnan(logs.loc["cartservice", SEVERITY])


def test_log_rows_keep_the_line_text_and_metric_rows_have_none() -> None:
    frame = read_pod_recording(BOUTIQUE, OB, METRICS)
    logs = frame[frame["cpu"].isna()].set_index(SERVICE)
    assert logs.loc["cartservice", MESSAGE] == (
        '{"log":"GetCartAsync called with userId=1\\n","stream":"stdout"}'
    )
    assert '\\"message\\":\\"PlaceOrder\\"' in logs.loc["checkoutservice", MESSAGE]
    assert frame.loc[frame["cpu"].notna(), MESSAGE].isna().all()
    assert MESSAGE not in read_pod_recording(BOUTIQUE, OB, METRICS, logs=False).columns


def test_log_rows_carry_their_trace_ids() -> None:
    frame = read_pod_recording(BOUTIQUE, OB, METRICS)
    logs = frame[frame["cpu"].isna()]
    assert logs[TRACE_ID].tolist() == ["t0", "t1", "t2", "t3"]
    assert frame.loc[frame["cpu"].notna(), TRACE_ID].isna().all()


def test_plain_train_ticket_logs_and_their_quirks() -> None:
    services = ("ts-order-service", "ts-ui-dashboard")
    frame = read_pod_recording(TRAIN_TICKET, services, METRICS)
    logs = frame[frame["cpu"].isna()]
    assert logs[SEVERITY].tolist() == [0.0, 1.0, 2.0, 2.0]
    # The line whose TimeUnixNano is a negative sentinel keeps its Timestamp.
    assert logs[TIMESTAMP].iloc[-1] == utc("2024-05-02T08:10:45.5")


def test_time_range_is_half_open_and_naive_bounds_are_utc() -> None:
    start, end = pd.Timestamp("2024-05-01 00:10"), pd.Timestamp("2024-05-01 00:20:41")
    frame = read_pod_recording(BOUTIQUE, OB, METRICS, start, end)
    assert frame[TIMESTAMP].min() >= utc("2024-05-01 00:10")
    assert frame[TIMESTAMP].max() < utc("2024-05-01 00:20:41")
    assert (frame[TIMESTAMP] == utc("2024-05-01T00:20:40.123456789")).sum() == 1
    # Samples at 00:10:19 … 00:20:19 for each pod, plus frontend's log line at 00:20:40.
    assert frame.groupby(SERVICE).size().to_dict() == {
        "cartservice": 11,
        "checkoutservice": 11,
        "frontend": 12,
    }


def test_unknown_service_error_names_it_and_the_directory() -> None:
    with pytest.raises(DataValidationError, match=r"2024-05-01.*adservice.*frontend"):
        read_pod_recording(BOUTIQUE, ("frontend", "adservice"), METRICS)


def test_service_without_data_in_the_range_is_an_error() -> None:
    late = utc("2024-05-01 05:00")
    with pytest.raises(DataValidationError, match=r"no data in \[2024-05-01 05:00"):
        read_pod_recording(BOUTIQUE, OB, METRICS, late, late + pd.Timedelta("1h"))


def test_bad_metric_column_lists_the_available_ones() -> None:
    with pytest.raises(DataValidationError, match=r"CpuUsage%.*available columns.*CpuUsageRate"):
        read_pod_recording(BOUTIQUE, OB, {"cpu": "CpuUsage%"})


def test_fault_list_uses_inject_time(caplog: pytest.LogCaptureFixture) -> None:
    faults = read_fault_list(BOUTIQUE)
    assert [(f.time, f.service, f.kind) for f in faults] == [
        (utc("2024-05-01 00:20:30"), "frontend", "cpu_contention"),
        (utc("2024-05-01 00:40:30"), "cartservice", "network_delay"),
    ]
    assert faults[0].pod == "frontend-579b9bff58-t2dbm"
    with caplog.at_level(logging.WARNING):
        (late,) = read_fault_list(TRAIN_TICKET)
    assert late.time == utc("2024-05-02 08:10:30")
    assert "disagrees with inject_time for 1 of 1" in caplog.text


def test_call_graph_keeps_service_edges_only() -> None:
    assert read_call_graph(BOUTIQUE) == (
        ("checkoutservice", "cartservice"),
        ("frontend", "cartservice"),
        ("frontend", "checkoutservice"),
    )
    assert read_call_graph(BOUTIQUE, ["frontend", "cartservice"]) == (("frontend", "cartservice"),)
    assert read_call_graph(TRAIN_TICKET) == ()


def test_inbound_network_delay_blames_the_callee_whose_wire_is_slow() -> None:
    """Edges into cartservice carry 200 ms more at the caller than at cartservice's server for
    minutes 41-44; nobody else's edges do, and frontend is called by no service."""
    delay = inbound_network_delay(BOUTIQUE, OB)
    during = delay.loc[utc("2024-05-01 00:41:00") : utc("2024-05-01 00:45:00")]
    before = delay.loc[: utc("2024-05-01 00:40:30")]
    assert len(during) == 4 and (during["cartservice"] > 0.19).all()
    assert before["cartservice"].between(0.0005, 0.002).all()
    assert delay["checkoutservice"].between(0.0005, 0.002).all()  # the no-call minute kept
    assert (delay["frontend"] == 0.0).all()


def test_inbound_network_delay_as_a_configured_metric() -> None:
    metrics = {**METRICS, "network_delay_in": INBOUND_NETWORK_DELAY}
    frame = read_pod_recording(BOUTIQUE, OB, metrics, logs=False)
    cart = frame[frame[SERVICE] == "cartservice"].set_index(TIMESTAMP)["network_delay_in"]
    assert cart.notna().all() and len(cart) == 160
    assert (cart.loc[utc("2024-05-01 00:41:00") : utc("2024-05-01 00:45:00")] > 0.19).sum() == 4
    assert cart.loc[: utc("2024-05-01 00:40:00")].max() < 0.002


def test_inbound_network_delay_without_edge_files_says_what_is_missing() -> None:
    assert has_edge_latencies(BOUTIQUE) and not has_edge_latencies(TRAIN_TICKET)
    with pytest.raises(DataValidationError, match=r"source_50.*destination_50.*InboundNetwork"):
        read_pod_recording(
            TRAIN_TICKET, ("ts-order-service",), {"delay": INBOUND_NETWORK_DELAY}, logs=False
        )


def test_directory_without_metrics_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="no metric/ directory"):
        recording_services(tmp_path)


@pytest.mark.skipif(not (SHARED / "2022-08-22").is_dir(), reason="../shared/data/nezha is absent")
def test_real_online_boutique_day() -> None:
    day = SHARED / "2022-08-22"
    services = recording_services(day)
    assert len(services) == 10 and "frontend" in services
    frame = read_pod_recording(day, services, METRICS)
    assert frame[TIMESTAMP].min().year == 2022 and frame[SEVERITY].max() == 0.0
    assert len(read_fault_list(day)) == 24
    assert ("frontend", "checkoutservice") in read_call_graph(day)
    # network_delay into cartservice at 04:27:03: ~230 ms on the wire into it, a few ms before
    cart = inbound_network_delay(day, services)["cartservice"]
    assert cart.loc[utc("2022-08-22 04:28") : utc("2022-08-22 04:31")].min() > 0.1
    assert cart.loc[utc("2022-08-22 04:20") : utc("2022-08-22 04:27")].max() < 0.02


@pytest.mark.skipif(not (SHARED / "2022-08-22").is_dir(), reason="../shared/data/nezha is absent")
def test_shipped_nezha_set_splits_the_day_without_logs() -> None:
    """`nezha-ob` trains on the fault-free evening and scores the fault campaign, metrics only."""
    config = load_config(DEFAULT_CONFIG_PATH).service_set("nezha-ob")
    now = pd.Timestamp("2030-01-01", tz="UTC")  # recordings ignore the clock
    training = training_data(config, now).frame
    scored = inference_data(config, now).frame
    assert set(training[SERVICE]) == set(scored[SERVICE]) == set(config.services)
    assert training[TIMESTAMP].min() >= pd.Timestamp("2022-08-22T08:08:33Z")
    assert scored[TIMESTAMP].max() < pd.Timestamp("2022-08-22T08:08:33Z")
    assert scored[SEVERITY].isna().all() and training[SEVERITY].isna().all()
    first_fault = min(fault.time for fault in read_fault_list(SHARED / "2022-08-22"))
    assert scored[TIMESTAMP].min() < first_fault

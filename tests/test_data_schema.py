"""The canonical combined dataset contract: what is accepted, cleaned, and refused (and how)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from ml_monitoring_service.data.schema import (
    MESSAGE,
    SERVICE,
    SEVERITY,
    TIMESTAMP,
    TRACE_ID,
    to_utc,
    validate_combined,
)
from ml_monitoring_service.errors import DataValidationError

METRICS = ("cpu", "latency")


def frame(**overrides: object) -> pd.DataFrame:
    base = {
        TIMESTAMP: ["2024-01-01T00:00:02", "2024-01-01T00:00:00", "2024-01-01T00:00:01"],
        SERVICE: ["api", "db", "api"],
        "cpu": [1.0, 2.0, 3.0],
        "latency": [10.0, 20.0, 30.0],
        SEVERITY: [0, 1, 2],
    }
    base.update(overrides)
    return pd.DataFrame(base)


def test_column_names_match_the_documented_contract() -> None:
    assert (TIMESTAMP, SERVICE, SEVERITY, MESSAGE) == (
        "timestamp",
        "service",
        "severity_level",
        "message",
    )


def test_log_messages_are_kept_as_text_with_gaps_as_missing() -> None:
    out = validate_combined(frame(**{MESSAGE: ["late", None, ""]}), None, METRICS)
    assert list(out.columns) == [TIMESTAMP, SERVICE, "cpu", "latency", SEVERITY, MESSAGE]
    assert pd.api.types.is_string_dtype(out[MESSAGE])
    # Sorted with its row (the input's first row is the latest); empty text counts as missing.
    assert out[MESSAGE].isna().tolist() == [True, True, False]
    assert out[MESSAGE].iloc[2] == "late"


def test_trace_ids_are_kept_as_text_and_optional() -> None:
    out = validate_combined(frame(**{TRACE_ID: ["t-3", None, "t-1"]}), None, METRICS)
    assert out[TRACE_ID].isna().tolist() == [True, False, False]
    assert out[TRACE_ID].dropna().tolist() == ["t-1", "t-3"]  # sorted with their rows
    assert TRACE_ID not in validate_combined(frame(), None, METRICS).columns
    with pytest.raises(DataValidationError, match="reserved"):
        validate_combined(frame(**{TRACE_ID: ["a", "b", "c"]}), None, ["cpu", TRACE_ID])


def test_message_column_stays_optional_and_is_no_metric_name() -> None:
    assert MESSAGE not in validate_combined(frame(), None, METRICS).columns
    with pytest.raises(DataValidationError, match="reserved"):
        validate_combined(frame(**{MESSAGE: ["a", "b", "c"]}), None, ["cpu", MESSAGE])


def test_clean_copy_has_canonical_columns_dtypes_and_order() -> None:
    raw = frame(traceID=["x", "y", "z"], hour=[0, 0, 0])
    raw_before = raw.copy()
    out = validate_combined(raw, ["api", "db"], METRICS)

    assert list(out.columns) == [TIMESTAMP, SERVICE, "cpu", "latency", SEVERITY]
    assert str(out[TIMESTAMP].dtype) == "datetime64[ns, UTC]"
    assert pd.api.types.is_string_dtype(out[SERVICE])
    assert all(out[c].dtype == np.float64 for c in ("cpu", "latency", SEVERITY))
    assert out[TIMESTAMP].is_monotonic_increasing
    assert out["cpu"].tolist() == [2.0, 3.0, 1.0]
    assert list(out.index) == [0, 1, 2]
    pd.testing.assert_frame_equal(raw, raw_before)  # the input is not modified


def test_sort_is_stable_for_equal_timestamps() -> None:
    raw = frame(**{TIMESTAMP: ["2024-01-01T00:00:00"] * 3, "cpu": [3.0, 1.0, 2.0]})
    assert validate_combined(raw, None, METRICS)["cpu"].tolist() == [3.0, 1.0, 2.0]


def test_empty_frame_is_refused() -> None:
    with pytest.raises(DataValidationError, match="empty"):
        validate_combined(frame().iloc[0:0], None, METRICS)


@pytest.mark.parametrize("column", [TIMESTAMP, SERVICE])
def test_missing_key_column_is_named_with_available_columns(column: str) -> None:
    with pytest.raises(DataValidationError, match=f"no '{column}' column") as err:
        validate_combined(frame().drop(columns=column), None, METRICS)
    assert "'cpu'" in str(err.value)  # lists what is there


def test_missing_metric_lists_missing_and_available_columns() -> None:
    with pytest.raises(DataValidationError) as err:
        validate_combined(frame(), None, ["cpu", "memory", "latency", "disk"])
    message = str(err.value)
    assert "['memory', 'disk']" in message
    assert "available columns" in message and "'latency'" in message


def test_reserved_name_cannot_be_a_metric() -> None:
    with pytest.raises(DataValidationError, match="reserved"):
        validate_combined(frame(), None, ["cpu", SEVERITY])


def test_configured_service_without_rows_is_named_with_services_present() -> None:
    with pytest.raises(DataValidationError) as err:
        validate_combined(frame(), ["api", "db", "payments"], METRICS)
    message = str(err.value)
    assert "['payments']" in message
    assert "['api', 'db']" in message


def test_empty_service_list_is_refused() -> None:
    with pytest.raises(DataValidationError, match="no services configured"):
        validate_combined(frame(), [], METRICS)


def test_unconfigured_services_are_dropped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ml_monitoring_service.data.schema"):
        out = validate_combined(frame(), ["api"], METRICS)
    assert set(out[SERVICE]) == {"api"}
    assert len(out) == 2
    assert "'db'" in caplog.text and "not configured" in caplog.text


def test_all_services_kept_when_none_configured() -> None:
    assert set(validate_combined(frame(), None, METRICS)[SERVICE]) == {"api", "db"}


def test_missing_service_name_is_refused() -> None:
    with pytest.raises(DataValidationError, match="1 of 3 rows have no service"):
        validate_combined(frame(**{SERVICE: ["api", None, "db"]}), None, METRICS)


def test_unparseable_timestamp_reports_count_and_example() -> None:
    bad = frame(**{TIMESTAMP: ["2024-01-01T00:00:00", "yesterday-ish", "31/31/2024 99:00"]})
    with pytest.raises(DataValidationError) as err:
        validate_combined(bad, None, METRICS)
    message = str(err.value)
    assert "'timestamp'" in message
    assert "2 of 3" in message
    assert "'yesterday-ish'" in message


def test_missing_timestamp_is_refused() -> None:
    with pytest.raises(DataValidationError, match="1 of 3 rows have no timestamp"):
        validate_combined(frame(**{TIMESTAMP: ["2024-01-01", None, "2024-01-02"]}), None, METRICS)


def test_naive_timestamps_are_taken_as_utc() -> None:
    out = to_utc(pd.Series(["2024-06-01T12:00:00.123456"]))
    assert str(out.dtype) == "datetime64[ns, UTC]"
    assert out.iloc[0] == pd.Timestamp("2024-06-01T12:00:00.123456", tz="UTC")


def test_offset_aware_strings_are_converted_to_utc() -> None:
    out = to_utc(pd.Series(["2024-06-01T14:00:00+02:00", "2024-06-01T07:00:00-05:00"]))
    assert out.tolist() == [pd.Timestamp("2024-06-01T12:00:00", tz="UTC")] * 2


def test_datetime_columns_naive_and_zoned() -> None:
    naive = pd.Series(pd.to_datetime(["2024-06-01 12:00"]))
    zoned = naive.dt.tz_localize("Europe/Berlin")
    assert to_utc(naive).iloc[0] == pd.Timestamp("2024-06-01 12:00", tz="UTC")
    assert to_utc(zoned).iloc[0] == pd.Timestamp("2024-06-01 10:00", tz="UTC")


@pytest.mark.parametrize(
    "epoch",
    [1717243200, 1717243200.0, 1717243200000, 1717243200000000, 1717243200000000000],
    ids=["s-int", "s-float", "ms", "us", "ns"],
)
def test_epoch_numbers_unit_is_inferred(epoch: float) -> None:
    out = to_utc(pd.Series([epoch]))
    assert str(out.dtype) == "datetime64[ns, UTC]"
    assert out.iloc[0] == pd.Timestamp("2024-06-01T12:00:00", tz="UTC")


def test_epoch_nanoseconds_keep_full_precision() -> None:
    out = to_utc(pd.Series([1717243200123456789]))
    assert out.iloc[0].value == 1717243200123456789


def test_mixed_object_column_of_strings_and_epoch_ms() -> None:
    out = to_utc(pd.Series(["2024-06-01T12:00:00Z", 1717243200000, None], dtype=object))
    assert out.iloc[0] == out.iloc[1] == pd.Timestamp("2024-06-01T12:00:00", tz="UTC")
    assert pd.isna(out.iloc[2])


def test_boolean_timestamps_are_refused() -> None:
    with pytest.raises(DataValidationError, match="booleans"):
        to_utc(pd.Series([True, False], name=TIMESTAMP))


def test_metric_strings_become_floats_and_infinities_nan(caplog: pytest.LogCaptureFixture) -> None:
    raw = frame(cpu=["1.5", "NaN", "+Inf"], latency=["Inf", "", "-inf"])
    with caplog.at_level(logging.WARNING, logger="ml_monitoring_service.data.schema"):
        out = validate_combined(raw, None, METRICS)
    by_row = out.set_index(TIMESTAMP).sort_index()
    assert by_row["cpu"].tolist()[2] == 1.5
    assert out["cpu"].isna().sum() == 2
    assert out["latency"].isna().all()
    assert not np.isinf(out[list(METRICS)].to_numpy()).any()
    assert "'cpu': replaced 1 non-finite" in caplog.text
    assert "'latency': replaced 2 non-finite" in caplog.text


def test_numeric_infinities_are_replaced_too() -> None:
    out = validate_combined(frame(cpu=[np.inf, 1.0, -np.inf]), None, METRICS)
    assert out["cpu"].isna().sum() == 2


def test_unparseable_metric_text_is_refused_with_column_and_value() -> None:
    with pytest.raises(DataValidationError) as err:
        validate_combined(frame(latency=["12", "fast", "13"]), None, METRICS)
    message = str(err.value)
    assert "'latency'" in message and "'fast'" in message and "1 values" in message


def test_severity_added_as_nan_when_absent() -> None:
    out = validate_combined(frame().drop(columns=SEVERITY), None, METRICS)
    assert out[SEVERITY].dtype == np.float64
    assert out[SEVERITY].isna().all()


def test_severity_level_names_map_to_numbers() -> None:
    out = validate_combined(frame(**{SEVERITY: ["INFO", "warning", "Error"]}), None, METRICS)
    assert sorted(out[SEVERITY].tolist()) == [0.0, 1.0, 2.0]

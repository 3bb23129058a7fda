"""Reading combined datasets from disk: formats, the reference recording's quirks, round-trips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml_monitoring_service.data.readers import read_combined, write_combined
from ml_monitoring_service.data.schema import (
    MESSAGE,
    SERVICE,
    SEVERITY,
    TIMESTAMP,
    validate_combined,
)
from ml_monitoring_service.errors import DataValidationError

RESOURCES = Path(__file__).resolve().parent / "resources"
SMALL = RESOURCES / "combined_small.json"
METRICS = ("cpu", "memory", "latency")
REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "reference-recording"


def canonical() -> pd.DataFrame:
    """A frame exercising the awkward parts: ns timestamps, NaN, number-like service names."""
    rng = np.random.default_rng(0)
    raw = pd.DataFrame(
        {
            TIMESTAMP: pd.Timestamp("2024-03-10T01:59:59.123456789Z")
            + pd.to_timedelta(np.arange(6) * 1_000_000_001, unit="ns"),
            SERVICE: ["api", "007", "api", "db", "007", "db"],
            "cpu": rng.normal(50, 10, 6),
            "memory": [1.0 / 3.0, np.nan, 2.0, 1e-300, 7.0, 8.5],
            "latency": rng.lognormal(3, 1, 6),
            SEVERITY: [0.0, 1.0, np.nan, 2.0, 0.0, 0.0],
        }
    )
    return validate_combined(raw, None, METRICS)


def test_small_fixture_is_read_into_the_canonical_shape() -> None:
    out = read_combined(SMALL, METRICS)
    assert list(out.columns) == [TIMESTAMP, SERVICE, *METRICS, SEVERITY, "trace_id"]
    assert len(out) == 7
    assert out[TIMESTAMP].is_monotonic_increasing
    assert str(out[TIMESTAMP].dtype) == "datetime64[ns, UTC]"


def test_precise_timestamp_column_is_preferred() -> None:
    out = read_combined(SMALL, METRICS)
    first = out.iloc[0]
    assert first[SERVICE] == "api"
    assert first[TIMESTAMP] == pd.Timestamp("2024-11-30T14:40:00.124926", tz="UTC")
    # Two rows share the rounded 14:40:05.000 but the precise times order api before db.
    tied = out[out[TIMESTAMP].dt.floor("s") == pd.Timestamp("2024-11-30T14:40:04", tz="UTC")]
    assert tied[SERVICE].tolist() == ["api"]


def test_rounded_timestamp_fills_gaps_in_the_precise_one(tmp_path: Path) -> None:
    rows = json.loads(SMALL.read_text())
    rows[0]["timestamp_nanoseconds"] = None
    path = tmp_path / "gaps.json"
    path.write_text(json.dumps(rows))
    out = read_combined(path, METRICS)
    db = out[out[SERVICE] == "db"]
    assert db[TIMESTAMP].iloc[0] == pd.Timestamp("2024-11-30T14:40:02.392", tz="UTC")


def test_epoch_nanosecond_precise_column(tmp_path: Path) -> None:
    records = [
        {
            "timestamp": "2024-11-30T14:40:00.125",
            "service": "api",
            "cpu": 0.5,
            "memory": 1.0,
            "latency": 0.5,
            "timestamp_nanoseconds": 1732977600124926000,
        },
    ]
    path = tmp_path / "mlflow_style.json"
    path.write_text(json.dumps(records))
    out = read_combined(path, METRICS)
    assert out[TIMESTAMP].iloc[0].value == 1732977600124926000


def test_extra_columns_and_unconfigured_services_are_dropped() -> None:
    out = read_combined(SMALL, METRICS, services=["api", "db", "cache"])
    assert "hour" not in out.columns and "traceID_num" not in out.columns
    assert set(out[SERVICE]) == {"api", "db", "cache"}  # legacy-batch dropped
    assert out["latency"].isna().sum() == 1  # JSON null stays a gap


def test_trace_ids_are_kept_under_the_canonical_name() -> None:
    out = read_combined(SMALL, METRICS)
    raw = pd.read_json(SMALL).sort_values("timestamp_nanoseconds", kind="stable")
    assert "traceID" not in out.columns
    assert out["trace_id"].tolist() == raw["traceID"].astype(str).tolist()


def test_configured_service_missing_from_file_names_the_file() -> None:
    with pytest.raises(DataValidationError) as err:
        read_combined(SMALL, METRICS, services=["api", "payments"])
    assert "combined_small.json" in str(err.value) and "['payments']" in str(err.value)


@pytest.mark.parametrize(
    "name", ["data.parquet", "data.csv", "data.csv.gz", "data.json", "data.jsonl", "data.json.gz"]
)
def test_round_trip_is_exact(tmp_path: Path, name: str) -> None:
    original = canonical()
    path = write_combined(original, tmp_path / "nested" / name)
    assert path.is_file()
    back = read_combined(path, METRICS)
    pd.testing.assert_frame_equal(back, original, check_exact=True)


@pytest.mark.parametrize("name", ["data.parquet", "data.csv.gz", "data.json", "data.jsonl"])
def test_log_messages_survive_a_round_trip(tmp_path: Path, name: str) -> None:
    # Multi-line traces, quotes, commas, number-like text and gaps (metric samples) all come back.
    messages = [
        "GET /cart 200 in 12 ms",
        None,
        'java.lang.IllegalStateException: "pool", closed\n\tat a.b.C.m(C.java:12)',
        "404",
        None,
        "ünïcode, done",
    ]
    original = validate_combined(canonical().assign(**{MESSAGE: messages}), None, METRICS)
    assert list(original.columns)[-1] == MESSAGE
    back = read_combined(write_combined(original, tmp_path / name), METRICS)
    pd.testing.assert_frame_equal(back, original, check_exact=True)
    assert back[MESSAGE].iloc[2].count("\n") == 1 and back[MESSAGE].isna().sum() == 2


def test_jsonl_is_read(tmp_path: Path) -> None:
    rows = json.loads(SMALL.read_text())
    path = tmp_path / "lines.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    pd.testing.assert_frame_equal(read_combined(path, METRICS), read_combined(SMALL, METRICS))


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="not found.*nope.json"):
        read_combined(tmp_path / "nope.json", METRICS)


def test_unknown_suffix_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "data.xlsx"
    path.write_bytes(b"")
    with pytest.raises(DataValidationError, match=r"data\.xlsx.*supported: .*\.parquet"):
        read_combined(path, METRICS)
    with pytest.raises(DataValidationError, match="suffix"):
        write_combined(canonical(), tmp_path / "out.txt")


def test_malformed_json_is_reported_with_path(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('[{"timestamp": "2024-01-01", "service": ')
    with pytest.raises(DataValidationError, match="broken.json.*json"):
        read_combined(path, METRICS)


def test_empty_files_are_reported(tmp_path: Path) -> None:
    json_path = tmp_path / "empty.json"
    json_path.write_text("[]")
    csv_path = tmp_path / "empty.csv"
    csv_path.write_text("")
    with pytest.raises(DataValidationError, match="no rows"):
        read_combined(json_path, METRICS)
    with pytest.raises(DataValidationError, match="empty.csv"):
        read_combined(csv_path, METRICS)


def test_csv_keeps_number_like_service_names(tmp_path: Path) -> None:
    path = tmp_path / "svc.csv"
    path.write_text("timestamp,service,cpu,memory,latency\n2024-01-01T00:00:00Z,007,1,2,3\n")
    assert read_combined(path, METRICS)[SERVICE].tolist() == ["007"]


needs_reference = pytest.mark.skipif(
    not REFERENCE.is_dir(), reason=f"reference recording not available at {REFERENCE}"
)


@needs_reference
@pytest.mark.parametrize(
    ("relative", "services"),
    [
        (
            "tests/resources/combined_dataset_test.json",
            {"mobile-bff", "onboarding", "private-customer-service", "retail-address-service"},
        ),
        (
            "output/transfer/training_dataset.json",
            {"mobile-bff", "transfer-service", "transfer-validation-service"},
        ),
    ],
)
def test_reference_recording_is_readable(relative: str, services: set[str]) -> None:
    path = REFERENCE / relative
    if not path.is_file():
        pytest.skip(f"{relative} not in the reference recording")
    out = read_combined(path, METRICS, services=sorted(services))
    assert set(out[SERVICE]) == services
    assert len(out) > 500
    assert out[TIMESTAMP].is_monotonic_increasing
    # Microsecond detail only exists in timestamp_nanoseconds, so it proves that column was used.
    assert (out[TIMESTAMP].dt.microsecond % 1000 != 0).mean() > 0.5
    # The recordings have the odd event without metric values (JSON null), kept as NaN gaps.
    assert out[list(METRICS)].isna().to_numpy().mean() < 0.01

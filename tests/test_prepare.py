"""Densification, scaling, windows and calendar features on small hand-checked inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml_monitoring_service.errors import ConfigError, DataValidationError, InsufficientDataError
from ml_monitoring_service.prepare.densify import (
    MAX_COUNT_HORIZON,
    MIN_COUNT_HORIZON,
    densify,
    fit_count_horizon,
    scale_floors,
)
from ml_monitoring_service.prepare.normalise import RobustScaler
from ml_monitoring_service.prepare.time_features import cyclic_time_features
from ml_monitoring_service.prepare.variants import Variant
from ml_monitoring_service.prepare.windows import make_windows, window_starts


@pytest.fixture
def frame() -> pd.DataFrame:
    """Two services reporting at irregular times; b's second event is an error log."""
    t = pd.Timestamp("2024-05-01 12:00:00", tz="UTC")
    return pd.DataFrame(
        {
            "timestamp": [
                t,
                t + pd.Timedelta("1.5s"),
                t + pd.Timedelta("2s"),
                t + pd.Timedelta("4.2s"),
            ],
            "service": ["a", "b", "a", "b"],
            "cpu": [1.0, 10.0, 2.0, 20.0],
            "severity_level": [0.0, 0.0, 0.0, 2.0],
        }
    )


def test_variant_parsing_and_names() -> None:
    assert Variant.parse("event").name == "event"
    assert Variant.parse("grid:30s").name == "grid_30s"
    assert Variant.parse("grid:1min").label == "grid:1min"
    assert Variant.parse(" grid:1s ").freq == pd.Timedelta("1s")
    with pytest.raises(ConfigError, match="unknown variant"):
        Variant.parse("hourly")
    with pytest.raises(ConfigError, match="not a frequency"):
        Variant.parse("grid:soon")


def test_event_densify_keeps_observed_times_and_forward_fills(frame: pd.DataFrame) -> None:
    tensor = densify(frame, ["a", "b"], ["cpu"], Variant.parse("event"), pd.Timedelta("1s"))
    assert list(tensor.timestamps) == list(frame["timestamp"])
    assert tensor.features == ("cpu", "severity_level", "event_count", "seconds_since_event")
    cpu = tensor.values[:, :, 0]
    assert np.isnan(cpu[0, 1])  # b not yet observed
    np.testing.assert_array_equal(cpu[1:, 0], [1.0, 2.0, 2.0])  # a carried forward
    np.testing.assert_array_equal(cpu[1:, 1], [10.0, 10.0, 20.0])
    # severity is an event attribute: not carried forward, 0 where the service did not log
    np.testing.assert_array_equal(tensor.values[:, 1, 1], [0.0, 0.0, 0.0, 2.0])
    np.testing.assert_array_equal(tensor.observed[:, 0], [True, False, True, False])
    # square root of the observations in the last count_horizon (1 s here), unknown (NaN) until a
    # whole horizon of data lies behind the step
    np.testing.assert_allclose(tensor.values[:, 0, 2] ** 2, [np.nan, 0.0, 1.0, 0.0])
    np.testing.assert_allclose(tensor.values[:, 1, 2] ** 2, [np.nan, 1.0, 1.0, 1.0])


def test_grid_densify_fills_every_step(frame: pd.DataFrame) -> None:
    tensor = densify(frame, ["a", "b"], ["cpu"], Variant.parse("grid:1s"), pd.Timedelta("2s"))
    assert len(tensor.timestamps) == 5  # 12:00:00 .. 12:00:04
    assert (tensor.timestamps[1:] - tensor.timestamps[:-1] == pd.Timedelta("1s")).all()
    np.testing.assert_array_equal(tensor.values[:, 0, 0], [1.0, 1.0, 2.0, 2.0, 2.0])
    np.testing.assert_array_equal(tensor.values[1:, 1, 0], [10.0, 10.0, 10.0, 20.0])
    np.testing.assert_array_equal(tensor.values[:, 1, 1], [0.0, 0.0, 0.0, 0.0, 2.0])
    np.testing.assert_allclose(tensor.values[:, 0, 2] ** 2, [np.nan, np.nan, 1.0, 1.0, 0.0])


def test_event_count_is_unknown_until_a_whole_horizon_lies_behind() -> None:
    """A partial count at the start of a scored lookback would look like every service falling
    silent at once; those steps are NaN, which the scaler maps to the training median."""
    t = pd.Timestamp("2024-05-01", tz="UTC")
    steps = pd.date_range(t, periods=10, freq="1min")
    frame = pd.DataFrame({"timestamp": steps, "service": "a", "cpu": 1.0, "severity_level": 0.0})
    tensor = densify(frame, ["a"], ["cpu"], Variant.parse("grid:1min"))
    counts = tensor.values[:, 0, 2] ** 2
    assert np.isnan(counts[:4]).all()  # 4-minute horizon
    np.testing.assert_allclose(counts[4:], 4.0)
    scaled = RobustScaler().fit(tensor.values).transform(tensor.values)
    np.testing.assert_array_equal(scaled[:4, 0, 2], 0.0)


@pytest.mark.parametrize("variant", ["event", "grid:1s"])
def test_log_messages_do_not_change_the_tensor(frame: pd.DataFrame, variant: str) -> None:
    with_text = frame.assign(message=["ok", None, "GET /a 200", "Traceback ...\nValueError: x"])
    plain = densify(frame, ["a", "b"], ["cpu"], Variant.parse(variant))
    text = densify(with_text, ["a", "b"], ["cpu"], Variant.parse(variant))
    assert text.features == plain.features
    np.testing.assert_array_equal(text.values, plain.values)
    np.testing.assert_array_equal(text.observed, plain.observed)


def test_grid_bucket_takes_last_value_and_max_severity() -> None:
    t = pd.Timestamp("2024-05-01", tz="UTC")
    frame = pd.DataFrame(
        {
            "timestamp": [
                t - pd.Timedelta("1min"),
                t,
                t + pd.Timedelta("10s"),
                t + pd.Timedelta("20s"),
            ],
            "service": ["a"] * 4,
            "cpu": [0.0, 1.0, 5.0, 3.0],
            "severity_level": [0.0, 1.0, 2.0, 0.0],
        }
    )
    tensor = densify(frame, ["a"], ["cpu"], Variant.parse("grid:30s"), pd.Timedelta("30s"))
    assert tensor.values.shape == (3, 1, 4)
    np.testing.assert_allclose(tensor.values[2, 0], [3.0, 2.0, np.sqrt(3.0), 0.0])


def test_event_count_reveals_a_silent_service() -> None:
    t = pd.Timestamp("2024-05-01", tz="UTC")
    steps = pd.date_range(t, periods=40, freq="1s")
    silent = (steps >= t + pd.Timedelta("20s")) & (steps < t + pd.Timedelta("30s"))
    frame = pd.DataFrame(
        {
            "timestamp": list(steps) + list(steps[~silent]),
            "service": ["a"] * 40 + ["b"] * int((~silent).sum()),
            "cpu": 1.0,
            "severity_level": 0.0,
        }
    )
    tensor = densify(frame, ["a", "b"], ["cpu"], Variant.parse("grid:1s"), pd.Timedelta("8s"))
    counts = tensor.values[:, 1, 2] ** 2
    assert counts[19] == pytest.approx(8) and counts[27] == 0 and counts[37] == pytest.approx(8)
    assert tensor.values[27, 1, 0] == 1.0  # the gauge is forward-filled and looks calm


def test_the_gap_since_the_last_event_grows_through_a_short_outage_and_stops_at_the_horizon() -> (
    None
):
    t = pd.Timestamp("2024-05-01", tz="UTC")
    events = t + pd.to_timedelta([0.0, 1.0, 2.0, 3.0, 4.5, 20.0, 21.0], unit="s")
    frame = pd.DataFrame(
        {
            "timestamp": list(events) + [t + pd.Timedelta("2s")],
            "service": ["a"] * len(events) + ["late"],
            "cpu": 1.0,
            "severity_level": 0.0,
        }
    )
    tensor = densify(frame, ["a", "late"], ["cpu"], Variant.parse("grid:1s"), pd.Timedelta("10s"))
    gap = tensor.values[:, :, tensor.features.index("seconds_since_event")]
    # a reports at 0..4 s (4.5 s falls in step 4), then nothing until 20 s
    np.testing.assert_array_equal(gap[:5, 0], 0.0)
    np.testing.assert_array_equal(gap[5:15, 0], np.arange(1.0, 11.0))
    np.testing.assert_array_equal(gap[15:20, 0], 10.0)  # capped at the count horizon
    np.testing.assert_array_equal(gap[20:, 0], 0.0)
    assert np.isnan(gap[:2, 1]).all() and gap[2, 1] == 0.0 and gap[21, 1] == 10.0
    # on the event timeline the gap is measured between the observed timestamps
    events_only = densify(frame, ["a"], ["cpu"], Variant.parse("event"), pd.Timedelta("60s"))
    # a reports at every one of its own steps
    np.testing.assert_array_equal(events_only.values[:, 0, 3], np.zeros(len(events)))
    both = densify(frame, ["a", "late"], ["cpu"], Variant.parse("event"), pd.Timedelta("60s"))
    np.testing.assert_allclose(both.values[:, 1, 3], [np.nan, np.nan, 0.0, 1.0, 2.5, 18.0, 19.0])


def test_a_missed_scrape_is_one_step_of_gap_not_a_twenty_sigma_event() -> None:
    """A service scraped every 30 s never shows a gap in training; its gap's scale is then one
    step (the feature's resolution), not the scaler's generic one second."""
    t = pd.Timestamp("2024-05-01", tz="UTC")
    frame = pd.DataFrame(
        {
            "timestamp": pd.date_range(t, periods=240, freq="30s"),
            "service": "a",
            "cpu": np.linspace(1.0, 2.0, 240),
            "severity_level": 0.0,
        }
    )
    grid = Variant.parse("grid:30s")
    train = densify(frame, ["a"], ["cpu"], grid, pd.Timedelta("4min"))
    gap = train.features.index("seconds_since_event")
    floors = scale_floors(train)
    assert floors[gap] == 30.0 and floors[train.features.index("cpu")] == 0.0
    scaler = RobustScaler().fit(train.values, min_scale=floors)
    assert scaler.scale_[0, gap] == 30.0
    missed = densify(frame.drop(index=[100]), ["a"], ["cpu"], grid, pd.Timedelta("4min"))
    assert scaler.transform(missed.values)[100, 0, gap] == pytest.approx(1.0)
    assert RobustScaler().fit(train.values).transform(missed.values)[100, 0, gap] == 20.0
    # the event timeline's step is the median spacing of its timestamps
    assert scale_floors(densify(frame, ["a"], ["cpu"], Variant.parse("event")))[gap] == 30.0


def test_densify_rejects_data_without_configured_services(frame: pd.DataFrame) -> None:
    with pytest.raises(DataValidationError, match="none of the configured services"):
        densify(frame, ["x"], ["cpu"], Variant.parse("event"))


def test_robust_scaler_uses_training_statistics_only() -> None:
    rng = np.random.default_rng(0)
    train = rng.normal(100.0, 10.0, size=(4000, 2, 1))
    scaler = RobustScaler().fit(train)
    assert scaler.median_ == pytest.approx(np.full((2, 1), 100.0), abs=1.0)
    assert scaler.scale_ == pytest.approx(np.full((2, 1), 10.0), rel=0.1)
    shifted = scaler.transform(train + 50.0)
    assert float(np.median(shifted)) == pytest.approx(5.0, abs=0.2)
    restored = RobustScaler.from_dict(scaler.to_dict())
    np.testing.assert_array_equal(restored.transform(train), scaler.transform(train))


def test_robust_scaler_constant_series_does_not_explode() -> None:
    train = np.full((100, 1, 2), 90.0)
    train[:, 0, 1] = 0.0
    scaler = RobustScaler().fit(train)
    moved = scaler.transform(np.array([[[91.0, 1.0]]]))
    assert np.all(np.abs(moved) <= 1.0)  # a one-unit move on a flat series is not a huge z
    assert scaler.transform(np.array([[[np.nan, np.nan]]])).tolist() == [[[0.0, 0.0]]]
    assert np.abs(scaler.transform(np.array([[[1e12, 0.0]]]))).max() == scaler.clip


def test_windows_cover_the_end_and_match_slices() -> None:
    values = np.arange(10 * 2 * 1, dtype=np.float32).reshape(10, 2, 1)
    context = np.zeros((10, 4), dtype=np.float32)
    timestamps = pd.date_range("2024-01-01", periods=10, freq="1s", tz="UTC")
    windows = make_windows(values, context, timestamps, window_size=4, stride=3)
    assert list(window_starts(10, 4, 3)) == [0, 3, 6]
    assert windows.values.shape == (3, 4, 2, 1)
    np.testing.assert_array_equal(windows.values[1], values[3:7])
    assert windows.ends[-1] == timestamps[-1]
    assert list(window_starts(11, 4, 3)) == [0, 3, 6, 7]
    with pytest.raises(InsufficientDataError, match="fewer than one window"):
        window_starts(3, 4, 1)


def test_cyclic_time_features_wrap_midnight() -> None:
    stamps = pd.DatetimeIndex(["2024-01-01 23:59:59", "2024-01-02 00:00:00"], tz="UTC")
    features = cyclic_time_features(stamps)
    assert features.shape == (2, 4)
    assert np.abs(features[0, :2] - features[1, :2]).max() < 1e-3


def test_context_before_scored_from_completes_the_first_counts() -> None:
    """An evaluation scoring a fixed range fetches a horizon before it: the range's first steps
    then carry whole counts, and the context makes no steps of its own."""
    t = pd.Timestamp("2024-05-01", tz="UTC")
    steps = pd.date_range(t, periods=10, freq="1min")
    frame = pd.DataFrame({"timestamp": steps, "service": "a", "cpu": 1.0, "severity_level": 0.0})
    inside_fifth_step = steps[4] + pd.Timedelta("20s")
    tensor = densify(
        frame, ["a"], ["cpu"], Variant.parse("grid:1min"), scored_from=inside_fifth_step
    )
    assert list(tensor.timestamps) == list(steps[4:])  # the step the range starts in is kept
    np.testing.assert_allclose(tensor.values[:, 0, 2] ** 2, 4.0)
    with pytest.raises(DataValidationError, match="no data at or after"):
        after = steps[-1] + pd.Timedelta("1min")
        densify(frame, ["a"], ["cpu"], Variant.parse("grid:1min"), scored_from=after)


def test_count_horizon_is_fitted_to_hold_a_couple_of_dozen_events() -> None:
    """Dense streams are counted over seconds (a half-minute outage moves the count), sparse ones
    over at most four minutes (silence must show within minutes)."""
    t = pd.Timestamp("2024-05-01", tz="UTC")

    def stream(per_minute: float, services: list[str]) -> pd.DataFrame:
        steps = pd.date_range(
            t, t + pd.Timedelta("30min"), freq=pd.Timedelta(minutes=1 / per_minute)
        )
        return pd.concat(
            pd.DataFrame({"timestamp": steps, "service": s, "cpu": 1.0, "severity_level": 0.0})
            for s in services
        )

    # 24 events at 60 a minute: 24 s; the quiet third service does not decide (median)
    dense = pd.concat([stream(60, ["a", "b"]), stream(1, ["c"])]).sort_values("timestamp")
    assert fit_count_horizon(dense, ["a", "b", "c"]) == pd.Timedelta("24s")
    assert fit_count_horizon(stream(1, ["a"]), ["a"]) == MAX_COUNT_HORIZON
    assert fit_count_horizon(stream(3600, ["a"]), ["a"]) == MIN_COUNT_HORIZON
    tensor = densify(dense, ["a", "b", "c"], ["cpu"], Variant.parse("grid:1s"), pd.Timedelta("24s"))
    assert tensor.count_horizon == pd.Timedelta("24s")
    np.testing.assert_allclose(tensor.values[60:, 0, 2] ** 2, 24.0)

"""One contract suite for every detector kind: shapes, validation, persistence, minimum quality."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from conftest import seasonal_tensor, with_spike
from ml_monitoring_service.detectors import (
    IsolationForestDetector,
    PCADetector,
    RandomDetector,
    RobustZScoreDetector,
    TransformerAutoencoderDetector,
    WindowDetector,
)
from ml_monitoring_service.errors import DataValidationError, ModelMismatchError, NotFittedError
from ml_monitoring_service.prepare.densify import ServiceTensor


def fast_transformer() -> WindowDetector:
    return TransformerAutoencoderDetector(
        window_size=16,
        train_stride=2,
        max_epochs=6,
        patience=3,
        d_model=16,
        n_heads=2,
        n_layers=1,
        latent_dim=4,
        temporal_pool=4,
        show_progress=False,
        seed=1,
    )


SMALL = {"window_size": 16, "train_stride": 2}
DETECTOR_FACTORIES = {
    "transformer_autoencoder": fast_transformer,
    "pca": lambda: PCADetector(**SMALL),
    "robust_zscore": lambda: RobustZScoreDetector(**SMALL),
    "isolation_forest": lambda: IsolationForestDetector(**SMALL, n_estimators=50),
    "random": lambda: RandomDetector(**SMALL),
}
LEARNING = sorted(set(DETECTOR_FACTORIES) - {"random"})


_FITTED: dict[str, WindowDetector] = {}


def _fit_once(kind: str, train_val_test) -> WindowDetector:
    if kind not in _FITTED:
        train, val, _ = train_val_test
        _FITTED[kind] = DETECTOR_FACTORIES[kind]().fit(train, val)
    return _FITTED[kind]


@pytest.fixture(params=sorted(DETECTOR_FACTORIES))
def fitted(request: pytest.FixtureRequest, train_val_test) -> WindowDetector:
    return _fit_once(request.param, train_val_test)


@pytest.fixture(params=LEARNING)
def learner(request: pytest.FixtureRequest, train_val_test) -> WindowDetector:
    return _fit_once(request.param, train_val_test)


def test_scores_have_documented_shapes(fitted: WindowDetector, train_val_test) -> None:
    _, _, test = train_val_test
    result = fitted.score(test)
    n = test.n_steps - fitted.window_size + 1
    assert result.window_scores.shape == (n,)
    assert result.service_scores.shape == (n, 3)
    assert result.metric_scores.shape == (n, 3, 3)
    assert np.all(np.isfinite(result.window_scores))
    assert result.ends[-1] == test.timestamps[-1]


def test_threshold_is_persisted_percentile_of_validation(
    fitted: WindowDetector, train_val_test
) -> None:
    _, val, _ = train_val_test
    scores = fitted.score(val).window_scores
    assert fitted.threshold_ == pytest.approx(
        np.percentile(scores, fitted.threshold_percentile), rel=1e-5
    )
    assert 0.0 < np.mean(scores > fitted.threshold_) <= 0.02


def test_injected_spike_scores_high_and_is_attributed(
    learner: WindowDetector, train_val_test
) -> None:
    _, _, test = train_val_test
    broken = with_spike(test, step=150, service=1, feature=1, size=12.0)
    result = learner.score(broken)
    labels = (result.starts <= broken.timestamps[152]) & (result.ends >= broken.timestamps[150])
    assert roc_auc_score(labels, result.window_scores) > 0.8
    if learner.kind == "isolation_forest":
        return  # scores whole windows; its peak is not guaranteed to sit on a 3-step spike
    peak = int(np.argmax(result.window_scores))
    assert labels[peak]
    assert int(np.argmax(result.service_scores[peak])) == 1
    assert result.is_anomalous[labels].any()


def test_random_floor_is_chance(train_val_test) -> None:
    train, val, test = train_val_test
    broken = with_spike(test, step=150, service=1, feature=1, size=12.0)
    result = DETECTOR_FACTORIES["random"]().fit(train, val).score(broken)
    labels = (result.starts <= broken.timestamps[152]) & (result.ends >= broken.timestamps[150])
    assert 0.3 < roc_auc_score(labels, result.window_scores) < 0.7


def test_save_load_gives_identical_scores(
    fitted: WindowDetector, train_val_test, tmp_path: Path
) -> None:
    _, _, test = train_val_test
    fitted.save(tmp_path / "model")
    loaded = WindowDetector.load(tmp_path / "model")
    assert type(loaded) is type(fitted)
    np.testing.assert_allclose(
        loaded.score(test).metric_scores, fitted.score(test).metric_scores, rtol=1e-5
    )
    assert loaded.threshold_ == fitted.threshold_
    assert loaded.metadata_["data_fingerprint"] == fitted.metadata_["data_fingerprint"]


def test_mismatched_services_are_rejected(fitted: WindowDetector, train_val_test) -> None:
    _, _, test = train_val_test
    renamed = ServiceTensor(
        test.values, test.observed, test.timestamps, ("api", "db", "queue"), test.features
    )
    with pytest.raises(ModelMismatchError, match="queue"):
        fitted.score(renamed)


@pytest.mark.parametrize("kind", sorted(DETECTOR_FACTORIES))
def test_unfitted_detector_refuses_to_score(kind: str, train_val_test) -> None:
    with pytest.raises(NotFittedError):
        DETECTOR_FACTORIES[kind]().score(train_val_test[2])


@pytest.mark.parametrize("kind", sorted(DETECTOR_FACTORIES))
def test_too_short_data_is_a_clear_error(kind: str, train_val_test) -> None:
    train, val, _ = train_val_test
    with pytest.raises(DataValidationError, match="fewer than one window"):
        DETECTOR_FACTORIES[kind]().fit(train, val.slice(0, 5))


def test_corrupt_model_directory_is_a_clear_error(fitted: WindowDetector, tmp_path: Path) -> None:
    fitted.save(tmp_path / "model")
    (tmp_path / "model" / "metadata.json").write_text("{not json")
    with pytest.raises(ModelMismatchError, match="corrupt"):
        WindowDetector.load(tmp_path / "model")


def test_seeded_cpu_training_is_reproducible(train_val_test) -> None:
    train, val, test = train_val_test
    first = fast_transformer().fit(train, val).score(test).window_scores
    second = fast_transformer().fit(train, val).score(test).window_scores
    np.testing.assert_array_equal(first, second)


def test_parameters_grow_only_with_the_service_embedding() -> None:
    from ml_monitoring_service.detectors.network import ServiceTransformerAutoencoder

    def count(services: int) -> int:
        network = ServiceTransformerAutoencoder(services, 7, 4, 32, d_model=32)
        return sum(p.numel() for p in network.parameters())

    assert count(50) - count(6) == 44 * 32  # one 32-wide embedding row per extra service


def test_transformer_scores_do_not_depend_on_the_scoring_chunk(
    train_val_test, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scoring is chunked by an attention-memory budget (it shrinks with S²); results must not."""
    from ml_monitoring_service.detectors import transformer

    detector = _fit_once("transformer_autoencoder", train_val_test)
    test = train_val_test[2]
    whole = detector.score(test)
    monkeypatch.setattr(transformer, "_SCORING_ATTENTION_BUDGET", 1)  # one window per chunk
    one_by_one = detector.score(test)
    np.testing.assert_allclose(one_by_one.metric_scores, whole.metric_scores, rtol=1e-5)
    np.testing.assert_array_equal(one_by_one.is_anomalous, whole.is_anomalous)


def test_transformer_training_does_not_depend_on_the_micro_batch(
    train_val_test, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Large sets train in micro-batches under an attention-memory budget; without dropout (the
    only randomness drawn per pass) the summed micro-batch gradients give the same weights."""
    from ml_monitoring_service.detectors import transformer

    train, val, test = train_val_test
    params = dict(window_size=16, max_epochs=2, d_model=16, n_heads=2, dropout=0.0)
    params |= dict(show_progress=False, seed=5, device="cpu")
    whole = TransformerAutoencoderDetector(**params).fit(train, val)
    monkeypatch.setattr(transformer, "_TRAINING_ATTENTION_BUDGET", 1)  # one window per pass
    one_by_one = TransformerAutoencoderDetector(**params).fit(train, val)
    # Float32 sums in another order move a few near-zero weights by ~1e-4 (Adam rescales tiny
    # gradients); a step per micro-batch instead of per batch moves them by ~0.2.
    for a, b in zip(whole.network_.parameters(), one_by_one.network_.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-3)
    np.testing.assert_allclose(whole.epoch_losses_, one_by_one.epoch_losses_, rtol=1e-5)
    np.testing.assert_allclose(
        one_by_one.score(test).window_scores, whole.score(test).window_scores, rtol=1e-5
    )


def test_a_model_scores_only_data_counted_over_its_count_horizon(
    train_val_test, tmp_path: Path
) -> None:
    """``event_count`` over another span has another scale: the model keeps its horizon, and
    data counted otherwise is refused rather than scored as one long anomaly."""
    train, val, test = (
        dataclasses.replace(t, count_horizon=pd.Timedelta("90s")) for t in train_val_test
    )
    detector = RobustZScoreDetector(window_size=16).fit(train, val)
    detector.save(tmp_path / "model")
    loaded = WindowDetector.load(tmp_path / "model")
    assert loaded.count_horizon_ == pd.Timedelta("90s")
    assert loaded.score(test).window_scores.shape == detector.score(test).window_scores.shape
    recounted = dataclasses.replace(test, count_horizon=pd.Timedelta("4min"))
    with pytest.raises(ModelMismatchError, match="counts events over 0 days 00:01:30"):
        loaded.score(recounted)
    with pytest.raises(DataValidationError, match="counts events over"):
        RobustZScoreDetector(window_size=16).fit(train, recounted)


def test_model_of_an_older_format_is_refused_with_a_clear_error(
    fitted: WindowDetector, tmp_path: Path
) -> None:
    import json

    fitted.save(tmp_path / "model")
    path = tmp_path / "model" / "metadata.json"
    metadata = json.loads(path.read_text())
    path.write_text(json.dumps({**metadata, "format_version": 1}))
    with pytest.raises(ModelMismatchError, match="model format 1 is not supported.*retrain"):
        WindowDetector.load(tmp_path / "model")


def test_transformer_scores_an_onset_at_the_window_end_undiluted(train_val_test) -> None:
    """A spike at a window's end outscores the same spike at its start."""
    detector = _fit_once("transformer_autoencoder", train_val_test)
    _, _, test = train_val_test
    assert detector.channel_scale_.shape == (3, 3, 3)  # one calibration per error component
    spiked = with_spike(test, 150, 1, 0, 8.0)
    result = detector.score(spiked)
    end_step = {end: i for i, end in enumerate(result.ends)}
    recent = result.window_scores[end_step[spiked.timestamps[152]]]  # spike in the last 2 steps
    early = result.window_scores[end_step[spiked.timestamps[165]]]  # spike in the first 3 steps
    assert recent > early


def test_transformer_adds_the_deviation_from_the_training_level(train_val_test) -> None:
    """Its third component is the robust z-score's error on the same windows, and a level shift
    of a whole service (which keeps the relations between its metrics) raises it."""
    detector = _fit_once("transformer_autoencoder", train_val_test)
    zscore = _fit_once("robust_zscore", train_val_test)
    _, _, test = train_val_test
    windows = detector._windows(test, stride=1)
    components = detector._scored_components(windows)
    assert len(components) == 3
    np.testing.assert_allclose(components[2], zscore._channel_errors(windows))
    spread = np.nanstd(test.values[:100, 2, :], axis=0)
    varying = spread > 0
    shifted = test.values.copy()
    shifted[100:, 2, :] += 6.0 * spread
    shifted_windows = detector._windows(dataclasses.replace(test, values=shifted), stride=1)
    after = detector._scored_components(shifted_windows)
    assert varying.sum() >= 2
    assert after[2][-1, 2, varying].min() > 10 * components[2][-1, 2, varying].max()


def test_deviation_is_calibrated_on_training_and_validation_windows() -> None:
    """A level the service spends a third of its training time at (night and day, say) but that
    the validation stretch happens not to contain is not calibrated as if it were rare."""
    tensor = seasonal_tensor(1300, seed=5)
    values = tensor.values.copy()
    rng = np.random.default_rng(0)
    values[:, 1, 2] = rng.normal(0.0, 0.1, len(values))
    values[:1000:3, 1, 2] += 4.0  # every third training step sits at the other level
    tensor = dataclasses.replace(tensor, values=values)
    train, val = tensor.slice(0, 1000), tensor.slice(1000, 1300)
    detector = fast_transformer().fit(train, val)
    deviations = np.concatenate(
        [
            detector._windows(train, detector.train_stride).mean_squared_deviation(),
            detector._windows(val, detector.score_stride).mean_squared_deviation(),
        ]
    )
    val_only = detector._windows(val, detector.score_stride).mean_squared_deviation()
    scale = detector.channel_scale_[2, 1, 2]
    assert scale == pytest.approx(deviations[:, 1, 2].mean())
    assert scale > 3 * val_only[:, 1, 2].mean()

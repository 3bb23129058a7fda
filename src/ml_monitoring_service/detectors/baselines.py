"""Baselines that users would otherwise pick, on exactly the same windows and scaling as ours.

Published, honest evaluations find that simple methods (a robust z-score, PCA reconstruction) match
or beat many deep detectors on server metrics; every benchmark in this project reports them beside
the transformer so that claim is checked, not assumed.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest

from ml_monitoring_service.detectors.base import WindowDetector
from ml_monitoring_service.prepare.windows import Windows


class RandomDetector(WindowDetector):
    """Uniform random channel errors: the floor every detector must clear (ROC AUC ≈ 0.5)."""

    kind = "random"

    def __init__(self, *, seed: int = 0, **window_params: Any) -> None:
        super().__init__(**window_params)
        self.seed = seed

    def _fit_windows(self, train: Windows, val: Windows) -> None:
        """Nothing to learn."""

    def _channel_errors(self, windows: Windows) -> np.ndarray:
        # Seeded by the windows' first timestamp: the same data always gets the same "scores".
        rng = np.random.default_rng((self.seed, len(windows), int(windows.starts[0].value)))
        return rng.random(windows.values.shape[:1] + windows.values.shape[2:])


class RobustZScoreDetector(WindowDetector):
    """Mean squared robust z-score per channel over the window.

    Inputs are already ``(x - median) / robust scale`` with training statistics, so this learns
    nothing beyond the scaler: it is the classic "how many sigmas off is each metric" rule.
    """

    kind = "robust_zscore"

    def _fit_windows(self, train: Windows, val: Windows) -> None:
        """Nothing to learn: the shared scaler already holds medians and scales."""

    def _channel_errors(self, windows: Windows) -> np.ndarray:
        return windows.mean_squared_deviation()


class PCADetector(WindowDetector):
    """Reconstruction error of each step's ``S × F`` vector from its principal subspace.

    Keeps the components explaining ``variance`` of the training steps, so correlated metrics
    (cpu with request rate, caller with callee latency) are modelled jointly like the autoencoder.
    """

    kind = "pca"

    def __init__(self, *, variance: float = 0.9, **window_params: Any) -> None:
        super().__init__(**window_params)
        self.variance = variance

    def _fit_windows(self, train: Windows, val: Windows) -> None:
        steps = train.values.reshape(-1, train.values.shape[2] * train.values.shape[3])
        self.pca_ = PCA(n_components=self.variance, svd_solver="full").fit(steps.astype(np.float64))

    def _channel_errors(self, windows: Windows) -> np.ndarray:
        n, w, s, f = windows.values.shape
        steps = windows.values.reshape(-1, s * f).astype(np.float64)
        reconstruction = self.pca_.inverse_transform(self.pca_.transform(steps))
        return ((steps - reconstruction) ** 2).reshape(n, w, s, f).mean(axis=1)

    def _save_state(self, directory: Path) -> None:
        np.savez(
            directory / "pca.npz",
            components=self.pca_.components_,
            mean=self.pca_.mean_,
        )

    def _load_state(self, directory: Path) -> None:
        state = np.load(directory / "pca.npz")
        self.pca_ = _FittedProjection(state["components"], state["mean"])


class _FittedProjection:
    """The two arrays PCA needs at scoring time, restored without pickling scikit-learn objects."""

    def __init__(self, components: np.ndarray, mean: np.ndarray) -> None:
        self.components_ = components
        self.mean_ = mean

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean_) @ self.components_.T

    def inverse_transform(self, z: np.ndarray) -> np.ndarray:
        return z @ self.components_ + self.mean_


class IsolationForestDetector(WindowDetector):
    """Isolation Forest on per-window summaries (mean and max |value| of every channel).

    The forest scores whole windows; per-metric attribution uses the robust z-score of each channel,
    since a forest has no per-feature error of its own.
    """

    kind = "isolation_forest"

    def __init__(self, *, n_estimators: int = 200, seed: int = 0, **window_params: Any) -> None:
        super().__init__(**window_params)
        self.n_estimators = n_estimators
        self.seed = seed

    def _fit_windows(self, train: Windows, val: Windows) -> None:
        self.forest_ = IsolationForest(n_estimators=self.n_estimators, random_state=self.seed)
        self.forest_.fit(_summaries(train))

    def _channel_errors(self, windows: Windows) -> np.ndarray:
        return windows.mean_squared_deviation()

    def _window_scores(self, metric_scores: np.ndarray, windows: Windows) -> np.ndarray:
        return -self.forest_.score_samples(_summaries(windows))

    def _save_state(self, directory: Path) -> None:
        # scikit-learn forests have no portable format; the pickle is only ever read back by the
        # same installation, and the version is recorded to refuse a mismatched one.
        import sklearn

        (directory / "forest.json").write_text(json.dumps({"sklearn": sklearn.__version__}))
        with (directory / "forest.pkl").open("wb") as handle:
            pickle.dump(self.forest_, handle)

    def _load_state(self, directory: Path) -> None:
        import sklearn

        from ml_monitoring_service.errors import ModelMismatchError

        saved = json.loads((directory / "forest.json").read_text())["sklearn"]
        if saved != sklearn.__version__:
            raise ModelMismatchError(
                f"{directory}: forest saved with scikit-learn {saved}, "
                f"running {sklearn.__version__}"
            )
        with (directory / "forest.pkl").open("rb") as handle:
            self.forest_ = pickle.load(handle)  # noqa: S301 - own file, version-checked above


def _summaries(windows: Windows) -> np.ndarray:
    """``[N, 2·S·F]``: per-channel mean and max absolute value over the window."""
    values = windows.values.astype(np.float64)
    return np.concatenate(
        [
            values.mean(axis=1).reshape(len(values), -1),
            np.abs(values).max(axis=1).reshape(len(values), -1),
        ],
        axis=1,
    )

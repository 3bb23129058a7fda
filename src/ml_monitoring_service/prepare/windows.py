"""Sliding windows over a scaled tensor: the unit the detectors learn from and score."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml_monitoring_service.errors import InsufficientDataError


@dataclass(frozen=True)
class Windows:
    """A batch of windows.

    ``values``: ``[N, W, S, F]`` float32 scaled values; ``context``: ``[N, W, C]`` calendar
    features; ``starts``/``ends``: UTC time of each window's first and last step.
    """

    values: np.ndarray
    context: np.ndarray
    starts: pd.DatetimeIndex
    ends: pd.DatetimeIndex

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def mean_squared_deviation(self) -> np.ndarray:
        """``[N, S, F]`` mean squared scaled value over each window's steps.

        Values are scaled by training medians and robust scales, so this is the squared robust
        z-score of each channel: how far a metric sits from its normal level, whatever its
        relation to the other metrics.
        """
        return np.mean(self.values.astype(np.float64) ** 2, axis=1)


def window_starts(n_steps: int, window_size: int, stride: int) -> np.ndarray:
    """Start indices; the last window always ends at the last step so the newest data is scored."""
    if n_steps < window_size:
        raise InsufficientDataError(
            f"{n_steps} time steps are fewer than one window of {window_size}; "
            "use a longer lookback, a finer grid, or a smaller window_size"
        )
    starts = np.arange(0, n_steps - window_size + 1, stride)
    if starts[-1] != n_steps - window_size:
        starts = np.append(starts, n_steps - window_size)
    return starts


def make_windows(
    values: np.ndarray,
    context: np.ndarray,
    timestamps: pd.DatetimeIndex,
    window_size: int,
    stride: int,
) -> Windows:
    """Cut ``[T, S, F]`` values (and ``[T, C]`` context) into windows without copying per window."""
    starts = window_starts(values.shape[0], window_size, stride)
    value_view = np.lib.stride_tricks.sliding_window_view(values, window_size, axis=0)
    context_view = np.lib.stride_tricks.sliding_window_view(context, window_size, axis=0)
    # sliding_window_view puts the window axis last: [N, S, F, W] -> [N, W, S, F].
    return Windows(
        values=np.ascontiguousarray(value_view[starts].transpose(0, 3, 1, 2)),
        context=np.ascontiguousarray(context_view[starts].transpose(0, 2, 1)),
        starts=timestamps[starts],
        ends=timestamps[starts + window_size - 1],
    )

"""Cyclic calendar features given to the model as context, never scored.

Hour of day and day of week are encoded as points on a circle (sin, cos) so 23:59 sits next to
00:00; this lets the model expect the nightly traffic dip instead of flagging it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

N_TIME_FEATURES = 4


def cyclic_time_features(timestamps: pd.DatetimeIndex) -> np.ndarray:
    """``[T, 4]`` float32: sin/cos of hour-of-day and of day-of-week (fractional)."""
    hours = timestamps.hour + timestamps.minute / 60.0 + timestamps.second / 3600.0
    days = timestamps.day_of_week + hours / 24.0
    hour_angle = 2.0 * np.pi * np.asarray(hours) / 24.0
    day_angle = 2.0 * np.pi * np.asarray(days) / 7.0
    return np.stack(
        [np.sin(hour_angle), np.cos(hour_angle), np.sin(day_angle), np.cos(day_angle)], axis=1
    ).astype(np.float32)

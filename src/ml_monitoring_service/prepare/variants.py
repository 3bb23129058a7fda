"""Preprocessing variants: how irregular observations become a regular time axis.

``event`` keeps only the timestamps where something was observed (no invented points, but uneven
spacing); ``grid:<freq>`` resamples onto a fixed grid (even spacing, forward-filled). Both are first
class because which one detects better depends on the data, and the benchmark compares them.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ml_monitoring_service.errors import ConfigError


@dataclass(frozen=True)
class Variant:
    """A parsed variant such as ``event`` or ``grid:30s``."""

    approach: str
    freq: pd.Timedelta | None = None

    @classmethod
    def parse(cls, text: str) -> Variant:
        """Parse ``event`` or ``grid:<freq>`` (``grid:1s``, ``grid:30s``, ``grid:1min``)."""
        text = text.strip()
        if text == "event":
            return cls("event")
        if text.startswith("grid:"):
            spec = text.removeprefix("grid:")
            try:
                freq = pd.Timedelta(spec)
            except ValueError:
                raise ConfigError(
                    f"variant {text!r}: {spec!r} is not a frequency like 1s, 30s, 1min"
                ) from None
            if freq <= pd.Timedelta(0):
                raise ConfigError(f"variant {text!r}: frequency must be positive")
            return cls("grid", freq)
        raise ConfigError(
            f"unknown variant {text!r}; use 'event' or 'grid:<freq>' such as 'grid:30s'"
        )

    @property
    def label(self) -> str:
        """The spelling users type: ``event``, ``grid:30s``."""
        return "event" if self.freq is None else f"grid:{_short(self.freq)}"

    @property
    def name(self) -> str:
        """File-name-safe form used in output names: ``event``, ``grid_30s``."""
        return self.label.replace(":", "_")


def _short(freq: pd.Timedelta) -> str:
    """Compact spelling of a frequency: 30s, 1min, 2h."""
    seconds = int(freq.total_seconds())
    if freq != pd.Timedelta(seconds=seconds):
        return f"{int(freq / pd.Timedelta(milliseconds=1))}ms"
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"

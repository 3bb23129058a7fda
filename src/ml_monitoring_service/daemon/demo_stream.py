"""The demo source as a continuous stream, for the daemon's scoring ticks.

``data.sources.inference_data`` generates a fresh demo range for every call: the noise and the
incidents depend on where the range starts, and the generator keeps the last 10 % of every range
free of incidents. Consecutive daemon ticks would each see a different history, and the newest
windows (the only ones the alert policy reads) would never hold an incident. So the daemon cuts
its demo ticks out of fixed, cached blocks (``block``, aligned to UTC midnight): every tick sees
the same past, and incidents happen while the daemon watches. Each block keeps incident-free
margins of 10 % at both ends (72 minutes around each 6-hour boundary).
"""

from __future__ import annotations

from collections import OrderedDict

import pandas as pd

from ml_monitoring_service.config import ServiceSetConfig
from ml_monitoring_service.data.demo import DemoData, generate_demo
from ml_monitoring_service.data.schema import TIMESTAMP
from ml_monitoring_service.data.sources import SourceData

_CACHED_BLOCKS = 4
DEFAULT_BLOCK = pd.Timedelta("6h")


class DemoStream:
    """Demo data for any ``[start, end)``, stable across calls; see the module docstring."""

    def __init__(self, config: ServiceSetConfig, block: pd.Timedelta = DEFAULT_BLOCK) -> None:
        if pd.Timedelta("1D") % block != pd.Timedelta(0):
            raise ValueError(f"block must divide a day, got {block}")
        self.config, self.block = config, block
        self._blocks: OrderedDict[pd.Timestamp, DemoData] = OrderedDict()

    def window(self, start: pd.Timestamp, end: pd.Timestamp) -> SourceData:
        """Rows and incidents in ``[start, end)``, cut from the blocks that cover it."""
        first = start.floor(self.block)
        parts = [self._block(b) for b in pd.date_range(first, end, freq=self.block) if b < end]
        frame = pd.concat([p.frame for p in parts], ignore_index=True)
        inside = frame[(frame[TIMESTAMP] >= start) & (frame[TIMESTAMP] < end)]
        incidents = tuple(i for p in parts for i in p.incidents if i.end > start and i.start < end)
        return SourceData(inside.reset_index(drop=True), incidents)

    def inference_data(self, now: pd.Timestamp) -> SourceData:
        """The set's inference lookback before ``now``."""
        return self.window(now - self.config.schedule.inference_lookback, now)

    def _block(self, start: pd.Timestamp) -> DemoData:
        if start not in self._blocks:
            demo = self.config.demo
            self._blocks[start] = generate_demo(
                start,
                start + self.block,
                seed=demo.seed,
                services=self.config.services,
                edges=self.config.edges,
                incident_every=demo.incident_every,
                event_rate_per_min=demo.event_rate_per_min,
            )
            while len(self._blocks) > _CACHED_BLOCKS:
                self._blocks.popitem(last=False)
        return self._blocks[start]

"""Log templates: mask the variable parts of log lines and group the lines with drain3.

``Timeout calling payment after 3012 ms`` and ``... after 2988 ms`` are one kind of event; counting
kinds, not lines, is what makes a period comparable with its baseline. Masking replaces what is
certainly a variable (UUIDs, times, IPs, hex ids, numbers) before drain3's clustering generalises
whatever else varies between similar lines into ``<*>``. Masked text is also what may be shown
or sent elsewhere: ids and numbers never leave this module unmasked.

drain3 is configured here in code, never from a ``drain3.ini`` in the working directory, and runs
without persistence (no state files) or profiling; its per-miner INFO line is silenced.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from drain3 import TemplateMiner
from drain3.masking import LogMasker, MaskingInstruction
from drain3.template_miner_config import TemplateMinerConfig

# drain3 logs "Starting Drain3 template miner" at INFO for every miner; one miner per service per
# alert would flood the daemon's log with it.
logging.getLogger("drain3").setLevel(logging.WARNING)

# Most specific first: a UUID or an IP must be masked whole before NUM takes its digit runs.
MASKS: tuple[tuple[str, str], ...] = (
    (r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", "UUID"),
    (  # date and time of day, or a time of day alone (one leading \d{2} for both: faster)
        r"\b\d\d(?:\d\d-\d\d-\d\d[T ]\d\d)?:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?",
        "TIME",
    ),
    (r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?(?![\w.])", "IP"),
    (r"\b0[xX][0-9a-fA-F]+\b|\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}\b", "HEX"),
    (r"(?<![A-Za-z0-9_.])[-+]?\d+(?:\.\d+)?", "NUM"),
)


def miner_config() -> TemplateMinerConfig:
    """drain3 settings: the masks above and no profiling; defaults otherwise.

    The number of templates is left unbounded (drain3 would otherwise evict templates while
    lines still refer to them); it is bounded by the distinct masked lines anyway.
    """
    config = TemplateMinerConfig()
    config.masking_instructions = [MaskingInstruction(pattern, name) for pattern, name in MASKS]
    config.profiling_enabled = False
    return config


MASKER = LogMasker(miner_config().masking_instructions)


def mask(text: str) -> str:
    """``text`` with UUIDs, times, IPs, hex ids and numbers replaced by ``<UUID>``, ``<NUM>``..."""
    return str(MASKER.mask(text))


@dataclass(frozen=True)
class MinedTemplates:
    """Per input line: the id of its template and its masked text; per id: the template."""

    template_ids: np.ndarray
    masked: list[str]
    templates: dict[int, str]


def mine_templates(lines: Sequence[str]) -> MinedTemplates:
    """Group ``lines`` (single lines of log text) into drain3 templates, in one fresh miner.

    Identical masked lines are clustered once: a service's lines repeat a few dozen shapes, so
    this turns tens of thousands of drain3 calls into a few hundred.
    """
    masked = [mask(line) for line in lines]
    shapes, inverse = np.unique(np.asarray(masked, dtype=object), return_inverse=True)
    first_seen = np.full(len(shapes), len(masked))
    np.minimum.at(first_seen, inverse, np.arange(len(masked)))
    miner = TemplateMiner(config=miner_config())
    shape_ids = np.zeros(len(shapes), dtype=np.int64)
    for shape in np.argsort(first_seen, kind="stable"):  # in order of appearance
        shape_ids[shape] = miner.add_log_message(str(shapes[shape]))["cluster_id"]
    templates = {c.cluster_id: c.get_template() for c in miner.drain.clusters}
    return MinedTemplates(shape_ids[inverse], masked, templates)


def first_lines(messages: pd.Series) -> pd.Series:
    """The first line of each message: what a log viewer shows, and what templates are made of."""
    return messages.str.split("\n", n=1).str[0].str.strip()

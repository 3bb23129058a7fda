"""Log templates: mask the variable parts of log lines and group the lines with drain3.

``Timeout calling payment after 3012 ms`` and ``... after 2988 ms`` are one kind of event; counting
kinds, not lines, is what makes a period comparable with its baseline. Masking replaces what is
certainly a variable (UUIDs, times, IPs, hex ids, numbers) before drain3's clustering generalises
whatever else varies between similar lines into ``<*>``. Masked text is also what may be shown
or sent elsewhere: ids and numbers never leave this module unmasked.

A *code location* (``t.s.TravelServiceImpl#457``, ``OrderController.java:88``: a logger's class
and line) is not a variable: it names the statement that wrote the line. It is kept unmasked, and
lines from different locations never share a template, however alike their text: drain3 would
otherwise merge ``Impl#451 ... <*>`` and ``Impl#457 ... <*>``, and a service whose code path broke
between two statements (the first still logs, the second no longer does) would look unchanged.

A *structured* line (a JSON object, such as a container runtime's ``{"log": "...", "stream":
...}`` wrapper around an application's own ``{"message": "...", "severity": ...}``) is mined by its
message (:func:`message_text`). Left whole, every line of a service shares the same keys and
punctuation, drain3 finds any two lines of equal length similar enough to merge, and ``Start
charge card`` and ``Charge successfully`` become one ``<*> <*> <*>`` template.

drain3 is configured here in code, never from a ``drain3.ini`` in the working directory, and runs
without persistence (no state files) or profiling; its per-miner INFO line is silenced.
"""

from __future__ import annotations

import json
import logging
import re
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

SOURCE_EXTENSIONS = ("java", "kt", "scala", "groovy", "py", "go", "rb", "js", "ts", "cs", "php")
# A code location: a package-qualified class and its line (``t.s.TravelServiceImpl#457``), the
# same with a bracketed servlet name (``o.a.c.c.C.[.[dispatcherServlet]#175``), or
# ``file.<ext>:123``. A bare ``Invoice#48213`` is data (an id), not code: kept, every id would be a
# template of its own and every line "new". Matched from token starts only (the lookbehind).
_TOKEN_START = r"(?<![\w$.\[\]-])"
CODE_LOCATION = re.compile(
    _TOKEN_START
    + r"(?:(?:[\w$]+\.)+[A-Z][\w$]*|[\w$.\[\]]*\.\[[\w$.\[\]]*\])#\d{1,5}(?!\d)"
    + "|"
    + _TOKEN_START
    + r"[\w-]+\.(?:"
    + "|".join(SOURCE_EXTENSIONS)
    + r"):\d{1,6}(?!\d)"
)

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
    """drain3 settings: no masking (lines arrive masked by :func:`mask`), no profiling.

    The number of templates is left unbounded (drain3 would otherwise evict templates while
    lines still refer to them); it is bounded by the distinct masked lines anyway.
    """
    config = TemplateMinerConfig()
    config.masking_instructions = []
    config.profiling_enabled = False
    return config


PARAMETER = "<*>"  # drain3's wildcard, for whatever varies between the lines of one template
_PLACEHOLDER = re.compile("|".join(f"<{name}>" for _, name in MASKS))
# Keys that hold a structured line's text, compared case-insensitively, most specific first.
MESSAGE_KEYS = ("message", "msg", "@message", "log")
_MAX_NESTING = 3  # a runtime's wrapper around a logger's JSON around, rarely, one more

HEADER = 160
_KEEP = "\x00"  # stands in for a code location while the masks run: no mask matches it
MASKER = LogMasker([MaskingInstruction(pattern, name) for pattern, name in MASKS])


def mask(text: str) -> str:
    """``text`` with UUIDs, times, IPs, hex ids and numbers replaced by ``<UUID>``, ``<NUM>``...;
    code locations (``CODE_LOCATION``) in the line's first ``HEADER`` characters, where a
    logging framework writes them, are kept as they are (searching whole lines of payload
    tripled the cost of masking on Nezha's Train Ticket logs)."""
    text = text.replace(_KEEP, "")
    head = text[:HEADER]
    locations = CODE_LOCATION.findall(head)
    if not locations:
        return str(MASKER.mask(text))
    pieces = str(MASKER.mask(CODE_LOCATION.sub(_KEEP, head) + text[HEADER:])).split(_KEEP)
    return "".join(piece + kept for piece, kept in zip(pieces, [*locations, ""], strict=True))


@dataclass(frozen=True)
class MinedTemplates:
    """Per input line: the id of its template and its masked text; per id: the template."""

    template_ids: np.ndarray
    masked: list[str]
    templates: dict[int, str]


def mine_templates(lines: Sequence[str]) -> MinedTemplates:
    """Group ``lines`` (single lines of log text) into drain3 templates.

    Identical masked lines are clustered once: a service's lines repeat a few dozen shapes, so
    this turns tens of thousands of drain3 calls into a few hundred. Lines are mined by code
    location (the first in the line, if any), a fresh miner per location, so that two statements
    never share a template.
    """
    masked = [mask(line) for line in lines]
    shapes, inverse = np.unique(np.asarray(masked, dtype=object), return_inverse=True)
    first_seen = np.full(len(shapes), len(masked))
    np.minimum.at(first_seen, inverse, np.arange(len(masked)))
    miners: dict[str, TemplateMiner] = {}
    cluster_keys = np.zeros(len(shapes), dtype=object)
    members: dict[tuple[str, int], list[list[str]]] = {}
    for shape in np.argsort(first_seen, kind="stable"):  # in order of appearance
        text = str(shapes[shape])
        found = CODE_LOCATION.search(text)
        location = found.group() if found else ""
        miner = miners.setdefault(location, TemplateMiner(config=miner_config()))
        tokens = text.split()
        key = (location, miner.add_log_message(_as_parameters(tokens))["cluster_id"])
        cluster_keys[shape] = key
        members.setdefault(key, []).append(tokens)
    ids = {key: i for i, key in enumerate(dict.fromkeys(cluster_keys[np.argsort(first_seen)]))}
    templates = {ids[key]: _agreement(tokens) for key, tokens in members.items()}
    shape_ids = np.array([ids[key] for key in cluster_keys], dtype=np.int64)
    return MinedTemplates(shape_ids[inverse], masked, templates)


def message_text(line: str) -> str:
    """The text a structured (JSON object) log line carries, unwrapped as often as it is nested;
    any other line as it is.

    The first of ``MESSAGE_KEYS`` whose value is a string is the text; a JSON object without one
    stays whole. Trailing whitespace goes (a runtime's wrapper ends every line with its newline).
    """
    text = line
    for _ in range(_MAX_NESTING):
        stripped = text.strip()
        if not stripped.startswith("{"):
            break
        try:
            record = json.loads(stripped)
        except ValueError:
            break
        if not isinstance(record, dict):
            break
        keys = {str(key).lower(): value for key, value in record.items()}
        found = next((keys[k] for k in MESSAGE_KEYS if isinstance(keys.get(k), str)), None)
        if found is None:
            break
        text = found
    return text.rstrip()


def _as_parameters(tokens: list[str]) -> str:
    """A masked line as drain3 should compare it: a token that is nothing but a placeholder
    (``<HEX>``, ``<TIME>``...) becomes drain3's own parameter ``<*>``, which its similarity does
    not count as shared. Counted, a preamble such as ``<TIME> TraceID: <HEX> SpanID: <HEX>``
    would make any two messages of equal length similar enough to merge."""
    return " ".join(PARAMETER if _PLACEHOLDER.fullmatch(token) else token for token in tokens)


def _agreement(members: list[list[str]]) -> str:
    """A cluster's template: each position's token where all its masked lines agree, else
    ``<*>`` (drain3's rule, applied to the masked text, so placeholders keep their names)."""
    return " ".join(
        column[0] if len(set(column)) == 1 else PARAMETER for column in zip(*members, strict=True)
    )


def first_lines(messages: pd.Series) -> pd.Series:
    """The first line of each message: what a log viewer shows, and what templates are made of."""
    return messages.str.split("\n", n=1).str[0].str.strip()

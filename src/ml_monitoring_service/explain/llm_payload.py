"""What of an incident may leave the process for an LLM: an allowlist of metadata, masked.

The incident report (contract C) holds more than a model needs and some of it must not leave:
``example`` log lines, plot paths, free text written for humans. Rather than deleting what looks
risky (a denylist silently lets every new field through), :func:`incident_payload` copies only
the fields named in the specs below, checks each value's type, and passes every string through
:class:`Masker`, so an IP address, e-mail, UUID, trace id or URL query that slipped into a service
name or log template is replaced by a placeholder before it is sent.

Two kinds of string are told apart. *Names* (services, metrics, ids, times, call paths) keep their
digits, since ``node-2`` or an ISO time are meaningful and not secret. *Text* (log templates,
exception frames) also has its free-standing numbers replaced by ``<NUM>``: account numbers,
amounts and order ids live there.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

MASK_EXTRA = "<MASKED>"
MAX_ITEMS = 10  # per list: candidates, deviations, templates, exceptions, frames, path hops

# Order matters: a URL's query may hold an e-mail, a UUID may look like hex, an IPv4 like numbers.
_IDENTIFIER_MASKS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s?#]*\?\S*"), "<URL>"),
    (re.compile(r"[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"), "<EMAIL>"),
    (
        re.compile(
            r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
        ),
        "<UUID>",
    ),
    (re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?(?![\w.])"), "<IP>"),
    # At least two colons between hex groups (``::1``, ``fe80::1%eth0``, full form); a preceding
    # word character is excluded so ``T10:00:00`` in an ISO time is left alone.
    (
        re.compile(
            r"(?<![\w:.])(?=[0-9a-fA-F]*:[0-9a-fA-F]*:)(?:[0-9a-fA-F]{0,4}:){2,7}"
            r"[0-9a-fA-F]{0,4}(?:%\w+)?(?![\w:])"
        ),
        "<IP>",
    ),
    # Trace and span ids, hashes, and digit runs long enough to be card or account numbers.
    (re.compile(r"\b[0-9a-fA-F]{12,}\b"), "<HEX>"),
)
# A number not glued to a letter: ``after 1500 ms`` and ``Client.java:42`` lose it, ``Ec2Client``
# and ``log4j`` keep theirs.
_NUMBER_MASK = (re.compile(r"(?<![A-Za-z])\d+(?:[.,]\d+)*"), "<NUM>")


class Masker:
    """Replaces sensitive substrings by placeholders; ``extra_patterns`` are applied first.

    Operator patterns come first because they know the local formats (``ACC-\\d{8}``) that the
    built-in number mask would otherwise cut into unrecognisable pieces.
    """

    def __init__(self, extra_patterns: Iterable[str] = ()) -> None:
        extras = tuple((re.compile(p), MASK_EXTRA) for p in extra_patterns)
        self._name_masks = extras + _IDENTIFIER_MASKS
        self._text_masks = self._name_masks + (_NUMBER_MASK,)

    def name(self, value: str) -> str:
        """Mask a name or identifier: everything but free-standing numbers."""
        return _apply(self._name_masks, value)

    def text(self, value: str) -> str:
        """Mask free text: names' masks plus free-standing numbers."""
        return _apply(self._text_masks, value)


def _apply(masks: tuple[tuple[re.Pattern[str], str], ...], value: str) -> str:
    for pattern, replacement in masks:
        value = pattern.sub(replacement, value)
    return value


Cleaner = Callable[[Any, Masker], Any]  # returns the value to send, or None to leave it out


def _name(value: Any, masker: Masker) -> str | None:
    return masker.name(value) if isinstance(value, str) else None


def _text(value: Any, masker: Masker) -> str | None:
    return masker.text(value) if isinstance(value, str) else None


def _number(value: Any, masker: Masker) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if math.isfinite(value) else None


def _flag(value: Any, masker: Masker) -> bool | None:
    return value if isinstance(value, bool) else None


def _list_of(item: Cleaner) -> Cleaner:
    """A list whose items are cleaned by ``item``; items that clean to None are dropped."""

    def clean(value: Any, masker: Masker) -> list[Any] | None:
        if not isinstance(value, list):
            return None
        cleaned = (item(v, masker) for v in value[:MAX_ITEMS])
        return [v for v in cleaned if v is not None]

    return clean


def _record(spec: Mapping[str, Cleaner]) -> Cleaner:
    """A mapping reduced to the keys of ``spec``, each value cleaned by its cleaner."""

    def clean(value: Any, masker: Masker) -> dict[str, Any] | None:
        if not isinstance(value, Mapping):
            return None
        picked = {key: cleaner(value[key], masker) for key, cleaner in spec.items() if key in value}
        return {key: v for key, v in picked.items() if v is not None}

    return clean


def _per_service(item: Cleaner) -> Cleaner:
    """``{service: record}``, service names masked like every other name."""

    def clean(value: Any, masker: Masker) -> dict[str, Any] | None:
        if not isinstance(value, Mapping):
            return None
        cleaned = {masker.name(str(k)): item(v, masker) for k, v in value.items()}
        return {k: v for k, v in cleaned.items() if v is not None}

    return clean


_DEVIATION = _record(
    {
        "metric": _name,
        "score": _number,
        "baseline_median": _number,
        "period_value": _number,
        "direction": _name,
    }
)
_CANDIDATE = _record(
    {
        "rank": _number,
        "service": _name,
        "metric": _name,
        "confidence": _number,
        "onset": _name,
        "explained_by": _name,
        "metric_deviations": _list_of(_DEVIATION),
        "call_path": _list_of(_name),
    }
)
_COUNTS: dict[str, Cleaner] = {"baseline_count": _number, "period_count": _number, "new": _flag}
_TEMPLATE = _record(
    {"template": _text, **_COUNTS, "baseline_problems": _number, "period_problems": _number}
)
_EXCEPTION = _record({"type": _text, "frames": _list_of(_text), **_COUNTS})
_MISSING = _record(
    {
        "template": _text,
        "baseline_count": _number,
        "period_count": _number,
        "expected_count": _number,
    }
)
_SERVICE_LOGS = _record(
    {
        "baseline_events": _number,
        "period_events": _number,
        "templates": _list_of(_TEMPLATE),
        "exceptions": _list_of(_EXCEPTION),
        "missing_templates": _list_of(_MISSING),
    }
)
_INCIDENT = _record(
    {
        "id": _name,
        "set": _name,
        "variant": _name,
        "model_version": _name,
        "start": _name,
        "end": _name,
        "peak_time": _name,
        "peak_score": _number,
        "threshold": _number,
        "windows": _number,
        "candidates": _list_of(_CANDIDATE),
        "logs": _record({"services": _per_service(_SERVICE_LOGS)}),
    }
)


def incident_payload(incident: Mapping[str, Any], masker: Masker) -> dict[str, Any]:
    """The allowlisted, masked metadata of an incident report (contract C), ready for JSON.

    Never contains ``example`` fields, the headline, free-text evidence, plots, suggested checks
    or any key not named above; values of the wrong type are left out rather than guessed at.
    """
    payload = _INCIDENT(incident, masker)
    return payload if payload is not None else {}

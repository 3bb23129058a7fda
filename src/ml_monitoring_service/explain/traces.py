"""Exception traces in log text: find them, and name each distinct stack with a fingerprint.

Two traces of the same failure differ in everything an operator does not care about (the
exception's message carries ids, line numbers move with every release), so a trace is identified
by its exception type and the innermost ``TRACE_FRAMES`` frames without line numbers. Two kinds
of trace are read, each in the layout its runtime prints:

* Java: ``pkg.SomeException: message`` followed by ``\\tat pkg.Class.method(File.java:12)`` lines
  (``Caused by:`` sections and ``... N more`` are not frames of the thrown exception);
* Python: ``Traceback (most recent call last):``, ``File "x.py", line N, in f`` lines (innermost
  last) and the ``module.Error: message`` line; of chained tracebacks, the last one is read,
  because that is the exception that escaped.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

TRACE_FRAMES = 5

_JAVA_HEADER = re.compile(
    r"^(?:Exception in thread \"[^\"]*\" )?(?P<type>[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*)"
    r"(?::\s?(?P<message>.*))?$"
)
_JAVA_FRAME = re.compile(r"^\s+at\s+(?:[\w.-]+/)?(?P<frame>[\w$.<>]+)\(")
_PYTHON_START = "Traceback (most recent call last):"
_PYTHON_FRAME = re.compile(r'^\s+File "(?P<file>[^"]+)", line \d+, in (?P<function>\S+)')
_PYTHON_TYPE = re.compile(r"^(?P<type>[A-Za-z_][\w.]*)(?::\s?(?P<message>.*))?$")


@dataclass(frozen=True)
class Trace:
    """One parsed trace: exception type, innermost frames first, and the line naming the type."""

    type: str
    frames: tuple[str, ...]
    header: str

    @property
    def fingerprint(self) -> str:
        """8 hex digits, the same for every trace of this type thrown through these frames."""
        text = "\n".join((self.type, *self.frames))
        return hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest()[:8]


def parse_trace(text: str) -> Trace | None:
    """The exception trace in a (multi-line) log message, or ``None`` when it holds none."""
    lines = text.splitlines()
    if _PYTHON_START in lines:
        return _python_trace(lines)
    return _java_trace(lines)


def _java_trace(lines: list[str]) -> Trace | None:
    """The first ``Type: message`` line followed by ``at`` frames."""
    for i in range(len(lines) - 1):
        header = _JAVA_HEADER.match(lines[i].strip())
        if header is None or _JAVA_FRAME.match(lines[i + 1]) is None:
            continue
        frames: list[str] = []
        for line in lines[i + 1 :]:
            frame = _JAVA_FRAME.match(line)
            if frame is None or len(frames) == TRACE_FRAMES:
                break
            frames.append(frame["frame"])
        return Trace(header["type"], tuple(frames), lines[i].strip())
    return None


def _python_trace(lines: list[str]) -> Trace | None:
    """The last traceback block: its frames (reversed to innermost first) and exception line."""
    start = len(lines) - 1 - lines[::-1].index(_PYTHON_START)
    frames: list[str] = []
    for line in lines[start + 1 :]:
        frame = _PYTHON_FRAME.match(line)
        if frame is not None:
            frames.append(f"{frame['file']}:{frame['function']}")
            continue
        if line.startswith((" ", "\t")):
            continue  # the source line printed under a frame
        exception = _PYTHON_TYPE.match(line.strip())
        if exception is None:
            return None
        innermost = tuple(reversed(frames))[:TRACE_FRAMES]
        return Trace(exception["type"], innermost, line.strip())
    return None

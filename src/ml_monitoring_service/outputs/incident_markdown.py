"""Markdown form of an incident report (the dict of :mod:`ml_monitoring_service.outputs.incidents`).

The first three lines answer what (peak × threshold), where (most likely origin and metric) and
since when (onset, period, duration), so a chat or pager preview of the file is already useful.
Everything below is the same content as the JSON, for reading: candidates, metric deviations in
real units, plots, suggested checks, and when present log evidence and an LLM narrative.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd


def render_markdown(incident: Mapping[str, Any]) -> str:
    """The report as Markdown; sections for ``logs`` and ``narrative`` only when they are set."""
    parts = [
        _head(incident),
        _candidates(incident["candidates"]),
        *(_details(c) for c in incident["candidates"]),
        _plots(incident["plots"]),
        _bullets("Suggested checks", incident["suggested_checks"]),
    ]
    if incident.get("logs"):
        parts.append(_logs(incident["logs"]))
    if incident.get("narrative"):
        parts.append(_narrative(incident["narrative"]))
    return "\n\n".join(p for p in parts if p) + "\n"


def headline(incident: Mapping[str, Any]) -> str:
    """One line: what (peak × threshold), where (top candidate), since when (onset, duration)."""
    top = incident["candidates"][0] if incident["candidates"] else None
    where = (
        "no service stands out" if top is None else f"most likely {top['service']}/{top['metric']}"
    )
    return (
        f"Anomaly in {incident['set']} ({incident['variant']}): peak {ratio(incident):.1f}× "
        f"threshold, {where}, since {short_time(onset(incident))} ({duration_text(incident)})"
    )


def ratio(incident: Mapping[str, Any]) -> float:
    """Peak score as a multiple of the threshold."""
    return float(incident["peak_score"]) / max(float(incident["threshold"]), 1e-12)


def onset(incident: Mapping[str, Any]) -> str:
    """The top candidate's onset, or the period start when it has none (ISO)."""
    candidates = incident["candidates"]
    first = candidates[0]["onset"] if candidates else None
    return str(first or incident["start"])


def duration_text(incident: Mapping[str, Any]) -> str:
    """Length of the period, e.g. ``45 s``, ``52 min`` or ``1 h 5 min``."""
    seconds = (pd.Timestamp(incident["end"]) - pd.Timestamp(incident["start"])).total_seconds()
    if seconds < 120:
        return f"{int(round(seconds))} s"
    minutes = int(round(seconds / 60))
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def short_time(iso: str) -> str:
    """``2024-03-04 11:05:00 UTC`` from an ISO time (sub-seconds dropped)."""
    return pd.Timestamp(iso).tz_convert("UTC").strftime("%Y-%m-%d %H:%M:%S UTC")


def _head(incident: Mapping[str, Any]) -> str:
    candidates = incident["candidates"]
    if candidates:
        top = candidates[0]
        where = (
            f"- **Where:** most likely origin **{top['service']}**, metric **{top['metric']}** "
            f"(confidence {top['confidence']:.2f}); call path {' → '.join(top['call_path'])}"
        )
    else:
        where = "- **Where:** no service stands out"
    since = (
        f"- **Since:** onset {short_time(onset(incident))}; period {short_time(incident['start'])}"
        f" → {short_time(incident['end'])} ({duration_text(incident)}, {incident['windows']} "
        "windows)"
    )
    what = (
        f"# Anomaly in {incident['set']} ({incident['variant']}): peak score "
        f"{incident['peak_score']:.3g} = {ratio(incident):.1f}× threshold "
        f"{incident['threshold']:.3g}"
    )
    meta = (
        f"Incident `{incident['id']}` · model `{incident['model_version']}` · peak at "
        f"{short_time(incident['peak_time'])}"
    )
    return f"{what}\n{where}\n{since}\n\n{meta}"


def _candidates(candidates: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        [
            str(c["rank"]),
            c["service"],
            c["metric"],
            f"{c['confidence']:.2f}",
            short_time(c["onset"]) if c["onset"] else "–",
            c["explained_by"] or "–",
            c["evidence"],
        ]
        for c in candidates
    ]
    header = ["rank", "service", "metric", "confidence", "onset", "explained by", "evidence"]
    return "## Root-cause candidates\n\n" + _table(header, rows)


def _details(candidate: Mapping[str, Any]) -> str:
    rows = [
        [
            d["metric"],
            f"{d['score']:.3g}",
            _number(d["baseline_median"]),
            _number(d["period_value"]),
            d["direction"] or "–",
        ]
        for d in candidate["metric_deviations"]
    ]
    header = ["metric", "score", "baseline median", "in period", "direction"]
    return (
        f"### {candidate['rank']}. {candidate['service']}\n\n"
        f"Call path: {' → '.join(candidate['call_path'])}\n\n" + _table(header, rows)
    )


def _plots(plots: Mapping[str, str]) -> str:
    titles = {"timeline": "Score timeline", "metrics": "Top metrics", "graph": "Call graph"}
    return "## Plots\n\n" + "\n".join(
        f"![{titles.get(kind, kind)}]({name})" for kind, name in plots.items()
    )


def _logs(logs: Mapping[str, Any]) -> str:
    """Per service: new or risen log templates, exceptions and missing usual templates
    (contract B's dict)."""
    sections = ["## Log evidence"]
    for service, evidence in logs.get("services", {}).items():
        templates, exceptions = evidence.get("templates", []), evidence.get("exceptions", [])
        missing = evidence.get("missing_templates", [])
        counts = (
            f"{evidence.get('period_events', 0)} events in the period, "
            f"{evidence.get('baseline_events', 0)} before"
        )
        if not templates and not exceptions and not missing:
            sections.append(f"### {service}\n\n{counts}; no new, risen or missing messages.")
            continue
        body = [f"### {service}", counts]
        if templates:
            rows = [
                [
                    _code(t["template"]),
                    str(t["baseline_count"]),
                    str(t["period_count"]),
                    f"{t['baseline_problems']} → {t['period_problems']}",
                    "new" if t["new"] else "risen",
                ]
                for t in templates
            ]
            header = ["template", "before", "period", "warn/error", ""]
            body.append(_table(header, rows))
        if exceptions:
            body.append("\n".join(_exception(e) for e in exceptions))
        if missing:
            rows = [
                [
                    _code(m["template"]),
                    str(m["baseline_count"]),
                    f"{m['expected_count']:.0f}",
                    str(m["period_count"]),
                ]
                for m in missing
            ]
            body.append(
                "Usual messages it stopped writing (its code path changed):\n\n"
                + _table(["template", "before", "expected", "period"], rows)
            )
        sections.append("\n\n".join(body))
    return "\n\n".join(sections)


def _exception(item: Mapping[str, Any]) -> str:
    frames = " ← ".join(_code(f) for f in item.get("frames", [])[:3]) or "no frames"
    status = "new" if item["new"] else f"before {item['baseline_count']}"
    return (
        f"- {_code(item['type'])} ×{item['period_count']} ({status}; fingerprint "
        f"{item['fingerprint']}): {frames}"
    )


def _narrative(narrative: Mapping[str, Any]) -> str:
    lines = ["## Narrative (LLM, unverified)", ""]
    lines.append(f"**Likely root cause:** {narrative.get('likely_root_cause', '–')}")
    if narrative.get("confidence") is not None:
        lines.append(f"\n**Confidence:** {float(narrative['confidence']):.2f}")
    for title, key in (("Evidence", "evidence"), ("Suggested fixes", "suggested_fixes")):
        if narrative.get(key):
            lines.append(f"\n**{title}:**\n" + "\n".join(f"- {x}" for x in narrative[key]))
    return "\n".join(lines)


def _bullets(title: str, items: Iterable[str]) -> str:
    lines = [f"- {item}" for item in items] or ["- –"]
    return f"## {title}\n\n" + "\n".join(lines)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *map(line, rows)])


def _code(text: str) -> str:
    """Inline code that survives backticks in ``text`` (log templates hold ``<*>``, not HTML)."""
    fence = "``" if "`" in text else "`"
    return f"{fence} {text} {fence}" if fence == "``" else f"`{text}`"


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.4g}"

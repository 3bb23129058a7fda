"""The demo's log text: fits each event's severity and tells the story of each incident."""

from __future__ import annotations

import pandas as pd

from ml_monitoring_service.data.demo import DemoData, Incident
from ml_monitoring_service.data.schema import MESSAGE, SERVICE, SEVERITY, TIMESTAMP


def during(data: DemoData, incident: Incident, service: str) -> pd.DataFrame:
    f = data.frame
    inside = (f[TIMESTAMP] >= incident.start) & (f[TIMESTAMP] < incident.end)
    return f[inside & (f[SERVICE] == service)]


def first(data: DemoData, kind: str) -> Incident:
    return next(i for i in data.incidents if i.kind == kind)


def test_every_event_has_text_and_only_errors_carry_traces(demo: DemoData) -> None:
    f = demo.frame
    assert f[MESSAGE].notna().all() and (f[MESSAGE].str.len() > 10).all()
    traced = f[MESSAGE].str.contains("\n\tat |\nTraceback", regex=True)
    assert traced.any() and (f.loc[traced, SEVERITY] == 2).all()
    # Ordinary errors too (a baseline of errors is what makes incident errors stand out).
    assert traced[f[TIMESTAMP] < demo.incidents[0].start].sum() > 5


def test_messages_vary_ids_and_numbers(demo: DemoData) -> None:
    info = demo.frame.loc[demo.frame[SEVERITY] == 0, MESSAGE]
    assert info.nunique() > 0.9 * len(info)
    assert info.str.contains(r"request_id=[0-9a-f]{8}-[0-9a-f]{4}-", regex=True).any()


def test_a_leaking_root_logs_heap_pressure_and_out_of_memory(demo: DemoData) -> None:
    leak = first(demo, "memory_leak")
    rows = during(demo, leak, leak.service)
    warnings = rows.loc[rows[SEVERITY] == 1, MESSAGE]
    assert len(warnings) > 0 and warnings.str.startswith("heap usage at").all()
    before = demo.frame[
        (demo.frame[SERVICE] == leak.service) & (demo.frame[TIMESTAMP] < leak.start)
    ]
    assert not before[MESSAGE].str.contains("heap|GC pause", regex=True).any()
    assert rows[MESSAGE].str.startswith("GC pause").mean() > 0.2


def test_callers_of_a_dropped_service_name_it_in_their_errors(demo: DemoData) -> None:
    drop = first(demo, "dropout")
    assert during(demo, drop, drop.service).empty  # the root is silent
    caller = next(s for s in drop.affected_services if s != drop.service)
    errors = during(demo, drop, caller).query(f"{SEVERITY} == 2")[MESSAGE]
    assert len(errors) > 3
    assert errors.str.startswith(f"upstream {drop.service} returned 503").all()

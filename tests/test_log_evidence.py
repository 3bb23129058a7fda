"""Log evidence: templates and exception fingerprints that are new or rising in a period.

The demo is the ground truth: it injects incidents and writes the logs a service would write
during them, so the evidence for an incident's root must show that incident's own log lines, and
a service the incident did not touch must show nothing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml_monitoring_service.data.demo import DemoData, Incident
from ml_monitoring_service.data.pod_recordings import read_pod_recording
from ml_monitoring_service.data.schema import MESSAGE, SERVICE, SEVERITY, TIMESTAMP
from ml_monitoring_service.explain.log_evidence import MAX_ITEMS, log_evidence
from ml_monitoring_service.explain.log_templates import mask, message_text, mine_templates


def services_of(data: DemoData) -> list[str]:
    return sorted(set(data.frame[SERVICE]))


def incident(data: DemoData, kind: str, service: str) -> Incident:
    return next(i for i in data.incidents if i.kind == kind and i.service == service)


@pytest.fixture(scope="module")
def evidence(demo: DemoData) -> dict[Incident, dict]:
    """Each incident's evidence, per service."""
    return {
        inc: log_evidence(demo.frame, inc.start, inc.end, services_of(demo)).to_dict()["services"]
        for inc in demo.incidents
    }


def test_the_root_shows_its_incident_errors_and_exceptions_as_new(
    demo: DemoData, evidence: dict[Incident, dict]
) -> None:
    inc = incident(demo, "level_shift", "checkout")
    root = evidence[inc]["checkout"]
    in_period = demo.frame[
        (demo.frame[SERVICE] == "checkout")
        & (demo.frame[TIMESTAMP] >= inc.start)
        & (demo.frame[TIMESTAMP] <= inc.end)
    ]
    assert root["period_events"] == len(in_period)
    errors = [t for t in root["templates"] if t["new"] and t["period_problems"] > 0]
    assert "cannot apply rule set <NUM> to <*> <NUM>" in [t["template"] for t in errors]
    assert all(t["baseline_count"] == 0 for t in errors)
    (exception,) = root["exceptions"]
    assert exception["type"] == "java.lang.ArithmeticException" and exception["new"]
    assert exception["baseline_count"] == 0 and exception["period_count"] >= 5
    assert exception["frames"][0] == "com.shop.checkout.rules.RuleEngine.apply"
    assert exception["example"] == "java.lang.ArithmeticException: / by zero"
    own_errors = sum(t["period_problems"] for t in errors)
    assert root["problem_excess"] >= own_errors + exception["period_count"]


def test_callers_of_a_silent_root_show_the_failing_calls(
    demo: DemoData, evidence: dict[Incident, dict]
) -> None:
    # During a dropout the root writes nothing; its caller's log says who is gone.
    found = evidence[incident(demo, "dropout", "cart")]
    assert found["cart"]["period_events"] == 0
    assert found["cart"]["templates"] == [] and found["cart"]["exceptions"] == []
    frontend = found["frontend"]
    top = frontend["templates"][0]
    assert top["example"].startswith("upstream cart returned <NUM> Service Unavailable")
    assert top["period_problems"] == top["period_count"] > 10
    assert frontend["exceptions"][0]["type"] == "java.net.ConnectException"


def test_services_the_incident_did_not_touch_show_nothing(
    demo: DemoData, evidence: dict[Incident, dict]
) -> None:
    for inc, found in evidence.items():
        for service in set(services_of(demo)) - set(inc.affected_services):
            assert found[service]["templates"] == [], (inc, service)
            assert found[service]["exceptions"] == [], (inc, service)
    quiet = evidence[incident(demo, "noise", "cart")]["shipping"]
    assert quiet["period_events"] > 50
    assert quiet["templates"] == [] and quiet["exceptions"] == []
    assert quiet["problem_excess"] == 0.0


def test_evidence_has_the_contract_shape_and_is_json(
    demo: DemoData, evidence: dict[Incident, dict]
) -> None:
    result = {"services": evidence[incident(demo, "level_shift", "checkout")]}
    assert json.loads(json.dumps(result)) == result
    assert set(result) == {"services"} and set(result["services"]) == set(services_of(demo))
    for service in result["services"].values():
        assert set(service) == {
            "baseline_events",
            "period_events",
            "templates",
            "exceptions",
            "problem_excess",
            "missing_templates",
            "missing_lines",
        }
        assert len(service["templates"]) <= MAX_ITEMS and len(service["exceptions"]) <= MAX_ITEMS
        assert len(service["missing_templates"]) <= MAX_ITEMS
        for m in service["missing_templates"]:
            assert set(m) == {
                "template",
                "baseline_count",
                "period_count",
                "expected_count",
                "example",
            }
        for t in service["templates"]:
            assert set(t) == {
                "template",
                "baseline_count",
                "period_count",
                "baseline_problems",
                "period_problems",
                "new",
                "example",
            }
            assert all(type(t[k]) is int for k in ("baseline_count", "period_count"))
        for x in service["exceptions"]:
            assert set(x) == {
                "fingerprint",
                "type",
                "frames",
                "baseline_count",
                "period_count",
                "new",
                "example",
            }
            assert re.fullmatch(r"[0-9a-f]{8}", x["fingerprint"])


def test_a_frame_without_messages_gives_empty_evidence_for_every_service(demo: DemoData) -> None:
    inc = demo.incidents[0]
    frame = demo.frame.drop(columns=MESSAGE)
    result = log_evidence(frame, inc.start, inc.end, [*services_of(demo), "unknown"]).to_dict()
    empty = {
        "baseline_events": 0,
        "period_events": 0,
        "templates": [],
        "exceptions": [],
        "problem_excess": 0.0,
        "missing_templates": [],
        "missing_lines": 0.0,
    }
    assert result == {"services": {s: empty for s in [*services_of(demo), "unknown"]}}


def lines(*rows: tuple[str, str, float, str]) -> pd.DataFrame:
    """A combined frame from (time, service, severity, message) rows."""
    frame = pd.DataFrame(rows, columns=[TIMESTAMP, SERVICE, SEVERITY, MESSAGE])
    return frame.assign(**{TIMESTAMP: pd.to_datetime(frame[TIMESTAMP], utc=True, format="ISO8601")})


def test_masking_removes_ids_and_numbers_from_templates_and_examples() -> None:
    raw = (
        "2024-05-06T10:00:01.250Z Timeout calling payment at 10.0.3.17:8443 after {ms} ms "
        "request_id=9f1c2e4a-51b7-4c0e-9a55-3e1f0c2d7b61 session 7f3a9c41d2e8b605 ptr 0x7ffd3a"
    )
    frame = lines(
        ("2024-05-06 09:00", "api", 0, "GET /health 200"),
        *[(f"2024-05-06 10:00:{i:02d}", "api", 2, raw.format(ms=3000 + i)) for i in range(6)],
    )
    result = log_evidence(
        frame, pd.Timestamp("2024-05-06 10:00"), pd.Timestamp("2024-05-06 11:00"), ["api"]
    )
    (template,) = result.to_dict()["services"]["api"]["templates"]
    expected = (
        "<TIME> Timeout calling payment at <IP> after <NUM> ms "
        "request_id=<UUID> session <HEX> ptr <HEX>"
    )
    assert template["template"] == expected and template["example"] == expected
    assert template["period_count"] == template["period_problems"] == 6 and template["new"]
    assert mask("user u-4711 paid 12.50 EUR") == "user u-<NUM> paid <NUM> EUR"


def test_a_steady_error_is_not_news_but_a_burst_of_it_is() -> None:
    steady = [
        (str(pd.Timestamp("2024-05-06") + pd.Timedelta(minutes=10 * i)), "db", 2, f"slow disk {i}")
        for i in range(61)  # one every 10 minutes for 10 hours, the last one inside the period
    ]
    start, end = pd.Timestamp("2024-05-06 09:55"), pd.Timestamp("2024-05-06 10:05")
    quiet = log_evidence(lines(*steady), start, end, ["db"]).services["db"]
    assert quiet.period_events == 1 and quiet.templates == []
    burst = [(f"2024-05-06 09:58:{i:02d}", "db", 2, f"slow disk {i}") for i in range(8)]
    loud = log_evidence(lines(*steady, *burst), start, end, ["db"]).services["db"]
    (template,) = loud.templates
    assert (template.template, template.new) == ("slow disk <NUM>", False)
    assert (template.baseline_problems, template.period_problems) == (60, 9)


def test_baseline_start_limits_the_baseline() -> None:
    frame = lines(
        ("2024-05-06 08:00", "api", 2, "disk full on /var"),
        ("2024-05-06 09:30", "api", 0, "GET /health 200"),
        ("2024-05-06 10:01", "api", 2, "disk full on /var"),
        ("2024-05-06 12:00", "api", 2, "after the period"),
    )
    start, end = pd.Timestamp("2024-05-06 10:00"), pd.Timestamp("2024-05-06 10:30")
    full = log_evidence(frame, start, end, ["api"]).services["api"]
    assert (full.baseline_events, full.period_events, full.templates) == (2, 1, [])
    recent = log_evidence(frame, start, end, ["api"], baseline_start=start - pd.Timedelta("1h"))
    (template,) = recent.services["api"].templates
    assert recent.services["api"].baseline_events == 1
    assert template.template == "disk full on /var" and template.new


def test_exceptions_are_grouped_by_stack_and_counted_per_side() -> None:
    def java(message: str, line: int, inner: str = "Client.call") -> str:
        return (
            f"charge failed\njava.net.SocketTimeoutException: {message}\n"
            f"\tat com.shop.payment.{inner}(Client.java:{line})\n"
            f"\tat com.shop.payment.Service.pay(Service.java:{line + 40})"
        )

    frame = lines(
        ("2024-05-06 09:00", "pay", 2, java("Read timed out after 3000 ms", 88)),
        ("2024-05-06 10:01", "pay", 2, java("Read timed out after 3100 ms", 91)),
        ("2024-05-06 10:02", "pay", 2, java("Read timed out after 2950 ms", 97)),
        ("2024-05-06 10:02:30", "pay", 2, java("Read timed out after 3020 ms", 88)),
        ("2024-05-06 10:03", "pay", 2, java("Connect timed out", 12, inner="Pool.lease")),
    )
    start, end = pd.Timestamp("2024-05-06 10:00"), pd.Timestamp("2024-05-06 10:10")
    exceptions = log_evidence(frame, start, end, ["pay"]).services["pay"].exceptions
    by_frame = {x.frames[0]: x for x in exceptions}
    assert set(by_frame) == {"com.shop.payment.Pool.lease", "com.shop.payment.Client.call"}
    new, known = by_frame["com.shop.payment.Pool.lease"], by_frame["com.shop.payment.Client.call"]
    assert (new.new, new.baseline_count, new.period_count) == (True, 0, 1)
    # Once in the hour before: 3 in the next 10 minutes is a rise (Poisson tail < 0.1 %).
    assert (known.new, known.baseline_count, known.period_count) == (False, 1, 3)
    assert known.example == "java.net.SocketTimeoutException: Read timed out after <NUM> ms"
    assert new.fingerprint != known.fingerprint
    assert np.all([x.type == "java.net.SocketTimeoutException" for x in exceptions])


def test_a_gap_in_log_collection_does_not_make_ordinary_warnings_a_rise() -> None:
    """A recording that keeps logs only around incidents (Nezha keeps a few minutes per fault) has
    a baseline with long holes: judged per wall-clock hour, its ordinary warning rate would look
    three times lower than it is, and every chronic complainer would "rise"."""

    def collected(first: str, minutes: int) -> list[tuple[str, str, float, str]]:
        """``api`` warns every 10 s and ``web`` logs a request every 2 s, from ``first`` on."""
        start = pd.Timestamp(first)
        return [
            *[(str(start + pd.Timedelta(seconds=10 * i)), "api", 1, f"retrying request {i}")
              for i in range(6 * minutes)],
            *[(str(start + pd.Timedelta(seconds=2 * i)), "web", 0, f"GET /cart/{i} 200")
              for i in range(30 * minutes)],
        ]  # fmt: skip

    start, end = pd.Timestamp("2024-05-06 10:00"), pd.Timestamp("2024-05-06 10:05")
    # Collected 09:00-09:10 and 09:50-10:05 only.
    gapped = [*collected("2024-05-06 09:00", 10), *collected("2024-05-06 09:50", 15)]
    ordinary = log_evidence(lines(*gapped), start, end, ["api", "web"]).services["api"]
    assert (ordinary.period_events, ordinary.templates, ordinary.problem_excess) == (30, [], 0.0)
    burst = [(f"2024-05-06 10:01:{i:02d}", "api", 1, f"retrying request {i}") for i in range(30)]
    loud = log_evidence(lines(*gapped, *burst), start, end, ["api", "web"]).services["api"]
    (template,) = loud.templates
    assert template.period_problems == 60 and loud.problem_excess > 25


def _requests(minutes: range, statements: tuple[str, ...], every_s: int = 20) -> list:
    """Log lines of a service answering a request every ``every_s`` seconds over ``minutes``
    past 09:00, each request writing ``statements`` (with a varying route id)."""
    stamps = pd.Timestamp("2024-05-06 09:00") + pd.to_timedelta(
        np.arange(minutes.start * 60, minutes.stop * 60, every_s), unit="s"
    )
    return [
        (str(t), "travel", 0, f"INFO t.s.TravelServiceImpl#{line} route {i} trip {i * 7}")
        for i, t in enumerate(stamps)
        for line in statements
    ]


def test_a_statement_the_service_stopped_writing_is_missing_for_its_own_volume() -> None:
    # An hour of requests writing #451 then #457; then an exception between them: #451 goes on,
    # #457 never comes. No warning or error line anywhere.
    start, end = pd.Timestamp("2024-05-06 10:00"), pd.Timestamp("2024-05-06 10:10")
    frame = lines(*_requests(range(60), ("451", "457")), *_requests(range(60, 70), ("451",)))
    travel = log_evidence(frame, start, end, ["travel"]).services["travel"]
    (gone,) = travel.missing_templates
    assert gone.template == "INFO t.s.TravelServiceImpl#457 route <NUM> trip <NUM>"
    assert (gone.baseline_count, gone.period_count) == (180, 0)
    assert gone.expected_count == pytest.approx(15.0)  # half of the period's 30 known lines
    assert gone.example == gone.template
    assert travel.missing_lines == pytest.approx(15.0)
    assert travel.problem_excess == 0.0 and travel.templates == []


def test_a_service_that_lost_traffic_misses_nothing() -> None:
    # Both statements keep their shares at a third of the traffic: fewer requests, same code path.
    start, end = pd.Timestamp("2024-05-06 10:00"), pd.Timestamp("2024-05-06 10:10")
    frame = lines(
        *_requests(range(60), ("451", "457")), *_requests(range(60, 70), ("451", "457"), 60)
    )
    travel = log_evidence(frame, start, end, ["travel"]).services["travel"]
    assert travel.period_events == 20
    assert (travel.missing_templates, travel.missing_lines) == ([], 0.0)


def test_code_locations_are_kept_and_never_share_a_template() -> None:
    header = "12:00:01.5 INFO  t.s.TravelServiceImpl#{} TraceID: 49a51828322183eb x {}"
    mined = mine_templates([header.format(451, 1), header.format(457, 2), header.format(451, 3)])
    assert list(mined.template_ids) == [0, 1, 0]
    assert mined.templates == {
        0: "<TIME> INFO t.s.TravelServiceImpl#451 TraceID: <HEX> x <NUM>",
        1: "<TIME> INFO t.s.TravelServiceImpl#457 TraceID: <HEX> x <NUM>",
    }
    kept = "at Client.java:88 o.a.c.c.C.[.[dispatcherServlet]#175 ok"
    assert mask(kept) == kept
    # A lower-case or unqualified word before '#' is data (an order or invoice id), and a
    # line number far into the payload is not a header.
    assert mask("order#4711 shipped") == "order#<NUM> shipped"
    assert mask("Invoice#48213 failed") == "Invoice#<NUM> failed"
    assert mask("x" * 200 + " a.Foo#12") == "x" * 200 + " a.Foo#<NUM>"


def _container_line(message: str, span: int) -> str:
    """A line as a container runtime stores it: its JSON wrapper around the service's JSON log."""
    app = {
        "message": f"TraceID: 4c87ec97bae0{span:020x} SpanID: e4006dce{span:08x} {message}",
        "severity": "info",
        "timestamp": f"2024-05-06T09:00:{span % 60:02d}.5Z",
    }
    return json.dumps({"log": json.dumps(app) + "\n", "stream": "stdout", "time": app["timestamp"]})


def test_structured_lines_are_read_by_their_message() -> None:
    wrapped = _container_line("Start charge card", 7)
    assert message_text(wrapped).endswith("SpanID: e4006dce00000007 Start charge card")
    assert message_text('{"level": "warn", "MSG": "disk full"}') == "disk full"
    for unchanged in ('{"user": "u1", "amount": 3}', "[1, 2]", "{not json", "plain {text}"):
        assert message_text(unchanged) == unchanged


def test_a_shared_preamble_does_not_merge_different_messages() -> None:
    # Same length, same "TraceID: .. SpanID: .." preamble, different statements: two templates;
    # the same statement with other ids: one.
    lines_ = [
        f"TraceID: {i:032x} SpanID: {i:016x} {text}"
        for i, text in enumerate(
            ["Start charge card", "Order placed ok", "Start charge card"], start=11
        )
    ]
    mined = mine_templates(lines_)
    assert list(mined.template_ids) == [0, 1, 0]
    assert mined.templates[0] == "TraceID: <HEX> SpanID: <HEX> Start charge card"


def test_a_statement_missing_from_container_json_logs_is_named_by_its_message() -> None:
    # Every request logs "Start charge card" then "Charge successfully"; in the period the
    # charge fails silently after the first. The logs are JSON inside a runtime's JSON.
    def requests(minutes: range, statements: tuple[str, ...]) -> list:
        stamps = pd.Timestamp("2024-05-06 09:00") + pd.to_timedelta(
            np.arange(minutes.start * 60, minutes.stop * 60, 20), unit="s"
        )
        return [
            (str(t), "checkout", 0, _container_line(text, i))
            for i, t in enumerate(stamps)
            for text in statements
        ]

    start, end = pd.Timestamp("2024-05-06 10:00"), pd.Timestamp("2024-05-06 10:10")
    both = ("Start charge card", "Charge successfully")
    frame = lines(*requests(range(60), both), *requests(range(60, 70), both[:1]))
    checkout = log_evidence(frame, start, end, ["checkout"]).services["checkout"]
    (gone,) = checkout.missing_templates
    assert gone.template == "TraceID: <HEX> SpanID: <HEX> Charge successfully"
    assert (gone.baseline_count, gone.period_count) == (180, 0)


TRAIN_TICKET = Path(__file__).resolve().parents[2] / "shared/data/nezha/rca_data/2023-01-29"


@pytest.mark.skipif(not TRAIN_TICKET.is_dir(), reason="../shared Nezha data not present")
@pytest.mark.parametrize(
    ("root", "fault", "statement"),
    [
        # Nezha's root_cause_ts.json: the pattern that reveals each `exception` fault.
        ("ts-travel-service", "2023-01-29T10:12:48Z", "t.s.TravelServiceImpl#457"),
        ("ts-route-service", "2023-01-29T11:04:05Z", "r.c.RouteController#53"),
    ],
)
def test_train_ticket_exception_faults_show_the_documented_statement_missing_at_the_root(
    root: str, fault: str, statement: str
) -> None:
    services = ("ts-travel-service", "ts-basic-service", "ts-route-service", "ts-price-service")
    start = pd.Timestamp(fault)
    end = start + pd.Timedelta("5min")  # Nezha's fault duration
    frame = read_pod_recording(TRAIN_TICKET, services, {}, start - pd.Timedelta("1h"), end)
    evidence = log_evidence(frame, start, end, services).services
    assert {s for s, ev in evidence.items() if ev.missing_lines > 0} == {root}
    top = evidence[root].missing_templates[0]
    assert statement in top.template
    assert top.period_count <= 1 and top.expected_count > 15
    assert evidence[root].period_events > 40  # still logging: not silence, a broken code path


def test_errors_that_stop_or_burst_make_no_usual_line_missing() -> None:
    start, end = pd.Timestamp("2024-05-06 10:00"), pd.Timestamp("2024-05-06 10:10")
    earlier_incident = [
        (
            f"2024-05-06 09:{10 + i // 12:02d}:{i % 12 * 5:02d}",
            "travel",
            2,
            f"ERROR route {i} failed",
        )
        for i in range(120)
    ]
    normal = [*_requests(range(60), ("451", "457")), *_requests(range(60, 70), ("451", "457"))]
    recovered = log_evidence(lines(*normal, *earlier_incident), start, end, ["travel"])
    assert recovered.services["travel"].missing_templates == []  # its errors stopped: recovery
    burst = [
        (f"2024-05-06 10:0{i // 60}:{i % 60:02d}", "travel", 2, f"ERROR route {i} failed")
        for i in range(300)
    ]
    loud = log_evidence(lines(*normal, *earlier_incident, *burst), start, end, ["travel"])
    travel = loud.services["travel"]
    assert travel.problem_excess > 200 and travel.missing_templates == []

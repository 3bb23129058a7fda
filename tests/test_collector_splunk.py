"""The Splunk collector against the stand-in server, through the real splunk-sdk over loopback.

Nothing here mocks the SDK: each test starts a stand-in that speaks Splunk's REST protocol, so a
wrong path, header, form field or response shape fails the test the way it would fail in
production.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import SecretStr

from ml_monitoring_service.collectors.resilience import CircuitBreaker, RetryPolicy
from ml_monitoring_service.collectors.splunk import (
    EVENT_COLUMNS,
    SplunkEventSource,
    render_query,
)
from ml_monitoring_service.errors import (
    BackendError,
    BackendUnavailableError,
    ConfigError,
    DataValidationError,
)
from standins.processes import free_port
from standins.splunk_server import StandInSplunk, running_splunk
from standins.tls import self_signed_certificate

TEMPLATE = 'search index=app service="$service" | fields _time service severity traceID'
START = pd.Timestamp("2024-03-01T10:00:00Z")
END = pd.Timestamp("2024-03-01T11:00:00Z")
TOKEN = "tok-7f3a9c41-secret"
PASSWORD = "pw-5d2e81b0-secret"
V2_EXPORT = "/services/search/v2/jobs/export"
V1_EXPORT = "/services/search/jobs/export"


def event(minutes: float, service: str, severity: str | None = "INFO", /, **fields: Any) -> dict:
    """An event ``minutes`` after START, its ``_time`` in Splunk's format (ms and offset)."""
    stamp = START + pd.Timedelta(minutes=minutes)
    result = {"_time": stamp.isoformat(timespec="milliseconds"), "service": service, **fields}
    if severity is not None:
        result["severity"] = severity
    return result


def source(
    url: str,
    *,
    attempts: int = 3,
    timeout_s: float = 2.0,
    breaker: CircuitBreaker | None = None,
    **auth: Any,
) -> SplunkEventSource:
    """A collector with instant retries; token auth unless ``auth`` says otherwise."""
    return SplunkEventSource(
        url,
        **(auth or {"token": SecretStr(TOKEN)}),
        timeout_s=timeout_s,
        retry=RetryPolicy(attempts=attempts, backoff_s=0),
        breaker=breaker,
    )


def exports(splunk: StandInSplunk) -> list[str]:
    return [p for p in splunk.paths("POST") if p.endswith("/jobs/export")]


@pytest.fixture
def shop() -> Iterator[StandInSplunk]:
    """Two services inside the hour, one unrequested service, and events outside the hour."""
    events = [
        event(5, "api", "INFO", traceID="t-1", _raw="GET /cart 200"),
        event(20, "api", "ERROR", traceID="t-2"),
        event(10, "db", "WARN"),
        event(30, "search", "ERROR"),
        event(-1, "api", "ERROR"),
        event(61, "db", "ERROR"),
    ]
    with running_splunk(events, token=TOKEN) as splunk:
        yield splunk


def test_token_auth_returns_typed_events_sorted_by_time(shop: StandInSplunk) -> None:
    events = source(shop.url).fetch_events(TEMPLATE, ["api", "db"], START, END)

    assert list(events.columns) == list(EVENT_COLUMNS)
    assert str(events["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert events["severity_level"].dtype == np.float64
    assert list(events["timestamp"]) == [START + pd.Timedelta(minutes=m) for m in (5, 10, 20)]
    assert list(events["service"]) == ["api", "db", "api"]
    assert list(events["severity_level"]) == [0.0, 1.0, 2.0]
    assert events["trace_id"].fillna("-").tolist() == ["t-1", "-", "t-2"]
    assert {r.authorization for r in shop.requests} == {f"Bearer {TOKEN}"}
    searches = [r.form["search"] for r in shop.requests if r.path.endswith("/export")]
    assert searches == [
        'search index=app service="api" | fields _time service severity traceID',
        'search index=app service="db" | fields _time service severity traceID',
    ]


@pytest.mark.parametrize(
    ("version", "path"),
    [("9.1.0", V2_EXPORT), ("9.0.2", V2_EXPORT), ("9.0.1", V1_EXPORT), ("8.2.12", V1_EXPORT)],
)
def test_export_path_follows_the_server_version(version: str, path: str) -> None:
    events = [event(5, "api"), event(7, "db", "ERROR")]
    with running_splunk(events, token=TOKEN, version=version) as splunk:
        fetched = source(splunk.url).fetch_events(TEMPLATE, ["api", "db"], START, END)
    assert exports(splunk) == [path, path]
    assert list(fetched["service"]) == ["api", "db"]
    assert list(fetched["severity_level"]) == [0.0, 2.0]


def test_username_and_password_open_one_session_reused_by_later_fetches() -> None:
    with running_splunk([event(5, "api")], password=PASSWORD) as splunk:
        collector = source(splunk.url, username="admin", password=SecretStr(PASSWORD))
        first = collector.fetch_events(TEMPLATE, ["api"], START, END)
        second = collector.fetch_events(TEMPLATE, ["api"], START, END)
    logins = [r for r in splunk.requests if r.path == "/services/auth/login"]
    assert len(logins) == 1 and logins[0].form["username"] == "admin"
    export_auth = {r.authorization or "" for r in splunk.requests if r.path.endswith("/export")}
    assert len(export_auth) == 1 and export_auth.pop().startswith("Splunk ")
    assert len(first) == len(second) == 1


def test_wrong_password_is_not_retried_and_names_the_cause() -> None:
    with running_splunk([event(5, "api")], password=PASSWORD) as splunk:
        collector = source(splunk.url, username="admin", password=SecretStr("wrong-pw"))
        with pytest.raises(BackendError) as info:
            collector.fetch_events(TEMPLATE, ["api"], START, END)
    message = str(info.value)
    assert message.startswith("splunk: ")
    assert "HTTP 401" in message and "Login failed" in message
    assert 'search index=app service="api"' in message
    assert splunk.paths() == ["/services/auth/login"]


def test_wrong_token_is_not_retried_and_carries_splunks_message() -> None:
    with running_splunk([event(5, "api")], token=TOKEN) as splunk:
        collector = source(splunk.url, token=SecretStr("not-the-token"))
        with pytest.raises(BackendError, match="call not properly authenticated"):
            collector.fetch_events(TEMPLATE, ["api"], START, END)
    assert len(splunk.requests) == 1


def test_time_range_is_half_open_and_time_zones_are_converted() -> None:
    events = [
        {"_time": "2024-03-01T10:00:00.000+00:00", "service": "api"},  # start: included
        {"_time": "2024-03-01T11:00:00.000+00:00", "service": "api"},  # end: excluded
        {"_time": "2024-03-01T09:59:59.999+00:00", "service": "api"},  # excluded
        {"_time": "2024-03-01T10:59:59.999+00:00", "service": "api"},  # included
        {"_time": "2024-03-01T16:00:00.000+05:30", "service": "api"},  # 10:30 UTC
    ]
    start = START.tz_convert("Europe/Berlin")  # same instant, other zone
    end = END.tz_localize(None)  # naive: taken as UTC
    with running_splunk(events, token=TOKEN) as splunk:
        fetched = source(splunk.url).fetch_events(TEMPLATE, ["api"], start, end)
    (export,) = [r for r in splunk.requests if r.path.endswith("/export")]
    assert export.form["earliest_time"] == "1709287200.000000"
    assert export.form["latest_time"] == "1709290800.000000"
    assert list(fetched["timestamp"]) == [
        START,
        START + pd.Timedelta(minutes=30),
        END - pd.Timedelta(milliseconds=1),
    ]


def test_severity_names_numbers_and_alternative_fields(caplog: pytest.LogCaptureFixture) -> None:
    levels = [
        {"severity": "INFO"},
        {"severity": "warn"},
        {"severity": " Error "},
        {"severity": "FATAL"},
        {"severity": "1"},
        {"level": "WARNING"},
        {"log_level": "err"},
        {"severity": "DEBUG", "level": "ERROR"},  # severity wins
        {},
        {"severity": "chatty"},
    ]
    events = [event(i, "api", None, **fields) for i, fields in enumerate(levels)]
    with running_splunk(events, token=TOKEN) as splunk:
        fetched = source(splunk.url).fetch_events(
            'search index=app service="$service"', ["api"], START, END
        )
    expected = [0, 1, 2, 2, 1, 1, 2, 0, np.nan, np.nan]
    np.testing.assert_array_equal(fetched["severity_level"].to_numpy(), expected)
    assert "unrecognised severities ['chatty'] for service 'api'" in caplog.text


def test_trace_id_from_either_field_else_missing() -> None:
    events = [
        event(1, "api", traceID="abc"),
        event(2, "api", trace_id="def"),
        event(3, "api"),
    ]
    template = 'search index=app service="$service" | fields _time severity traceID trace_id'
    with running_splunk(events, token=TOKEN) as splunk:
        fetched = source(splunk.url).fetch_events(template, ["api"], START, END)
    assert fetched["trace_id"].fillna("-").tolist() == ["abc", "def", "-"]


TRACE = (
    "Charge failed for order 4711\n"
    "java.net.SocketTimeoutException: Read timed out after 3000 ms\n"
    "\tat com.shop.payment.GatewayClient.charge(GatewayClient.java:88)\n"
    "\tat com.shop.payment.PaymentService.pay(PaymentService.java:41)"
)


def test_message_is_the_raw_event_text_with_multi_line_traces_intact() -> None:
    events = [event(1, "api", "ERROR", _raw=TRACE), event(2, "api", "INFO", traceID="t-2")]
    with running_splunk(events, token=TOKEN) as splunk:
        fetched = source(splunk.url).fetch_events(TEMPLATE, ["api"], START, END)
    assert fetched["message"].iloc[0] == TRACE
    # Without a _raw of its own the stand-in sends Splunk-like key=value text, like a real event.
    stamp = (START + pd.Timedelta(minutes=2)).isoformat(timespec="milliseconds")
    assert fetched["message"].iloc[1] == f"{stamp} service=api traceID=t-2 severity=INFO"


def test_message_field_is_the_fallback_when_the_search_drops_raw() -> None:
    events = [event(1, "api", message="cache miss for key 42"), event(2, "api")]
    template = 'search index=app service="$service" | fields - _raw'
    with running_splunk(events, token=TOKEN) as splunk:
        fetched = source(splunk.url).fetch_events(template, ["api"], START, END)
    assert fetched["message"].iloc[0] == "cache miss for key 42"
    assert pd.isna(fetched["message"].iloc[1])


def test_service_names_with_quotes_and_backslashes_are_escaped() -> None:
    odd = 'we"ird\\name'
    with running_splunk([event(5, odd), event(6, "api")], token=TOKEN) as splunk:
        fetched = source(splunk.url).fetch_events(TEMPLATE, [odd], START, END)
    (export,) = [r for r in splunk.requests if r.path.endswith("/export")]
    assert export.form["search"].startswith('search index=app service="we\\"ird\\\\name" |')
    assert list(fetched["service"]) == [odd]


def test_a_service_name_cannot_break_out_of_its_quoted_string(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sneaky = 'api" OR service="db'
    with running_splunk([event(5, "api"), event(6, "db")], token=TOKEN) as splunk:
        fetched = source(splunk.url).fetch_events(TEMPLATE, [sneaky], START, END)
    assert fetched.empty
    assert "no events for service 'api\" OR service=\"db'" in caplog.text


@pytest.mark.parametrize(
    ("template", "service", "expected"),
    [
        ("index=app service=$service", "api", 'search index=app service="api"'),
        ('search msg="from $service to db"', 'a"b', 'search msg="from a\\"b to db"'),
        ('SEARCH service="$service"', "api", 'SEARCH service="api"'),
        ('| tstats count where service="$service"', "api", '| tstats count where service="api"'),
        ('search service="$service" x="$services"', "api", 'search service="api" x="$services"'),
        ('search service="$service" x="a \\" b"', "api", 'search service="api" x="a \\" b"'),
    ],
)
def test_render_query(template: str, service: str, expected: str) -> None:
    assert render_query(template, service) == expected


@pytest.mark.parametrize(
    ("template", "service", "error", "match"),
    [
        ("search index=app", "api", ConfigError, r"no \$service"),
        ('search service="$service', "api", ConfigError, "unterminated quote"),
        (TEMPLATE, "api*", DataValidationError, "wildcard"),
        (TEMPLATE, "api\nx", DataValidationError, "non-printable"),
        (TEMPLATE, "", DataValidationError, "empty"),
    ],
)
def test_render_query_refuses_unsafe_input(
    template: str, service: str, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        render_query(template, service)


def test_spl_splunk_rejects_fails_at_once_with_splunks_message(shop: StandInSplunk) -> None:
    template = 'search index=app service="$service" | stats count by severity'
    with pytest.raises(BackendError) as info:
        source(shop.url).fetch_events(template, ["api"], START, END)
    message = str(info.value)
    assert "HTTP 400" in message and "Error in 'search' command" in message
    assert "| stats count by severity" in message
    assert len(exports(shop)) == 1


@pytest.mark.parametrize("status", [503, 429])
def test_busy_splunk_is_retried_until_it_answers(shop: StandInSplunk, status: int) -> None:
    shop.unavailable_exports = 2
    shop.unavailable_status = status
    fetched = source(shop.url, attempts=3).fetch_events(TEMPLATE, ["api"], START, END)
    assert len(exports(shop)) == 3
    assert len(fetched) == 2


def test_busy_splunk_gives_up_after_the_last_attempt(shop: StandInSplunk) -> None:
    shop.unavailable_exports = 5
    with pytest.raises(BackendError, match="HTTP 503 .*too busy"):
        source(shop.url, attempts=3).fetch_events(TEMPLATE, ["api"], START, END)
    assert len(exports(shop)) == 3


def _unused_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def test_unreachable_splunk_names_backend_and_query_then_opens_the_breaker() -> None:
    breaker = CircuitBreaker("splunk", failure_threshold=2, reset_after_s=60)
    collector = source(_unused_port_url(), attempts=2, breaker=breaker)
    with pytest.raises(BackendError) as info:
        collector.fetch_events(TEMPLATE, ["api"], START, END)
    message = str(info.value)
    assert message.startswith('splunk: search \'search index=app service="api"')
    assert "ConnectionRefusedError" in message
    assert breaker.is_open
    with pytest.raises(BackendUnavailableError, match="circuit open"):
        collector.fetch_events(TEMPLATE, ["api"], START, END)


def test_a_server_slower_than_the_timeout_fails_quickly(shop: StandInSplunk) -> None:
    shop.export_delay_s = 10.0
    began = time.monotonic()
    with pytest.raises(BackendError, match="TimeoutError"):
        source(shop.url, attempts=2, timeout_s=0.3).fetch_events(TEMPLATE, ["api"], START, END)
    assert time.monotonic() - began < 3.0
    assert len(exports(shop)) == 2


def test_a_malformed_result_line_is_a_clear_error_and_not_retried(shop: StandInSplunk) -> None:
    shop.corrupt_after = 1
    with pytest.raises(BackendError, match="not valid JSON after 1 events"):
        source(shop.url).fetch_events(TEMPLATE, ["api"], START, END)
    assert len(exports(shop)) == 1


def test_splunk_warnings_are_logged_and_fatal_messages_fail(
    shop: StandInSplunk, caplog: pytest.LogCaptureFixture
) -> None:
    shop.messages = [("WARN", "Search results might be incomplete")]
    fetched = source(shop.url).fetch_events(TEMPLATE, ["api"], START, END)
    assert len(fetched) == 2
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("Search results might be incomplete" in r.getMessage() for r in warned)

    shop.messages = [("FATAL", "The search job terminated unexpectedly")]
    with pytest.raises(BackendError, match="FATAL: The search job terminated unexpectedly"):
        source(shop.url).fetch_events(TEMPLATE, ["api"], START, END)


def test_events_without_time_are_refused(shop: StandInSplunk) -> None:
    template = 'search index=app service="$service" | fields - _time'
    with pytest.raises(DataValidationError, match="2 of 2 events of service 'api' have no _time"):
        source(shop.url).fetch_events(template, ["api"], START, END)


@pytest.mark.parametrize(
    ("rewrite", "match"),
    [
        (lambda t: t[:-6], "without a UTC offset, e.g. '2024-03-01T10:"),
        (lambda t: "2024-13-45T10:00:00.000+00:00", "cannot be parsed"),
    ],
)
def test_zoneless_or_unreadable_times_are_refused(
    shop: StandInSplunk, rewrite: Callable[[str], str], match: str
) -> None:
    shop.emit_time = rewrite
    with pytest.raises(DataValidationError, match=match):
        source(shop.url).fetch_events(TEMPLATE, ["api"], START, END)


def test_a_quiet_service_gives_no_rows_and_a_warning(
    shop: StandInSplunk, caplog: pytest.LogCaptureFixture
) -> None:
    fetched = source(shop.url).fetch_events(TEMPLATE, ["api", "quiet"], START, END)
    assert set(fetched["service"]) == {"api"}
    assert "no events for service 'quiet'" in caplog.text
    assert 'service="quiet"' in caplog.text


def test_no_events_at_all_gives_an_empty_typed_table(shop: StandInSplunk) -> None:
    fetched = source(shop.url).fetch_events(TEMPLATE, ["quiet"], START, END)
    assert fetched.empty and list(fetched.columns) == list(EVENT_COLUMNS)
    assert str(fetched["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert fetched["severity_level"].dtype == np.float64


def test_duplicates_are_kept_and_results_sorted() -> None:
    twice = event(9, "api", "ERROR", traceID="t-9")
    events = [event(30, "api"), twice, dict(twice), event(1, "api")]
    with running_splunk(events, token=TOKEN) as splunk:
        fetched = source(splunk.url).fetch_events(TEMPLATE, ["api"], START, END)
    minutes = ((fetched["timestamp"] - START) / pd.Timedelta(minutes=1)).tolist()
    assert minutes == [1, 9, 9, 30]
    assert fetched["trace_id"].tolist()[1:3] == ["t-9", "t-9"]


@pytest.mark.parametrize(
    ("services", "start", "end", "match"),
    [
        ([], START, END, "no services"),
        (["api"], END, START, "empty time range"),
        (["api"], START, pd.NaT, "end time is missing"),
    ],
)
def test_bad_arguments_are_refused_before_any_request(
    shop: StandInSplunk, services: list[str], start: Any, end: Any, match: str
) -> None:
    with pytest.raises(DataValidationError, match=match):
        source(shop.url).fetch_events(TEMPLATE, services, start, end)
    assert shop.requests == []


def test_secrets_stay_out_of_reprs_logs_and_errors(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    failures: list[BaseException] = []
    collectors: list[SplunkEventSource] = []
    # The secrets are right for the busy server (so retries run and are logged) and wrong for
    # the strict one (so authentication failures are reported).
    for server_token, server_password in ((TOKEN, PASSWORD), ("other-token", "other-pw")):
        with running_splunk([event(5, "api")], token=server_token, password=server_password) as s:
            s.unavailable_exports = 10
            for collector in (
                source(s.url, token=SecretStr(TOKEN)),
                source(s.url, username="admin", password=SecretStr(PASSWORD)),
            ):
                with pytest.raises(BackendError) as info:
                    collector.fetch_events(TEMPLATE, ["api"], START, END)
                failures.append(info.value)
                collectors.append(collector)
    texts = [repr(c) for c in collectors] + [caplog.text]
    texts += [r.getMessage() for r in caplog.records]
    for failure in failures:
        chained: BaseException | None = failure
        while chained is not None:
            texts.append(str(chained))
            chained = chained.__cause__ or chained.__context__
    assert "auth='token'" in texts[0] and "auth='password'" in texts[1]
    for reported in ("HTTP 503", "HTTP 401", "Login failed", "failed (try 1 of 3)"):
        assert reported in caplog.text or any(reported in str(f) for f in failures)
    for secret in (TOKEN, PASSWORD):
        assert not [t for t in texts if secret in t]


@pytest.mark.parametrize(
    ("url", "auth", "match"),
    [
        ("ftp://splunk:8089", {"token": SecretStr(TOKEN)}, "http"),
        ("https://splunk:8089/en-US/app", {"token": SecretStr(TOKEN)}, "no path"),
        (f"https://admin:{PASSWORD}@splunk:8089", {"token": SecretStr(TOKEN)}, "credentials"),
        ("https://splunk:8089", {}, "give a token"),
        ("https://splunk:8089", {"username": "admin"}, "give a token"),
        (
            "https://splunk:8089",
            {"token": SecretStr(TOKEN), "username": "a", "password": SecretStr(PASSWORD)},
            "not both",
        ),
        ("https://splunk:8089", {"token": SecretStr(TOKEN), "timeout_s": 0}, "timeout_s"),
        ("https://splunk:8089", {"token": SecretStr(TOKEN), "verify": "/no/ca.pem"}, "CA bundle"),
    ],
)
def test_settings_that_are_ambiguous_or_leak_secrets_are_refused(
    url: str, auth: dict[str, Any], match: str
) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        SplunkEventSource(url, **auth)
    assert PASSWORD not in str(info.value) and TOKEN not in str(info.value)


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by itself, and its key (PEM files)."""
    return self_signed_certificate(tmp_path_factory.mktemp("tls"), "stand-in splunk")


def test_tls_is_verified_by_default_and_a_ca_bundle_can_be_trusted(
    self_signed: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with running_splunk([event(5, "api")], token=TOKEN, tls=self_signed) as splunk:
        assert splunk.url.startswith("https://")
        with pytest.raises(BackendError, match="CERTIFICATE_VERIFY_FAILED"):
            source(splunk.url).fetch_events(TEMPLATE, ["api"], START, END)
        assert "failed (try" not in caplog.text  # a certificate problem is not retried
        assert splunk.requests == []

        trusted = source(splunk.url, token=SecretStr(TOKEN), verify=self_signed[0])
        assert len(trusted.fetch_events(TEMPLATE, ["api"], START, END)) == 1

        unchecked = source(splunk.url, token=SecretStr(TOKEN), verify=False)
        assert len(unchecked.fetch_events(TEMPLATE, ["api"], START, END)) == 1
    assert "TLS certificate verification is off" in caplog.text

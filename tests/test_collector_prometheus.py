"""The Prometheus collector against a real Prometheus server loaded with a known history.

What PromQL returns (lookback boundaries, aggregation of NaN, escaping, error bodies) is taken
from the server, never assumed: event-mode values are compared with real per-time instant
queries, sent by the test itself. Only replies a real server cannot produce (duplicate or
unordered samples, malformed JSON, 503s, slow answers) come from a small local HTTP server.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import numpy as np
import pandas as pd
import pytest
import requests
from pydantic import SecretStr

from ml_monitoring_service.collectors.prometheus import MAX_POINTS_PER_QUERY, PrometheusMetricSource
from ml_monitoring_service.collectors.promql import FastPlan, plan_fast_path, render
from ml_monitoring_service.collectors.resilience import CircuitBreaker, RetryPolicy
from ml_monitoring_service.errors import (
    BackendError,
    BackendUnavailableError,
    ConfigError,
    DataValidationError,
)
from standins.prometheus_server import Series, running_prometheus
from standins.servers import serve_in_background
from standins.tls import self_signed_certificate

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z
END = T0 + 3 * 3600.0
SERVICES = ("api", "db", "cache")
DB_GAP = (T0 + 3600.0, T0 + 4320.0)  # db's queue_depth: last sample before, first after
INJECTION = 'a"} or vector(1) #'

QUEUE = 'queue_depth{service="$service"}'
HIT = 'hit_ratio{service="$service"}'
MEMORY = 'memory_bytes{service="$service"}'
RATE = 'rate(requests_total{service="$service"}[1m])'
FAST_TEMPLATES = {
    "queue": QUEUE,
    "hit": HIT,
    "memory_sum": 'sum(memory_bytes{service="$service"})',
    "cpu_sum": 'sum(cpu_load{service="$service"})',
    "cpu_avg": 'avg(cpu_load{service="$service"})',
    "cpu_max": 'max(cpu_load{service="$service"})',
    "cpu_min": 'min(cpu_load{service="$service"})',
    "cpu_count": 'count(cpu_load{service="$service"})',
}
NO_RETRY = RetryPolicy(attempts=1, backoff_s=0)
AT_T0 = {"api": pd.DatetimeIndex([pd.Timestamp(T0, unit="s", tz="UTC")])}


def _jittered(rng: np.random.Generator, start: float, stop: float, every: float) -> np.ndarray:
    """Scrape-like times: a regular grid moved by up to ±3 s, at millisecond resolution."""
    grid = np.arange(start, stop, every)
    return np.round(grid + rng.integers(-3000, 3000, len(grid)) / 1000, 3)


def _history() -> list[Series]:
    """3 h of api, db and cache: a gauge with a 12-minute gap (db), a counter, cores, pods.

    Samples are jittered to the millisecond, like real scrapes. api has three CPU cores (sums of
    three floats depend on the order of addition), a NaN and an +Inf; cache has no hit_ratio.
    """
    rng = np.random.default_rng(11)
    history = []
    grid = np.arange(T0, END, 30.0)
    for service in SERVICES:
        times = grid if service != "db" else grid[(grid <= DB_GAP[0]) | (grid >= DB_GAP[1])]
        values = np.round(rng.uniform(0, 50, len(times)), 3)
        if service == "api":
            values[60], values[80] = math.nan, math.inf
        history.append(
            Series("queue_depth", {"service": service}, list(zip(times, values, strict=True)))
        )
        ticks = _jittered(rng, T0, END, 15.0)
        counts = np.cumsum(rng.poisson(20, len(ticks))).astype(float)
        history.append(
            Series("requests_total", {"service": service}, list(zip(ticks, counts, strict=True)))
        )
        cores = ("0", "1", "2") if service == "api" else ("0",)
        for core in cores:
            ticks = _jittered(rng, T0, END, 15.0)
            load = np.round(rng.uniform(0, 4, len(ticks)), 4)
            if core == "1":
                load[100] = math.nan
            labels = {"service": service, "core": core}
            history.append(Series("cpu_load", labels, list(zip(ticks, load, strict=True))))
        if service != "cache":
            ticks = _jittered(rng, T0, END, 30.0)
            ratio = np.round(rng.uniform(0, 1, len(ticks)), 3)
            history.append(
                Series("hit_ratio", {"service": service}, list(zip(ticks, ratio, strict=True)))
            )
    pods = {  # api: two pods side by side; db: a pod replaced 7 minutes after the old one ended
        "api-1": ("api", T0, END),
        "api-2": ("api", T0 + 3600, END),
        "db-1": ("db", T0, T0 + 5400),
        "db-2": ("db", T0 + 5820, END),
        "cache-1": ("cache", T0, END),
    }
    for pod, (service, start, stop) in pods.items():
        ticks = _jittered(rng, start, stop, 20.0)
        memory = rng.integers(100_000_000, 200_000_000, len(ticks)).astype(float)
        labels = {"service": service, "pod": pod}
        history.append(Series("memory_bytes", labels, list(zip(ticks, memory, strict=True))))
    for name, value in (("a.b", 1.0), ("axb", 2.0), (INJECTION, 7.0)):
        history.append(Series("up", {"service": name}, [(T0 + 60 * i, value) for i in range(10)]))
    return history


HISTORY = _history()


def _samples(name: str, **labels: str) -> list[tuple[float, float]]:
    (series,) = [s for s in HISTORY if s.name == name and dict(s.labels) == labels]
    return list(series.samples)


# --- a local HTTP server: crafted replies, or a recording proxy in front of the real one ---


@dataclass
class Recorded:
    path: str
    params: dict[str, str]
    headers: dict[str, str]


Reply = Callable[[Recorded], tuple[int, bytes]]


@dataclass
class LocalServer:
    url: str
    requests: list[Recorded] = field(default_factory=list)

    def queries(self) -> list[str]:
        return [r.params.get("query", "") for r in self.requests]


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that time out close the socket mid-reply; that is expected here."""


@contextmanager
def local_server(reply: Reply, tls: tuple[Path, Path] | None = None) -> Iterator[LocalServer]:
    state = LocalServer(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            recorded = Recorded(parts.path, dict(parse_qsl(parts.query)), dict(self.headers))
            state.requests.append(recorded)
            status, body = reply(recorded)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = _QuietServer(("127.0.0.1", 0), Handler)
    with serve_in_background(server, tls) as url:
        state.url = url
        yield state


def _forward_to(upstream: str) -> Reply:
    def forward(request: Recorded) -> tuple[int, bytes]:
        answer = requests.get(upstream + request.path, params=request.params, timeout=10)
        return answer.status_code, answer.content

    return forward


def _success(result_type: str, result: list[dict[str, Any]]) -> bytes:
    body = {"status": "success", "data": {"resultType": result_type, "result": result}}
    return json.dumps(body).encode()


# --- fixtures and helpers ---


@pytest.fixture(scope="module")
def prometheus_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_prometheus(HISTORY, tmp_path_factory.mktemp("prometheus")) as url:
        yield url


@pytest.fixture
def proxy(prometheus_url: str) -> Iterator[LocalServer]:
    """The real server behind a proxy that records every request the collector sends."""
    with local_server(_forward_to(prometheus_url)) as server:
        yield server


def _source(url: str, **options: Any) -> PrometheusMetricSource:
    options.setdefault("retry", NO_RETRY)
    options.setdefault("timeout_s", 10.0)
    return PrometheusMetricSource(url, **options)


def _ms(seconds: float) -> pd.Timestamp:
    return pd.Timestamp(round(seconds * 1000), unit="ms", tz="UTC")


def _instant_truth(url: str, query: str, stamps: pd.Series) -> np.ndarray:
    """What Prometheus's own instant queries return at each time (±Inf as NaN, like the source)."""
    values = []
    with requests.Session() as session:
        for stamp in stamps:
            millis = pd.Timestamp(stamp).as_unit("ns").value // 1_000_000
            params = {"query": query, "time": f"{millis // 1000}.{millis % 1000:03d}"}
            result = session.get(f"{url}/api/v1/query", params=params).json()["data"]["result"]
            assert len(result) <= 1, f"{query} at {stamp} has {len(result)} series"
            value = float(result[0]["value"][1]) if result else math.nan
            values.append(math.nan if math.isinf(value) else value)
    return np.array(values)


def _event_times(service: str, rng: np.random.Generator) -> pd.DatetimeIndex:
    """Times that probe the lookback: on samples, exactly 5 min after, just past, gaps, edges."""
    own = sorted({t for s in HISTORY if s.labels.get("service") == service for t, _ in s.samples})
    chosen = rng.choice(own, 12, replace=False)
    seconds = [t + offset for t in chosen for offset in (0.0, 300.0, 300.001, 299.999)]
    seconds += [T0 - 60, T0 - 0.001, T0, END + 100, END + 299, END + 400]
    seconds += [DB_GAP[0] + 300, DB_GAP[0] + 300.001, DB_GAP[0] + 500, DB_GAP[1] - 0.001]
    seconds += list(np.round(rng.uniform(T0 - 600, END + 600, 30), 3))
    stamps = [_ms(s) for s in seconds]
    stamps += [stamps[0], stamps[5] + pd.Timedelta(microseconds=250)]  # a repeat, sub-millisecond
    return pd.DatetimeIndex(stamps)


# --- templating ---


def test_render_escapes_the_name_as_a_promql_string_value() -> None:
    assert render('up{service="$service"}', 'x\\"y') == 'up{service="x\\\\\\"y"}'
    assert render('up{service="$service"}', INJECTION) == 'up{service="a\\"} or vector(1) #"}'
    assert render('up{service=~"$service|other"}', "a.b") == 'up{service=~"a\\\\.b|other"}'
    assert render('up{job="$service_x", s="$service"}', "a") == 'up{job="$service_x", s="a"}'


@pytest.mark.parametrize("name", ["a\nb", "tab\there", "", "nul\x00"])
def test_render_refuses_names_that_cannot_be_a_label_value(name: str) -> None:
    with pytest.raises(ConfigError):
        render('up{service="$service"}', name)


@pytest.mark.parametrize(
    "template", ["up{service='$service'}", "up{service=`$service`}", "$service", "up # $service"]
)
def test_render_refuses_placeholders_outside_double_quotes(template: str) -> None:
    with pytest.raises(ConfigError, match="double-quoted"):
        render(template, "api")


def test_an_injection_attempt_stays_a_label_value_on_the_real_server(prometheus_url: str) -> None:
    stamp = pd.Series([_ms(T0 + 120)])
    unescaped = 'up{service="$service"}'.replace("$service", INJECTION)
    assert _instant_truth(prometheus_url, unescaped, stamp) == [1.0]  # vector(1) got in
    escaped = render('up{service="$service"}', INJECTION)
    assert _instant_truth(prometheus_url, escaped, stamp) == [7.0]  # the series of that name
    regex = render('up{service=~"$service"}', "a.b")
    assert _instant_truth(prometheus_url, regex, stamp) == [1.0]  # not also "axb"


@pytest.mark.parametrize(
    ("query", "plan"),
    [
        ('x{a="b"}', FastPlan('x{a="b"}', None)),
        ('{__name__="x", a=~"b)"}', FastPlan('{__name__="x", a=~"b)"}', None)),
        ('SUM (x{a!~"\\"}",})', FastPlan('x{a!~"\\"}",}', "sum")),
        ("count(x)", FastPlan("x", "count")),
        ("x offset 5m", None),
        ("x @ 1700000000", None),
        ("x[5m]", None),
        ("rate(x[1m])", None),
        ("sum by (a) (x)", None),
        ("sum(x) by (a)", None),
        ("sum(x) + sum(y)", None),
        ("max(-x)", None),
        ("NaN", None),
        ('x{a="b"} # note', None),
    ],
)
def test_only_bare_selectors_and_plain_aggregations_use_raw_samples(
    query: str, plan: FastPlan | None
) -> None:
    assert plan_fast_path(query) == plan


# --- range mode ---


def test_range_mode_returns_the_written_values_on_the_grid(
    prometheus_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    start, end = _ms(T0), _ms(END - 30)
    with _source(prometheus_url) as source, caplog.at_level(logging.WARNING):
        frame = source.sample_range(
            {"queue": QUEUE, "hit": HIT}, SERVICES, start, end, pd.Timedelta("30s")
        )
    assert list(frame.columns) == ["timestamp", "service", "queue", "hit"]
    assert str(frame["timestamp"].dtype) == "datetime64[ns, UTC]"
    for service in SERVICES:
        rows = frame[frame["service"] == service].set_index("timestamp")
        written = pd.Series(dict(_samples("queue_depth", service=service)))
        written.index = [_ms(t) for t in written.index]
        expected = written.replace([math.inf, -math.inf], math.nan)
        if service == "db":  # the last value before the gap holds for exactly 5 minutes
            carried = pd.date_range(_ms(DB_GAP[0] + 30), _ms(DB_GAP[0] + 300), freq="30s")
            expected = pd.concat([expected, pd.Series(written[_ms(DB_GAP[0])], carried)])
        assert pd.DatetimeIndex(expected.index).isin(rows.index).all(), service
        got, want = rows["queue"], expected.reindex(rows.index)  # other rows: hit_ratio only
        np.testing.assert_array_equal(got.to_numpy(), want.to_numpy(), service)
        assert got.notna().sum() == expected.notna().sum()
    assert frame.loc[frame["service"] == "cache", "hit"].isna().all()
    assert "'hit_ratio{service=\"cache\"}' returned no data for service 'cache'" in caplog.text
    assert "returned 1 ±Inf values" in caplog.text


def test_long_ranges_are_split_below_the_server_point_limit(prometheus_url: str) -> None:
    start, end, step = _ms(T0), _ms(END), pd.Timedelta("500ms")
    points = int((end - start) / step) + 1
    assert points > MAX_POINTS_PER_QUERY
    refused = requests.get(
        f"{prometheus_url}/api/v1/query_range",
        params={"query": "up", "start": str(T0), "end": str(END), "step": "0.5"},
    )
    assert refused.status_code == 400 and "11,000 points" in refused.text
    with _source(prometheus_url) as source:
        fine = source.sample_range({"queue": QUEUE}, ["api"], start, end, step)
        coarse = source.sample_range({"queue": QUEUE}, ["api"], start, end, pd.Timedelta("30s"))
    assert len(fine) == points
    assert (fine["timestamp"].diff().dropna() == step).all()
    on_coarse_grid = fine.set_index("timestamp").loc[coarse["timestamp"], "queue"]
    np.testing.assert_array_equal(on_coarse_grid.to_numpy(), coarse["queue"].to_numpy())


def test_range_mode_accepts_a_replaced_pod_but_not_two_at_once(prometheus_url: str) -> None:
    start, end = _ms(T0), _ms(END)
    with _source(prometheus_url) as source:
        frame = source.sample_range({"memory": MEMORY}, ["db"], start, end, pd.Timedelta("1min"))
        assert frame["memory"].notna().all()
        with pytest.raises(DataValidationError) as info:
            source.sample_range({"memory": MEMORY}, ["api"], start, end, pd.Timedelta("1min"))
    message = str(info.value)
    assert 'memory_bytes{service="api"}' in message
    assert 'pod="api-1"' in message and 'pod="api-2"' in message


def test_a_service_without_any_data_is_an_error(prometheus_url: str) -> None:
    with _source(prometheus_url) as source, pytest.raises(DataValidationError) as info:
        source.sample_range({"hit": HIT}, ["cache"], _ms(T0), _ms(END), pd.Timedelta("1min"))
    assert "'cache'" in str(info.value) and 'hit_ratio{service="cache"}' in str(info.value)


# --- event mode ---


def test_event_mode_from_raw_samples_equals_instant_queries(
    prometheus_url: str, proxy: LocalServer
) -> None:
    rng = np.random.default_rng(5)
    times = {service: _event_times(service, rng) for service in SERVICES}
    with _source(proxy.url) as source:
        frame = source.sample_at(FAST_TEMPLATES, SERVICES, times)
    for service in SERVICES:
        rows = frame[frame["service"] == service]
        expected_times = times[service].unique().sort_values()
        assert pd.DatetimeIndex(rows["timestamp"]).equals(expected_times)
        for metric, template in FAST_TEMPLATES.items():
            truth = _instant_truth(prometheus_url, render(template, service), rows["timestamp"])
            np.testing.assert_array_equal(rows[metric].to_numpy(), truth, f"{metric} {service}")
    # Most values came from one raw fetch per hour of event times, not from instant queries.
    raw_fetches = [q for q in proxy.queries() if q.endswith("ms]")]
    assert len(raw_fetches) == len(FAST_TEMPLATES) * len(SERVICES) * 4
    # The rest: sums of three and averages of several floats, which only api's cores give.
    per_time = {q for q in proxy.queries() if not q.endswith("ms]")}
    assert per_time == {'sum(cpu_load{service="api"})', 'avg(cpu_load{service="api"})'}


def test_event_mode_falls_back_to_instant_queries_for_rate(
    prometheus_url: str, proxy: LocalServer
) -> None:
    rng = np.random.default_rng(8)
    times = {service: _event_times(service, rng) for service in SERVICES}
    with _source(proxy.url, max_workers=3) as source:
        frame = source.sample_at({"rate": RATE}, SERVICES, times)
    for service in SERVICES:
        rows = frame[frame["service"] == service]
        truth = _instant_truth(prometheus_url, render(RATE, service), rows["timestamp"])
        np.testing.assert_array_equal(rows["rate"].to_numpy(), truth)
    distinct_ms = sum(len(t.floor("ms").unique()) for t in times.values())
    assert len(proxy.requests) == distinct_ms  # one query per distinct time, repeats merged


def test_event_mode_bare_selector_with_two_pods_at_once_is_an_error(prometheus_url: str) -> None:
    times = {"db": pd.DatetimeIndex([_ms(T0 + 5500), _ms(T0 + 5900)])}
    with _source(prometheus_url) as source:
        frame = source.sample_at({"memory": MEMORY}, ["db"], times)
        truth = _instant_truth(prometheus_url, render(MEMORY, "db"), frame["timestamp"])
        np.testing.assert_array_equal(frame["memory"].to_numpy(), truth)
        with pytest.raises(DataValidationError, match='pod="api-1".*pod="api-2"'):
            source.sample_at({"memory": MEMORY}, ["api"], {"api": times["db"]})


def test_event_mode_counts_a_sample_exactly_five_minutes_old(prometheus_url: str) -> None:
    last_before_gap = dict(_samples("queue_depth", service="db"))[DB_GAP[0]]
    with _source(prometheus_url) as source:
        for offset, expected in ((300.0, last_before_gap), (300.001, math.nan)):
            times = {"db": pd.DatetimeIndex([_ms(DB_GAP[0] + offset)])}
            frame = source.sample_at({"queue": QUEUE, "hit": HIT}, ["db"], times)
            truth = _instant_truth(prometheus_url, render(QUEUE, "db"), frame["timestamp"])
            np.testing.assert_array_equal(frame["queue"].to_numpy(), [expected])
            np.testing.assert_array_equal(truth, [expected])


def test_event_mode_skips_services_without_events(prometheus_url: str) -> None:
    times = {"api": pd.DatetimeIndex([_ms(T0 + 60)]), "db": pd.DatetimeIndex([])}
    with _source(prometheus_url) as source:
        frame = source.sample_at({"queue": QUEUE}, SERVICES, times)
        empty = source.sample_at({"queue": QUEUE}, SERVICES, {})
    assert frame["service"].tolist() == ["api"]
    assert empty.empty and list(empty.columns) == ["timestamp", "service", "queue"]


# --- failures ---


def test_bad_promql_fails_at_once_with_prometheus_message(proxy: LocalServer) -> None:
    with (
        _source(proxy.url, retry=RetryPolicy(attempts=3, backoff_s=0)) as source,
        pytest.raises(BackendError) as info,
    ):
        source.sample_at({"bad": "sum(rate(x[1m])"}, ["api"], AT_T0)
    message = str(info.value)
    assert message.startswith("prometheus: query 'sum(rate(x[1m])'")
    assert "HTTP 400 bad_data" in message and "parse error" in message
    assert len(proxy.requests) == 1


def test_an_unreachable_server_fails_naming_the_query_then_opens_the_breaker() -> None:
    breaker = CircuitBreaker("prometheus", failure_threshold=2, reset_after_s=60)
    closed_port = "http://127.0.0.1:9"
    retry = RetryPolicy(attempts=2, backoff_s=0)
    with _source(closed_port, retry=retry, breaker=breaker) as source:
        with pytest.raises(BackendError) as info:
            source.sample_range({"q": QUEUE}, ["api"], _ms(T0), _ms(T0 + 60), pd.Timedelta("1min"))
        assert "prometheus: query_range 'queue_depth{service=\"api\"}'" in str(info.value)
        assert "ConnectionError" in str(info.value)
        with pytest.raises(BackendUnavailableError, match="circuit open"):
            source.sample_range({"q": QUEUE}, ["api"], _ms(T0), _ms(T0 + 60), pd.Timedelta("1min"))


def test_server_errors_are_retried_by_us_alone() -> None:
    answers = iter([503, 502, 200, 503, 503, 503])

    def flaky(request: Recorded) -> tuple[int, bytes]:
        status = next(answers)
        if status != 200:
            return status, b"upstream unavailable"
        return 200, _success("vector", [{"metric": {}, "value": [T0, "4"]}])

    with local_server(flaky) as server:
        with _source(server.url, retry=RetryPolicy(attempts=3, backoff_s=0)) as source:
            frame = source.sample_at({"rate": RATE}, ["api"], AT_T0)
            assert frame["rate"].tolist() == [4.0]
            assert len(server.requests) == 3
            with pytest.raises(BackendError, match="HTTP 503: 'upstream unavailable'"):
                source.sample_at({"rate": RATE}, ["api"], AT_T0)
    assert len(server.requests) == 6  # PrometheusConnect's own urllib3 retry would add more


def test_a_slow_server_times_out_and_is_retried() -> None:
    def slow(request: Recorded) -> tuple[int, bytes]:
        time.sleep(1.0)
        return 200, _success("vector", [])

    with local_server(slow) as server:
        retry = RetryPolicy(attempts=2, backoff_s=0)
        with _source(server.url, timeout_s=0.2, retry=retry) as source:
            started = time.monotonic()
            with pytest.raises(BackendError, match="prometheus: query 'rate.*Timeout"):
                source.sample_at({"rate": RATE}, ["api"], AT_T0)
            assert time.monotonic() - started < 0.9
    assert len(server.requests) == 2


# --- crafted replies ---


def _crafted(result_type: str, result: list[dict[str, Any]]) -> Reply:
    return lambda request: (200, _success(result_type, result))


def test_special_values_duplicates_and_disorder_are_cleaned(
    caplog: pytest.LogCaptureFixture,
) -> None:
    values = [[T0 + 60, "3"], [T0, "NaN"], [T0 + 30, "+Inf"], [T0 + 30, "2.5"], [T0 + 90, "-Inf"]]
    reply = _crafted("matrix", [{"metric": {"__name__": "q"}, "values": values}])
    with local_server(reply) as server, _source(server.url) as source:
        with caplog.at_level(logging.WARNING):
            frame = source.sample_range(
                {"q": QUEUE}, ["api"], _ms(T0), _ms(T0 + 90), pd.Timedelta("30s")
            )
    assert frame["timestamp"].tolist() == [_ms(T0 + 30 * i) for i in range(4)]
    np.testing.assert_array_equal(frame["q"].to_numpy(), [math.nan, 2.5, 3.0, math.nan])
    assert "1 duplicate timestamps" in caplog.text and "returned 1 ±Inf values" in caplog.text


def test_several_series_where_one_is_expected_are_named() -> None:
    result = [
        {"metric": {"pod": "a"}, "value": [T0, "1"]},
        {"metric": {"pod": "b"}, "value": [T0, "2"]},
    ]
    with local_server(_crafted("vector", result)) as server, _source(server.url) as source:
        with pytest.raises(DataValidationError) as info:
            source.sample_at({"rate": RATE}, ["api"], AT_T0)
    message = str(info.value)
    assert 'rate(requests_total{service="api"}[1m])' in message
    assert '{pod="a"}' in message and '{pod="b"}' in message


@pytest.mark.parametrize(
    ("body", "cause"),
    [
        (b"<html>not json", "not a successful API reply"),
        (b'{"status": "success", "data": {}}', "no data.result"),
        (b'{"status": "success", "data": {"result": [{"values": [[1, "1"]]}]}}', "KeyError"),
        (
            b'{"status": "success", "data": {"result": [{"metric": {}, "value": [1, 2]}]}}',
            "strings",
        ),
        (b'{"status": "success", "data": {"result": [1700000000, "1"]}}', "not a series"),
    ],
)
def test_malformed_replies_are_backend_errors_and_not_retried(body: bytes, cause: str) -> None:
    with local_server(lambda request: (200, body)) as server:
        retry = RetryPolicy(attempts=3, backoff_s=0)
        with _source(server.url, retry=retry) as source, pytest.raises(BackendError) as info:
            source.sample_at({"rate": RATE}, ["api"], AT_T0)
    assert str(info.value).startswith("prometheus: query 'rate(")
    assert cause in str(info.value)
    assert len(server.requests) == 1


def test_the_token_is_sent_but_never_shown() -> None:
    def unauthorised(request: Recorded) -> tuple[int, bytes]:
        return 401, b"Unauthorized"

    with local_server(unauthorised) as server:
        source = _source(server.url, token=SecretStr("s3cret-token"))
        with source, pytest.raises(BackendError) as info:
            source.sample_at({"rate": RATE}, ["api"], AT_T0)
    assert server.requests[0].headers["Authorization"] == "Bearer s3cret-token"
    assert "HTTP 401" in str(info.value)
    assert "s3cret" not in str(info.value) and "s3cret" not in repr(source)


def test_tls_is_verified_by_default_and_a_ca_bundle_can_be_given(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cert, key = self_signed_certificate(tmp_path)
    reply = _crafted("vector", [{"metric": {}, "value": [T0, "1"]}])
    retry = RetryPolicy(attempts=3, backoff_s=0)
    with local_server(reply, tls=(cert, key)) as server:
        with (
            _source(server.url, retry=retry) as source,
            caplog.at_level(logging.INFO),
            pytest.raises(BackendError) as info,
        ):
            source.sample_at({"rate": RATE}, ["api"], AT_T0)
        assert "SSLError" in str(info.value) and not server.requests
        assert "failed (try" not in caplog.text  # a certificate problem is not retried
        with _source(server.url, verify=cert) as source:
            frame = source.sample_at({"rate": RATE}, ["api"], AT_T0)
    assert frame["rate"].tolist() == [1.0]

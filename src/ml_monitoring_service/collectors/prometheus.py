"""Prometheus collector: every metric template sampled per service, on a grid or at event times.

Two modes, matching ``collect.prometheus_mode``:

* ``range`` (:meth:`PrometheusMetricSource.sample_range`): ``query_range`` evaluated on
  ``start + k * step``. Prometheus refuses more than 11,000 points per series in one request, so
  longer ranges are split into consecutive requests on the same grid.
* ``event`` (:meth:`PrometheusMetricSource.sample_at`): each metric's value at each event time,
  exactly as an instant query at that time returns it.

Event mode: when raw samples replace instant queries
-----------------------------------------------------
Thousands of event times would mean thousands of instant queries, so where the result is
provably identical the values are computed from raw samples instead (``collectors/promql.py``):

1. Only templates that render to a plain vector selector (metric name and/or label matchers; no
   ``offset``, ``@``, range or subquery), bare or wrapped in ``sum``, ``min``, ``max``,
   ``count`` or ``avg`` without ``by``/``without``, qualify. Everything else (``rate``,
   ``histogram_quantile``, arithmetic, grouping) is sent as one instant query per distinct
   event time, at most ``max_workers`` at a time.
2. Event times are grouped into windows of at most an hour; per window one instant query
   ``<selector>[<span + lookback>ms]`` at the window's last time returns every raw sample in
   ``[first - lookback, last]``. A series' value at ``t`` is its latest sample in
   ``[t - lookback, t]``: Prometheus 2.x (checked against 2.42) counts a sample exactly
   ``lookback`` (5 min) old, Prometheus 3 does not.
3. Aggregations follow Prometheus's own loop: ``count`` counts series with a sample; ``max`` and
   ``min`` ignore NaN unless every value is NaN, whatever the series order. ``sum`` and ``avg``
   are computed locally only where bit-identical: ``avg`` of one series; ``sum`` of one or two
   series (``a + b == b + a`` in floating point) or of integers whose magnitudes add up to at
   most 2**53 (every addition order is then exact). At other times Prometheus's own addition
   order decides the last bits, so those times are sent as instant queries.
4. No series at ``t`` means no value (NaN); a bare selector with several series at ``t`` raises,
   exactly as its instant query does.

Caveat, staleness markers: when a scraped series disappears Prometheus writes a staleness marker
and instant queries return nothing after it, but range selectors skip the markers, so the fast
path keeps reporting the last sample until the lookback runs out. Within 5 minutes after a
series ended (pod deleted, target down) the fast path can therefore show a value where an
instant query shows none; everywhere else, and for backfilled data, it is exact. Times are
evaluated at Prometheus's millisecond resolution: event times are floored to the millisecond
and the rows carry that time.

Responses
---------
Values arrive as strings; ``"NaN"`` is NaN and ``"+Inf"``/``"-Inf"`` become NaN with a warning,
as :func:`~ml_monitoring_service.data.schema.validate_combined` treats infinities. Samples are
sorted by time; of duplicate timestamps in one series the last in response order is kept (with
a warning). A query yielding several series at one time where one is expected raises
:class:`DataValidationError` naming the query and the label sets; a range query's series may
follow one another (a pod replaced by a new one) as long as they never share a timestamp.
A metric with no value for a service over the whole request becomes an all-NaN column with a
warning naming query and service (never zeros). If *every* metric of a service is empty, that
raises :class:`DataValidationError`: it almost always means the template's label does not match
the service name, and the service would have no rows, which the combined dataset rejects anyway.

Failures
--------
Connection errors, timeouts and HTTP 5xx/408/429 are retried by
:func:`~ml_monitoring_service.collectors.resilience.call_with_retries`; PrometheusConnect's own
urllib3 retry (3 retries on 5xx by default) is switched off so attempts do not multiply. HTTP
4xx (400 ``bad_data`` for bad PromQL, 422 for execution errors), TLS verification failures and
malformed replies fail at once. Every error names ``prometheus``, the query sent and the cause,
including Prometheus's own error message; the bearer token never appears in errors or ``repr``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any

import numpy as np
import pandas as pd
import requests
from prometheus_api_client import PrometheusConnect
from pydantic import SecretStr
from urllib3.util.retry import Retry

from ml_monitoring_service.collectors.promql import (
    Series,
    evaluate_at,
    format_labels,
    iso_ms,
    multiple_series_error,
    plan_fast_path,
    render,
)
from ml_monitoring_service.collectors.resilience import (
    CircuitBreaker,
    RetryPolicy,
    call_with_retries,
)
from ml_monitoring_service.data.schema import SERVICE, TIMESTAMP, to_utc
from ml_monitoring_service.errors import BackendError, ConfigError, DataValidationError

logger = logging.getLogger(__name__)

BACKEND = "prometheus"
# Prometheus rejects a query_range that would return more points than this per series.
MAX_POINTS_PER_QUERY = 11_000
# Event times are fetched as raw samples in windows of at most this span, keeping each reply
# small and skipping the stretches between bursts of events.
_RAW_WINDOW_MS = 3_600_000
# Prometheus's default --query.lookback-delta: how far back an instant query looks for a sample.
DEFAULT_LOOKBACK = pd.Timedelta("5min")
_RETRYABLE_STATUS = frozenset({408, 429})
_NS_PER_MS = 1_000_000
_UTC_DTYPE = "datetime64[ns, UTC]"


class PrometheusAPIError(Exception):
    """Prometheus answered with an error status or a body that is not a successful API reply."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status

    @property
    def retryable(self) -> bool:
        """Server-side trouble (5xx, 408, 429) may pass; a rejected query will not."""
        return self.status >= 500 or self.status in _RETRYABLE_STATUS


def _check_response(response: requests.Response, *args: object, **kwargs: object) -> None:
    """Session hook: raise :class:`PrometheusAPIError` for a failed or malformed reply.

    It runs before PrometheusConnect reads the reply. The library folds every non-200 status
    into one exception whose text is a bytes repr, losing the status code that decides whether
    to retry, and meets a body without ``data.result`` with a bare ``KeyError``. Redirects
    pass through: requests follows them and the hook sees the final reply.
    """
    if response.is_redirect:
        return
    try:
        body = response.json()
    except ValueError:
        body = None
    status = response.status_code
    if status != 200:
        if isinstance(body, dict) and "error" in body:
            raise PrometheusAPIError(
                f"HTTP {status} {body.get('errorType', '')}: {body['error']}", status
            )
        raise PrometheusAPIError(f"HTTP {status}: {response.text[:200]!r}", status)
    data = body.get("data") if isinstance(body, dict) else None
    if body is None or body.get("status") != "success" or not isinstance(data, dict):
        raise PrometheusAPIError(f"not a successful API reply: {response.text[:200]!r}", status)
    if "result" not in data:
        raise PrometheusAPIError(f"reply has no data.result: {response.text[:200]!r}", status)


def _is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, PrometheusAPIError):
        return exc.retryable
    if isinstance(exc, requests.exceptions.SSLError):
        return False
    return isinstance(exc, (requests.ConnectionError, requests.Timeout))


class PrometheusMetricSource:
    """Samples PromQL metric templates per service from one Prometheus server.

    ``verify`` is ``True`` (system CAs), ``False``, or the path of a CA bundle. ``timeout_s``
    bounds every HTTP request; ``retry`` and ``breaker`` decide how failures are retried and
    when the backend is left alone (share one breaker across collectors of one server).
    ``lookback_delta`` must match the server's ``--query.lookback-delta`` for event mode's raw
    sample path to be exact. Close the collector (or use it as a context manager) when done.
    """

    def __init__(
        self,
        url: str,
        *,
        token: SecretStr | None = None,
        verify: bool | str | os.PathLike[str] = True,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        max_workers: int = 4,
        lookback_delta: pd.Timedelta = DEFAULT_LOOKBACK,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        if max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, got {max_workers}")
        self.url = url.rstrip("/")
        self._retry = retry or RetryPolicy()
        self._breaker = breaker or CircuitBreaker(BACKEND)
        self._max_workers = max_workers
        self._lookback_ms = _whole_ms(lookback_delta, "lookback_delta")
        session = requests.Session()
        session.verify = verify if isinstance(verify, bool) else os.fspath(verify)
        if token is not None:
            session.headers["Authorization"] = f"Bearer {token.get_secret_value()}"
        session.hooks["response"].append(_check_response)
        self._client = PrometheusConnect(
            url=self.url, session=session, retry=Retry(total=0, read=False), timeout=timeout_s
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.url!r})"

    def close(self) -> None:
        """Release the HTTP connection pool."""
        self._client.close()

    def __enter__(self) -> PrometheusMetricSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def sample_range(
        self,
        templates: Mapping[str, str],
        services: Sequence[str],
        start: pd.Timestamp,
        end: pd.Timestamp,
        step: pd.Timedelta,
    ) -> pd.DataFrame:
        """Rows ``timestamp, service, <metric>...`` on the grid ``start + k * step <= end``.

        Naive times are UTC; times are used at millisecond resolution. Per service, metrics are
        outer-joined on timestamp: a row exists where at least one metric has a sample within
        the lookback, and a metric without one is NaN there.
        """
        start_ms, end_ms = _epoch_ms(start), _epoch_ms(end)
        step_ms = _whole_ms(step, "step")
        if end_ms < start_ms:
            raise ValueError(f"end {iso_ms(end_ms)} is before start {iso_ms(start_ms)}")
        queries = _render_all(templates, services)
        frames = []
        for service in services:
            columns = {
                metric: self._range_column(query, start_ms, end_ms, step_ms)
                for metric, query in queries[service].items()
            }
            table = pd.concat(columns, axis=1).sort_index()
            table.index = _from_epoch_ms(table.index.to_numpy(dtype=np.int64))
            frames.append(_service_frame(service, table, queries[service]))
        return pd.concat(frames, ignore_index=True)

    def sample_at(
        self,
        templates: Mapping[str, str],
        services: Sequence[str],
        event_times: Mapping[str, pd.DatetimeIndex | pd.Series],
    ) -> pd.DataFrame:
        """One row per service and distinct event time with each metric's instant value there.

        A service missing from ``event_times`` (or with no times) gets no rows; keys that are not
        in ``services`` are ignored. Naive times are UTC. Rows carry the given times; values are
        those at the time floored to the millisecond, Prometheus's resolution. See the module
        docstring for when values come from raw samples instead of one query per time.
        """
        queries = _render_all(templates, services)
        frames = []
        for service in services:
            stamps = _event_stamps(event_times.get(service, pd.DatetimeIndex([])), service)
            if len(stamps) == 0:
                continue
            stamps_ms = stamps.as_unit("ns").asi8 // _NS_PER_MS
            times_ms = np.unique(stamps_ms)
            rows = np.searchsorted(times_ms, stamps_ms)
            table = pd.DataFrame(
                {
                    metric: self._values_at(query, times_ms)[rows]
                    for metric, query in queries[service].items()
                },
                index=stamps,
            )
            frames.append(_service_frame(service, table, queries[service]))
        return pd.concat(frames, ignore_index=True) if frames else _empty_frame(list(templates))

    def _values_at(self, query: str, times_ms: np.ndarray) -> np.ndarray:
        """Instant-query values of ``query`` at each of the sorted, distinct ``times_ms``."""
        plan = plan_fast_path(query)
        if plan is None:
            return self._instant_values(query, times_ms)
        values = np.full(len(times_ms), np.nan)
        unresolved = np.zeros(len(times_ms), dtype=bool)
        windows = _windows(times_ms, _RAW_WINDOW_MS)
        for window in windows:
            chunk = times_ms[window]
            span_ms = int(chunk[-1] - chunk[0]) + self._lookback_ms
            raw = self._instant(f"{plan.selector}[{span_ms}ms]", int(chunk[-1]))
            values[window], unresolved[window] = evaluate_at(
                query, plan, raw, chunk, self._lookback_ms
            )
        if unresolved.any():
            values[unresolved] = self._instant_values(query, times_ms[unresolved])
        logger.debug(
            "prometheus: %r at %d times from %d raw fetches and %d instant queries",
            query,
            len(times_ms),
            len(windows),
            int(unresolved.sum()),
        )
        return values

    def _instant_values(self, query: str, times_ms: np.ndarray) -> np.ndarray:
        """One instant query per time, ``max_workers`` at a time; NaN where nothing is returned."""

        def value_at(at_ms: int) -> float:
            series = self._instant(query, at_ms)
            if len(series) > 1:
                raise multiple_series_error(query, series, at_ms)
            return float(series[0].values[-1]) if series else np.nan

        pool = ThreadPoolExecutor(max_workers=min(self._max_workers, len(times_ms)))
        try:
            values = pool.map(value_at, times_ms.tolist())
            return np.fromiter(values, dtype=np.float64, count=len(times_ms))
        finally:
            # After a failure, queued queries are dropped instead of each failing in turn.
            pool.shutdown(cancel_futures=True)

    def _instant(self, query: str, at_ms: int) -> list[Series]:
        what = f"query {query!r} at {iso_ms(at_ms)}"
        params = {"time": iso_ms(at_ms)}
        return self._fetch(what, lambda: self._client.custom_query(query, params=params))

    def _range_column(self, query: str, start_ms: int, end_ms: int, step_ms: int) -> pd.Series:
        """The query's values on the grid, indexed by epoch milliseconds, chunk by chunk."""
        parts: dict[tuple[tuple[str, str], ...], list[Series]] = {}
        for chunk_start, chunk_end in _grid_chunks(start_ms, end_ms, step_ms):
            for series in self._query_range(query, chunk_start, chunk_end, step_ms):
                parts.setdefault(tuple(sorted(series.labels.items())), []).append(series)
        return _single_timeline(query, [_concatenate(pieces) for pieces in parts.values()])

    def _query_range(self, query: str, start_ms: int, end_ms: int, step_ms: int) -> list[Series]:
        start, end = iso_ms(start_ms), iso_ms(end_ms)
        what = f"query_range {query!r} from {start} to {end} step {step_ms}ms"
        # PrometheusConnect rounds start and end to whole seconds; the params override that.
        return self._fetch(
            what,
            lambda: self._client.custom_query_range(
                query,
                start_time=pd.Timestamp(start),
                end_time=pd.Timestamp(end),
                step=f"{step_ms}ms",
                params={"start": start, "end": end},
            ),
        )

    def _fetch(self, what: str, request: Callable[[], Any]) -> list[Series]:
        result = call_with_retries(
            request,
            backend=BACKEND,
            what=what,
            is_retryable=_is_retryable,
            policy=self._retry,
            breaker=self._breaker,
        )
        return _parse_result(result, what)


def _render_all(templates: Mapping[str, str], services: Sequence[str]) -> dict[str, dict[str, str]]:
    """Every query up front, so a bad template or name fails before any request is sent."""
    if not templates:
        raise ConfigError("no metric templates given")
    if not services:
        raise ConfigError("no services given")
    return {s: {m: render(t, s) for m, t in templates.items()} for s in services}


def _service_frame(service: str, table: pd.DataFrame, queries: Mapping[str, str]) -> pd.DataFrame:
    """One service's rows from its metric table (UTC time index); refuse an all-empty table."""
    for metric, query in queries.items():
        table[metric] = _finish_column(table[metric], query, service)
    if not table.notna().any().any():
        raise DataValidationError(
            f"prometheus: no metric returned data for service {service!r}; check that the "
            f"templates' labels match the service name (queries: {list(queries.values())})"
        )
    frame = pd.DataFrame({TIMESTAMP: table.index.astype(_UTC_DTYPE), SERVICE: service})
    for metric in queries:
        frame[metric] = table[metric].to_numpy(dtype=np.float64)
    return frame


def _parse_result(result: Any, what: str) -> list[Series]:
    """Series from a vector (``value``) or matrix (``values``) result, samples sorted by time."""
    try:
        if not isinstance(result, list):
            raise TypeError(f"expected a list of series, got {type(result).__name__}")
        return [_parse_series(item, what) for item in result]
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        raise BackendError(
            f"{BACKEND}: {what} returned a malformed result: {type(exc).__name__}: {exc}"
        ) from exc


def _parse_series(item: Any, what: str) -> Series:
    if not isinstance(item, dict):
        raise TypeError(f"result item {item!r} is not a series (the query must return a vector)")
    labels = item["metric"]
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise TypeError(f"labels {labels!r} are not a mapping of strings")
    pairs = item["values"] if "values" in item else [item["value"]]
    if not all(isinstance(value, str) for _, value in pairs):
        raise TypeError(f"sample values must be strings, got {pairs[:3]!r}")
    seconds = np.array([stamp for stamp, _ in pairs], dtype=np.float64)
    values = np.array([value for _, value in pairs], dtype=np.float64)
    stamps = np.rint(seconds * 1000).astype(np.int64)
    order = np.argsort(stamps, kind="stable")
    stamps, values = stamps[order], values[order]
    keep = np.append(stamps[1:] != stamps[:-1], True)
    if not keep.all():
        logger.warning(
            "%s: %s returned %d duplicate timestamps in series %s; kept the last of each",
            BACKEND,
            what,
            int((~keep).sum()),
            format_labels(labels),
        )
    return Series(labels, stamps[keep], values[keep])


def _concatenate(pieces: Sequence[Series]) -> Series:
    """One series from the same label set's parts in consecutive, disjoint range chunks."""
    return Series(
        pieces[0].labels,
        np.concatenate([p.timestamps_ms for p in pieces]),
        np.concatenate([p.values for p in pieces]),
    )


def _single_timeline(query: str, series: Sequence[Series]) -> pd.Series:
    """Series that follow one another merged into one; any shared timestamp is a conflict."""
    if not series:
        return pd.Series(dtype=np.float64)
    stamps = np.concatenate([s.timestamps_ms for s in series])
    values = np.concatenate([s.values for s in series])
    order = np.argsort(stamps, kind="stable")
    stamps, values = stamps[order], values[order]
    shared = np.flatnonzero(stamps[1:] == stamps[:-1])
    if len(shared):
        at = int(stamps[shared[0]])
        raise multiple_series_error(query, [s for s in series if at in s.timestamps_ms], at)
    return pd.Series(values, index=stamps)


def _finish_column(values: pd.Series, query: str, service: str) -> pd.Series:
    """±Inf to NaN (with a warning); warn when the query gave the service nothing at all."""
    infinite = np.isinf(values.to_numpy(dtype=np.float64))
    if infinite.any():
        logger.warning(
            "%s: query %r for service %r returned %d ±Inf values; treated as missing (NaN)",
            BACKEND,
            query,
            service,
            int(infinite.sum()),
        )
        values = values.mask(infinite)
    if values.isna().all():
        logger.warning(
            "%s: query %r returned no data for service %r; its column is NaN for this service",
            BACKEND,
            query,
            service,
        )
    return values


def _grid_chunks(start_ms: int, end_ms: int, step_ms: int) -> list[tuple[int, int]]:
    """Consecutive ``(start, end)`` pieces of the grid, each at most MAX_POINTS_PER_QUERY long."""
    span = MAX_POINTS_PER_QUERY * step_ms
    return [(s, min(s + span - step_ms, end_ms)) for s in range(start_ms, end_ms + 1, span)]


def _windows(times_ms: np.ndarray, max_span_ms: int) -> list[slice]:
    """Split sorted times greedily into runs spanning at most ``max_span_ms`` each."""
    windows = []
    first = 0
    for index in range(1, len(times_ms)):
        if times_ms[index] - times_ms[first] > max_span_ms:
            windows.append(slice(first, index))
            first = index
    windows.append(slice(first, len(times_ms)))
    return windows


def _epoch_ms(moment: pd.Timestamp) -> int:
    stamp = pd.Timestamp(moment)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return int(stamp.as_unit("ns").value) // _NS_PER_MS


def _whole_ms(duration: pd.Timedelta, name: str) -> int:
    millis, rest = divmod(pd.Timedelta(duration), pd.Timedelta(milliseconds=1))
    if millis <= 0 or rest:
        raise ValueError(f"{name} must be a positive whole number of milliseconds, got {duration}")
    return int(millis)


def _event_stamps(times: pd.DatetimeIndex | pd.Series, service: str) -> pd.DatetimeIndex:
    """Distinct event times as sorted UTC timestamps."""
    stamps = to_utc(pd.Series(times))
    if stamps.isna().any():
        raise DataValidationError(
            f"event times for service {service!r}: {int(stamps.isna().sum())} are missing"
        )
    return pd.DatetimeIndex(stamps.unique()).sort_values()


def _from_epoch_ms(epoch_ms: np.ndarray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(epoch_ms, unit="ms", utc=True).astype(_UTC_DTYPE))


def _empty_frame(metrics: Sequence[str]) -> pd.DataFrame:
    frame = pd.DataFrame({TIMESTAMP: pd.Series(dtype=_UTC_DTYPE), SERVICE: pd.Series(dtype=str)})
    for metric in metrics:
        frame[metric] = pd.Series(dtype=np.float64)
    return frame

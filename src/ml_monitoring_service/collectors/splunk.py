"""Log events from Splunk: one export search per service, streamed into a small event table.

The detectors only need three things from each log line (when it happened, how severe it was and
which trace it belongs to); log evidence also reads the line's text. This module asks Splunk for
those through the export endpoint, which streams results as they are found instead of parking a
job on the search head. Everything that can go wrong on the way (Splunk down or busy, a bad
query, a bad token, a truncated stream, times without a zone) ends in one exception naming the
backend, the SPL and the cause, so an operator can act on the log line alone. Credentials are
held as ``SecretStr`` until the moment they are handed to the SDK and appear in no message this
module writes.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import re
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit
from xml.etree.ElementTree import ParseError, fromstring

import pandas as pd
from pydantic import SecretStr
from splunklib import binding, client, results

from ml_monitoring_service.collectors.resilience import (
    CircuitBreaker,
    RetryPolicy,
    call_with_retries,
)
from ml_monitoring_service.data.schema import (
    MESSAGE,
    SERVICE,
    SEVERITY,
    SEVERITY_NAMES,
    TIMESTAMP,
    TRACE_ID,
    to_utc,
)
from ml_monitoring_service.errors import ConfigError, DataValidationError

logger = logging.getLogger(__name__)

BACKEND = "splunk"
EVENT_COLUMNS = (TIMESTAMP, SERVICE, SEVERITY, TRACE_ID, MESSAGE)

# Field names tried in order; the first one an event carries wins.
_SEVERITY_FIELDS = ("severity", "level", "log_level")
_TRACE_FIELDS = ("traceID", "trace_id")
# The raw event is the whole line (a stack trace included); a parsed message field is the fallback
# for searches that drop _raw.
_MESSAGE_FIELDS = ("_raw", "message")

_PLACEHOLDER = re.compile(r"\$service\b")
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_STARTS_WITH_COMMAND = re.compile(r"(?:\||search\b)", re.IGNORECASE)
# An ISO-8601 time ends in "Z" or "+hh:mm"/"-hhmm" only when it states its zone.
_HAS_ZONE = re.compile(r"(?:[zZ]|[+-]\d{2}:?\d{2})$")


class SplunkHTTPError(Exception):
    """Splunk answered with an error status; the text carries Splunk's own ``<msg>`` lines."""

    def __init__(self, error: binding.HTTPError) -> None:
        self.status = int(error.status)
        super().__init__(f"HTTP {error.status} {error.reason}: {_server_messages(error.body)}")


class SplunkResultsError(Exception):
    """The result stream was unreadable or Splunk reported the search itself failed (FATAL)."""


@dataclass
class _RawEvents:
    """One list per column, filled while the stream is read (severity already on the scale)."""

    times: list[object] = field(default_factory=list)
    severities: list[float] = field(default_factory=list)
    trace_ids: list[object] = field(default_factory=list)
    messages: list[object] = field(default_factory=list)
    unknown_severities: set[str] = field(default_factory=set)

    def append(self, result: Mapping[str, object]) -> None:
        self.times.append(result.get("_time"))
        self.trace_ids.append(_first_field(result, _TRACE_FIELDS))
        self.messages.append(_first_field(result, _MESSAGE_FIELDS))
        severity = _first_field(result, _SEVERITY_FIELDS)
        level = _severity_level(severity)
        if level is None:
            self.unknown_severities.add(str(severity))
        self.severities.append(math.nan if level is None else level)


class SplunkEventSource:
    """Fetches per-service log events from one Splunk instance over its REST API.

    ``url`` is the management endpoint (``https://splunk.example.com:8089``; without a port the
    scheme's default is used). Give either ``token`` (a Splunk authentication token, sent as
    ``Authorization: Bearer``) or ``username`` and ``password`` (a session is opened on first use
    and renewed when it expires). ``verify`` checks the server's TLS certificate against the
    system CAs (``True``, the default), a CA bundle file (a path), or not at all (``False``,
    logged as a warning). ``timeout_s`` bounds connecting and each wait for data, not a whole
    export. Transient failures are retried by ``retry``; ``breaker`` stops calls while Splunk is
    down and should be shared by everything that talks to this instance.
    """

    def __init__(
        self,
        url: str,
        *,
        token: SecretStr | None = None,
        username: str | None = None,
        password: SecretStr | None = None,
        verify: bool | str | Path = True,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        scheme, host, port = _split_url(url)
        if timeout_s <= 0:
            raise ConfigError(f"{BACKEND}: timeout_s must be positive, got {timeout_s}")
        self._url = f"{scheme}://{host}:{port}"
        self._auth = _auth_kind(token, username, password)
        self._verify = verify
        self._timeout_s = timeout_s
        self._retry = retry or RetryPolicy()
        self._breaker = breaker or CircuitBreaker(BACKEND)
        if scheme == "https" and verify is False:
            logger.warning("%s: TLS certificate verification is off for %s", BACKEND, self._url)
        credentials: dict[str, object] = (
            {"splunkToken": token.get_secret_value()}
            if token is not None
            else {
                "username": username,
                "password": password.get_secret_value() if password else "",
                "autologin": True,
            }
        )
        self._service = client.Service(
            handler=_handler(scheme, verify, timeout_s),
            scheme=scheme,
            host=host,
            port=port,
            **credentials,
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(url={self._url!r}, auth={self._auth!r}, "
            f"verify={self._verify!r}, timeout_s={self._timeout_s!r})"
        )

    def fetch_events(
        self,
        query_template: str,
        services: Sequence[str],
        start: pd.Timestamp,
        end: pd.Timestamp,
    ) -> pd.DataFrame:
        """Log events of each service in ``[start, end)``, sorted by time.

        ``query_template`` is SPL with ``$service`` where the service name goes (see
        :func:`render_query`). Returns columns ``timestamp`` (``datetime64[ns, UTC]``),
        ``service``, ``severity_level`` (0 info, 1 warning, 2 error; NaN when the event has no
        recognisable level), ``trace_id`` (``<NA>`` when absent) and ``message`` (the event's
        ``_raw`` text, else its ``message`` field, else ``NaN``). Identical events are kept:
        logs legitimately repeat. A service with no events contributes no rows and is logged as
        a warning (a quiet service is normal; a misspelt index is not, and the warning names the
        query). Naive ``start``/``end`` are taken as UTC, the project's convention.

        Raises :class:`BackendError` when Splunk cannot be reached or rejects the search, and
        :class:`DataValidationError` when events lack ``_time`` or carry times without a zone.
        """
        start_utc, end_utc = _as_utc(start, "start"), _as_utc(end, "end")
        if start_utc >= end_utc:
            raise DataValidationError(
                f"{BACKEND}: empty time range [{start_utc.isoformat()}, {end_utc.isoformat()})"
            )
        unique = list(dict.fromkeys(services))
        if not unique:
            raise DataValidationError(f"{BACKEND}: no services to fetch events for")
        frames = [self._fetch_service(query_template, s, start_utc, end_utc) for s in unique]
        events = pd.concat(frames, ignore_index=True)
        return events.sort_values(TIMESTAMP, kind="stable").reset_index(drop=True)

    def _fetch_service(
        self, template: str, service: str, start: pd.Timestamp, end: pd.Timestamp
    ) -> pd.DataFrame:
        query = render_query(template, service)
        what = f"search {query!r} over [{start.isoformat()}, {end.isoformat()})"
        raw = call_with_retries(
            lambda: self._export(query, start, end),
            backend=BACKEND,
            what=what,
            is_retryable=_is_retryable,
            policy=self._retry,
            breaker=self._breaker,
        )
        if not raw.times:
            logger.warning("%s: no events for service %r from %s", BACKEND, service, what)
        return _events_frame(raw, service, what)

    def _export(self, query: str, start: pd.Timestamp, end: pd.Timestamp) -> _RawEvents:
        """One export request, read to the end; any failure is for ``call_with_retries`` to judge.

        The whole stream is read inside the retried call so that a connection dropped halfway
        retries the service from scratch instead of returning half its events.
        """
        raw = _RawEvents()
        try:
            stream = self._service.jobs.export(
                query,
                earliest_time=_epoch(start),
                latest_time=_epoch(end),
                output_mode="json",
            )
            with stream:
                for item in results.JSONResultsReader(stream):
                    if isinstance(item, results.Message):
                        _report_message(item, query)
                    else:
                        raw.append(item)
        except binding.HTTPError as exc:
            raise SplunkHTTPError(exc) from exc
        except json.JSONDecodeError as exc:
            raise SplunkResultsError(
                f"result stream is not valid JSON after {len(raw.times)} events ({exc})"
            ) from exc
        return raw


def render_query(template: str, service: str) -> str:
    """SPL for one service: ``$service`` replaced so that no name can change the search.

    Inside a double-quoted SPL string the name is escaped (``\\`` and ``"``); outside one it is
    inserted as a quoted string, so ``service=$service`` and ``service="$service"`` both work.
    Names with ``*`` are refused because SPL has no escape for its wildcard and the search would
    silently match other services; non-printable characters are refused too. A search that does
    not start with a command gets ``search`` prepended, as the REST API requires.
    """
    if not _PLACEHOLDER.search(template):
        raise ConfigError(
            f"{BACKEND}: query template {template!r} has no $service; "
            "every service would get the same events"
        )
    if not service or "*" in service or not service.isprintable():
        raise DataValidationError(
            f"{BACKEND}: service name {service!r} cannot be put into a search "
            "(empty, contains the wildcard '*', or non-printable characters)"
        )
    escaped = service.replace("\\", "\\\\").replace('"', '\\"')
    pieces: list[str] = []
    position = 0
    for quoted in _QUOTED.finditer(template):
        pieces.append(_fill_unquoted(template[position : quoted.start()], escaped, template))
        pieces.append(_PLACEHOLDER.sub(lambda _: escaped, quoted.group()))
        position = quoted.end()
    pieces.append(_fill_unquoted(template[position:], escaped, template))
    query = "".join(pieces).strip()
    return query if _STARTS_WITH_COMMAND.match(query) else f"search {query}"


def _fill_unquoted(text: str, escaped: str, template: str) -> str:
    """Placeholders outside quotes become quoted strings; a stray quote means a broken template."""
    if '"' in text:
        raise ConfigError(f"{BACKEND}: query template {template!r} has an unterminated quote")
    return _PLACEHOLDER.sub(lambda _: f'"{escaped}"', text)


def _split_url(url: str) -> tuple[str, str, int]:
    """Scheme, host and port; credentials or paths in the URL are refused (and not echoed)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{BACKEND}: url must be http(s)://host[:port], got {url!r}")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            f"{BACKEND}: url must not carry credentials; pass token or username/password"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"{BACKEND}: url must have no path or query, got {url!r}")
    default_port = 443 if parts.scheme == "https" else 80
    return parts.scheme, parts.hostname, parts.port or default_port


def _auth_kind(token: SecretStr | None, username: str | None, password: SecretStr | None) -> str:
    """``"token"`` or ``"password"``; anything ambiguous or incomplete is a configuration error."""
    has_login = bool(username) or password is not None
    if token is not None and has_login:
        raise ConfigError(f"{BACKEND}: give either token or username/password, not both")
    if token is not None:
        return "token"
    if not (username and password is not None and password.get_secret_value()):
        raise ConfigError(f"{BACKEND}: give a token, or both username and password")
    return "password"


def _handler(scheme: str, verify: bool | str | Path, timeout_s: float) -> object:
    """The SDK's HTTP handler with our timeout and TLS policy (the SDK's default is no checks)."""
    if scheme == "http" or isinstance(verify, bool):
        return binding.handler(timeout=timeout_s, verify=verify)
    try:
        context = ssl.create_default_context(cafile=str(verify))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{BACKEND}: cannot load CA bundle {str(verify)!r}: {exc}") from exc
    return binding.handler(timeout=timeout_s, verify=True, context=context)


def _is_retryable(exc: BaseException) -> bool:
    """Busy or unreachable Splunk is worth another try; a rejected query or login is not."""
    if isinstance(exc, SplunkHTTPError):
        return exc.status >= 500 or exc.status == 429
    if isinstance(exc, ssl.SSLCertVerificationError):
        return False
    return isinstance(exc, (OSError, http.client.HTTPException))


def _server_messages(body: bytes) -> str:
    """Text of every ``<msg>`` in a Splunk error body, or the start of the body if it is not XML."""
    try:
        texts = [(m.text or "").strip() for m in fromstring(body).iter("msg")]
    except ParseError:
        texts = []
    return "; ".join(t for t in texts if t) or body.decode("utf-8", "replace").strip()[:300]


def _report_message(message: results.Message, query: str) -> None:
    """Log what Splunk says alongside results; a FATAL message means the results are incomplete."""
    kind = str(message.type).upper()
    if kind == "FATAL":
        raise SplunkResultsError(f"Splunk reported FATAL: {message.message}")
    level = {"ERROR": logging.ERROR, "WARN": logging.WARNING}.get(kind, logging.DEBUG)
    logger.log(level, "%s: %s for search %r: %s", BACKEND, kind, query, message.message)


def _first_field(result: Mapping[str, object], names: Sequence[str]) -> object:
    """First present field of ``names``; of a multi-valued field, its first value."""
    for name in names:
        value = result.get(name)
        if isinstance(value, list):
            value = value[0] if value else None
        if value is not None and value != "":
            return value
    return None


def _as_utc(value: pd.Timestamp, name: str) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    if pd.isna(stamp):
        raise DataValidationError(f"{BACKEND}: {name} time is missing")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _epoch(stamp: pd.Timestamp) -> str:
    """Epoch seconds with microseconds, exact (no float rounding), as Splunk's time bounds."""
    seconds, nanos = divmod(stamp.value, 1_000_000_000)
    return f"{seconds}.{nanos // 1000:06d}"


def _events_frame(raw: _RawEvents, service: str, what: str) -> pd.DataFrame:
    """Typed event table of one service; columns as in :data:`EVENT_COLUMNS`."""
    if raw.unknown_severities:
        logger.warning(
            "%s: unrecognised severities %s for service %r recorded as missing (%s)",
            BACKEND,
            sorted(raw.unknown_severities)[:5],
            service,
            what,
        )
    return pd.DataFrame(
        {
            TIMESTAMP: _event_times(raw.times, service, what),
            SERVICE: pd.Series([service] * len(raw.times), dtype=object).astype(str),
            SEVERITY: pd.Series(raw.severities, dtype="float64"),
            TRACE_ID: pd.Series(raw.trace_ids, dtype="string"),
            MESSAGE: pd.Series(raw.messages, dtype="str"),
        }
    )


def _event_times(times: list[object], service: str, what: str) -> pd.Series:
    """``_time`` values to UTC; a missing, zoneless or unreadable time is an error, not a guess.

    Splunk renders ``_time`` in the searching user's time zone, so a time without an offset
    could be any zone and is refused rather than assumed to be UTC.
    """
    values = pd.Series(times, dtype=object, name="_time")
    absent = int(values.isna().sum())
    if absent:
        raise DataValidationError(
            f"{BACKEND}: {absent} of {len(values)} events of service {service!r} have no _time "
            f"({what}); the query must keep the _time field"
        )
    zoneless = ~values.astype(str).str.contains(_HAS_ZONE)
    if zoneless.any():
        raise DataValidationError(
            f"{BACKEND}: {int(zoneless.sum())} events of service {service!r} have a _time "
            f"without a UTC offset, e.g. {values[zoneless].iloc[0]!r} ({what})"
        )
    try:
        return to_utc(values)
    except DataValidationError as exc:
        raise DataValidationError(f"{BACKEND}: service {service!r} ({what}): {exc}") from None


def _severity_level(value: object) -> float | None:
    """A level name (INFO, WARN, ERROR, ...) or number on the numeric scale; None if unknown.

    An event without any level field counts as missing (NaN), not as unknown.
    """
    if value is None:
        return math.nan
    text = str(value).strip()
    named = SEVERITY_NAMES.get(text.lower())
    if named is not None:
        return named
    try:
        return float(text)
    except ValueError:
        return None

"""A stand-in Splunk management server that the unmodified splunk-sdk talks to over loopback.

Splunk cannot be installed where the tests run, and mocking the SDK would test our guesses about
the SDK rather than the wire protocol. This server answers the few REST calls the collector makes,
in the shapes Splunk uses:

* ``POST /services/auth/login``: ``<response><sessionKey>``; bad credentials get a 401 XML body.
* ``GET /services/server/info``: an Atom feed whose ``version`` key makes the SDK choose between
  ``search/v2/jobs/export`` (9.0.2 and later) and ``search/jobs/export``. A server answers only
  the path its version has, so a test sees which one the SDK really used.
* ``POST .../search[/v2]/jobs/export`` with ``output_mode=json``: one JSON object per line
  (``{"preview":false,"offset":N,"result":{...}}``, ``lastrow`` on the last), newest event
  first as Splunk sends them, streamed in HTTP chunks. No results means an empty body. Like
  every Splunk event, each result has a ``_raw`` (the raw log text): the event's own ``_raw``
  when the test gave one (multi-line stack traces included), else its fields as
  ``key=value`` text after the time, the shape of a key-value log line.

Auth is ``Authorization: Bearer <token>`` or ``Splunk <token or session key>``. The only SPL it
understands is ``search index=<name> service="<value>" [| fields [-] <field> ...]`` (service
compared exactly, no wildcards); anything else gets a 400 with Splunk's XML error body, never a
guess. Every response says ``Connection: close`` because the SDK does not read keep-alive bodies.
"""

from __future__ import annotations

import json
import re
import secrets
import ssl
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from standins.servers import serve_in_background

V2_SINCE = (9, 0, 2)
_EXPORT_PATH = re.compile(r"/services(?:NS/[^/]+/[^/]+)?/search/(?P<v2>v2/)?jobs/export")
_SPL = re.compile(
    r'search\s+index=(?P<index>\w+)\s+service="(?P<service>(?:[^"\\]|\\.)*)"'
    r"(?:\s*\|\s*fields\s+(?P<minus>-\s+)?(?P<fields>\w+(?:\s+\w+)*))?\s*"
)
_GRAMMAR = 'search index=<name> service="<value>" [| fields [-] <field> ...]'
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the stand-in received it; ``form`` merges query and body parameters."""

    method: str
    path: str
    form: dict[str, str]
    authorization: str | None


@dataclass(frozen=True)
class _Search:
    index: str
    service: str
    fields: tuple[str, ...] | None
    remove_fields: bool


@dataclass
class StandInSplunk:
    """The running server: its events, what it received, and fault knobs tests may set any time.

    ``unavailable_exports``: that many export requests get ``unavailable_status`` (503, Splunk's
    "busy") before one succeeds.
    ``export_delay_s``: each export waits this long before answering (to outlast a timeout).
    ``corrupt_after``: after that many results a truncated JSON line is sent, then the rest.
    ``messages``: ``(type, text)`` pairs sent as a Splunk ``messages`` line before the results.
    ``emit_time``: rewrites each ``_time`` on the way out (to send zoneless or unreadable times).
    """

    events: list[dict[str, Any]]
    version: str
    token: str | None
    username: str
    password: str
    index: str
    url: str = ""
    unavailable_exports: int = 0
    unavailable_status: int = 503
    export_delay_s: float = 0.0
    corrupt_after: int | None = None
    messages: list[tuple[str, str]] = field(default_factory=list)
    emit_time: Callable[[str], str] | None = None
    requests: list[RecordedRequest] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    _session_keys: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def paths(self, method: str | None = None) -> list[str]:
        """Paths requested so far, in order (only those of ``method`` if given)."""
        with self._lock:
            return [r.path for r in self.requests if method in (None, r.method)]

    @property
    def has_v2(self) -> bool:
        """Whether this version has ``search/v2/jobs/export`` (and therefore the SDK uses it)."""
        return tuple(int(p) for p in self.version.split(".")) >= V2_SINCE

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def open_session(self) -> str:
        key = secrets.token_hex(16)
        with self._lock:
            self._session_keys.add(key)
        return key

    def authenticated(self, authorization: str | None) -> bool:
        scheme, _, credential = (authorization or "").partition(" ")
        with self._lock:
            valid = credential in self._session_keys or credential == self.token
        return scheme in ("Bearer", "Splunk") and bool(credential) and valid

    def take_unavailable(self) -> bool:
        """True (and one fewer left) while injected 503s remain."""
        with self._lock:
            if self.unavailable_exports <= 0:
                return False
            self.unavailable_exports -= 1
            return True

    def export_lines(
        self, search: _Search, earliest: Decimal | None, latest: Decimal | None
    ) -> list[bytes]:
        """The response body of one export, line by line, as Splunk would send it."""
        with self._lock:
            events = list(self.events)
        chosen = [
            e
            for e in events
            if search.index == self.index
            and str(e.get("service")) == search.service
            and (earliest is None or _event_epoch(e) >= earliest)
            and (latest is None or _event_epoch(e) < latest)
        ]
        chosen.sort(key=_event_epoch, reverse=True)
        lines: list[bytes] = []
        if self.messages:
            texts = [{"type": kind, "text": text} for kind, text in self.messages]
            lines.append(_json_line({"preview": False, "messages": texts}))
        for offset, event in enumerate(chosen):
            if offset == self.corrupt_after:
                lines.append(b'{"preview":false,"offset":%d,"result":{"_time":\n' % offset)
            row: dict[str, Any] = {"preview": False, "offset": offset}
            if offset == len(chosen) - 1:
                row["lastrow"] = True
            row["result"] = self._project(event, search)
            lines.append(_json_line(row))
        return lines

    def _project(self, event: Mapping[str, Any], search: _Search) -> dict[str, Any]:
        """Fields the search keeps, as strings (Splunk's JSON has no other scalar type)."""
        if "_raw" not in event:
            event = {**event, "_raw": _raw_text(event)}
        if search.fields is None:
            names = list(event)
        elif search.remove_fields:
            names = [n for n in event if n not in search.fields]
        else:  # like Splunk, `fields a b` keeps internal fields such as _raw
            names = [n for n in event if n in search.fields or n.startswith("_")]
        result = {n: _splunk_value(event[n]) for n in names}
        if self.emit_time is not None and "_time" in result:
            result["_time"] = self.emit_time(result["_time"])
        return result


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: StandInSplunk) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up (timeouts, failed TLS) are part of the tests, not errors."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError, ssl.SSLError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: tests read ``StandInSplunk.requests`` instead of stderr."""

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        state = self.server.state
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8") if length else ""
        form = dict(parse_qsl(query)) | dict(parse_qsl(body))
        authorization = self.headers.get("Authorization")
        state.record(RecordedRequest(self.command, path, form, authorization))
        export = _EXPORT_PATH.fullmatch(path)
        if path == "/services/auth/login" and self.command == "POST":
            self._login(form)
        elif not state.authenticated(authorization):
            self._error(401, "WARN", "call not properly authenticated")
        elif path == "/services/server/info" and self.command == "GET":
            self._reply(200, _server_info(state.version, state.url))
        elif export and self.command == "POST" and bool(export["v2"]) == state.has_v2:
            self._export(form)
        else:
            self._error(404, "ERROR", f"Not Found: {self.command} {path}")

    def _login(self, form: Mapping[str, str]) -> None:
        state = self.server.state
        if form.get("username") == state.username and form.get("password") == state.password:
            key = state.open_session()
            self._reply(200, f"<response>\n  <sessionKey>{key}</sessionKey>\n</response>\n")
        else:
            self._error(401, "WARN", "Login failed")

    def _export(self, form: Mapping[str, str]) -> None:
        state = self.server.state
        search = _parse_search(form.get("search", ""))
        if search is None:
            text = f"Error in 'search' command: the stand-in understands only {_GRAMMAR}"
            self._error(400, "FATAL", f"{text}, got {form.get('search', '')!r}")
            return
        try:
            earliest = _bound(form, "earliest_time")
            latest = _bound(form, "latest_time")
        except ValueError as exc:
            self._error(400, "FATAL", str(exc))
            return
        if form.get("output_mode") != "json":
            self._error(400, "FATAL", "the stand-in speaks output_mode=json only")
        elif state.take_unavailable():
            text = "Search not executed: the search head is too busy"
            self._error(state.unavailable_status, "ERROR", text)
        else:
            if state.export_delay_s:
                state.stopping.wait(state.export_delay_s)
            self._stream(state.export_lines(search, earliest, latest))

    def _stream(self, lines: Iterable[bytes]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        for line in lines:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
        self.wfile.write(b"0\r\n\r\n")

    def _error(self, status: int, kind: str, text: str) -> None:
        self._reply(
            status,
            '<?xml version="1.0" encoding="UTF-8"?>\n<response>\n  <messages>\n'
            f'    <msg type="{kind}">{escape(text)}</msg>\n  </messages>\n</response>\n',
        )

    def _reply(self, status: int, xml: str) -> None:
        data = xml.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/xml; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)


def _parse_search(spl: str) -> _Search | None:
    match = _SPL.fullmatch(spl)
    if match is None:
        return None
    fields = tuple(match["fields"].split()) if match["fields"] else None
    service = re.sub(r"\\(.)", r"\1", match["service"])
    return _Search(match["index"], service, fields, bool(match["minus"]))


def _bound(form: Mapping[str, str], name: str) -> Decimal | None:
    """An epoch-seconds time bound (absent means unbounded); anything else is refused."""
    if name not in form:
        return None
    try:
        return Decimal(form[name])
    except InvalidOperation:
        raise ValueError(
            f"Invalid {name}: {form[name]!r} (the stand-in takes epoch seconds)"
        ) from None


def _event_epoch(event: Mapping[str, Any]) -> Decimal:
    """Exact epoch seconds of an event's ISO ``_time`` (no offset means UTC)."""
    moment = datetime.fromisoformat(str(event["_time"]))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return Decimal((moment - _EPOCH) // timedelta(microseconds=1)) / 1_000_000


def _raw_text(event: Mapping[str, Any]) -> str:
    """``<_time> key=value ...``: the raw line of an event that was given no ``_raw``."""
    pairs = " ".join(f"{k}={_splunk_value(v)}" for k, v in event.items() if not k.startswith("_"))
    return f"{event['_time']} {pairs}"


def _splunk_value(value: Any) -> Any:
    return [str(v) for v in value] if isinstance(value, list) else str(value)


def _json_line(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode("utf-8") + b"\n"


def _server_info(version: str, url: str) -> str:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xmlns:s="http://dev.splunk.com/ns/rest">
  <title>server-info</title>
  <id>{url}/services/server/info</id>
  <generator build="stand-in" version="{escape(version)}"/>
  <entry>
    <title>server-info</title>
    <id>{url}/services/server/info/server-info</id>
    <link href="/services/server/info/server-info" rel="alternate"/>
    <content type="text/xml">
      <s:dict>
        <s:key name="serverName">stand-in</s:key>
        <s:key name="version">{escape(version)}</s:key>
      </s:dict>
    </content>
  </entry>
</feed>
"""


@contextmanager
def running_splunk(
    events: Iterable[Mapping[str, Any]] = (),
    *,
    version: str = "9.1.0",
    token: str | None = None,
    username: str = "admin",
    password: str = "changeme",
    index: str = "app",
    tls: tuple[Path, Path] | None = None,
) -> Iterator[StandInSplunk]:
    """Serve ``events`` (dicts with an ISO ``_time`` and a ``service``) in index ``index``.

    Yields the :class:`StandInSplunk`, whose ``url`` is the base URL and whose ``requests``
    records what arrived. ``token`` is accepted as a Bearer or Splunk token; ``username`` and
    ``password`` open sessions. ``tls=(certfile, keyfile)`` serves HTTPS instead of HTTP.
    """
    state = StandInSplunk([dict(e) for e in events], version, token, username, password, index)
    for event in state.events:
        _event_epoch(event)  # malformed test data fails here, not as a dropped connection
    server = _Server(state)
    with serve_in_background(server, tls) as url:
        state.url = url
        try:
            yield state
        finally:
            state.stopping.set()  # wakes delayed exports before the server closes

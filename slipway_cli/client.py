"""HTTP to ``/api/v1``: JSON requests, pages, and server-sent event streams.

Only the standard library (``urllib``). Every answer that is not a 2xx becomes an
:class:`ApiError` with the API's error envelope; a server that cannot be reached becomes
a :class:`Unreachable`. A POST carries an ``Idempotency-Key`` and is retried with the
same key when the connection fails or a gateway answers 502/503/504: the server acts on
a key once, so a retry never deploys twice.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from slipway_cli import __version__

USER_AGENT = f"slipway-cli/{__version__}"
TIMEOUT_SECONDS = 30
POST_ATTEMPTS = 3
RETRY_STATUSES = (502, 503, 504)


class ApiError(Exception):
    """The API refused: its status, code, message and details (field errors...)."""

    def __init__(self, status: int, code: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details = details or {}

    @property
    def fields(self) -> dict[str, str]:
        found = self.details.get("fields") if isinstance(self.details, dict) else None
        return found if isinstance(found, dict) else {}


class Unreachable(Exception):
    """No answer from the server at all (refused, DNS, TLS, timeout, dropped)."""

    def __init__(self, url: str, reason: object):
        super().__init__(f"Cannot reach Slipway at {url}: {reason}")
        self.url, self.reason = url, reason


@dataclass
class Event:
    """One server-sent event."""

    event: str = "message"
    data: Any = None
    id: str | None = None


@dataclass
class Client:
    url: str  # the server's base URL, without /api/v1
    token: str
    timeout: float = TIMEOUT_SECONDS
    _opener: urllib.request.OpenerDirector = field(init=False, repr=False)

    def __post_init__(self):
        self._opener = urllib.request.build_opener()

    # ---- plumbing -----------------------------------------------------------

    def address(self, path: str, params: dict | None = None) -> str:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        url = f"{self.url}/api/v1{path}"
        return url + ("?" + urllib.parse.urlencode(query) if query else "")

    def _open(self, method: str, path: str, params=None, body=None, headers=None, timeout=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.address(path, params), data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        request.add_header("User-Agent", USER_AGENT)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            return self._opener.open(request, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as answer:
            raise error_of(answer) from None
        except urllib.error.URLError as exc:
            raise Unreachable(self.url, exc.reason) from None
        except OSError as exc:  # reset, dropped, timed out
            raise Unreachable(self.url, exc) from None

    def request(self, method: str, path: str, *, params=None, body=None, headers=None):
        """The decoded JSON of a 2xx answer (None for a 204)."""
        with self._open(method, path, params, body, headers) as answer:
            raw = answer.read()
        return json.loads(raw) if raw else None

    # ---- verbs --------------------------------------------------------------

    def get(self, path: str, **params) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: dict | None = None, params: dict | None = None) -> Any:
        """POST with a fresh Idempotency-Key, retried with that same key if the answer is
        lost: the server runs the first and replays its answer to a retry."""
        headers = {"Idempotency-Key": str(uuid.uuid4())}
        for attempt in range(1, POST_ATTEMPTS + 1):
            try:
                return self.request("POST", path, params=params, body=body or {}, headers=headers)
            except Unreachable:
                if attempt == POST_ATTEMPTS:
                    raise
            except ApiError as exc:
                if exc.status not in RETRY_STATUSES or attempt == POST_ATTEMPTS:
                    raise
            time.sleep(0.5 * attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def put(self, path: str, body: dict) -> Any:
        return self.request("PUT", path, body=body)

    def patch(self, path: str, body: dict, etag: str | None = None) -> Any:
        return self.request("PATCH", path, body=body, headers={"If-Match": etag} if etag else {})

    def delete(self, path: str) -> None:
        self.request("DELETE", path)

    def every(self, path: str, **params) -> list:
        """Every item of a list, following ``next_cursor`` page by page."""
        items: list = []
        params = {"limit": 100, **params}
        while True:
            answer = self.get(path, **params)
            items.extend(answer.get("data", []))
            cursor = answer.get("next_cursor")
            if not cursor:
                return items
            params["cursor"] = cursor

    # ---- server-sent events -------------------------------------------------

    def events(self, path: str, params=None, last_event_id=None, timeout=None) -> Iterator[Event]:
        """The events of one connection to an event stream, until the server closes it."""
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        answer = self._open("GET", path, params, None, headers, timeout)
        with answer:
            kind = answer.headers.get("Content-Type", "")
            if not kind.startswith("text/event-stream"):
                # A server that answers the lines as JSON instead: one event per line.
                for line in _json_lines(answer.read()):
                    yield Event("line", line)
                return
            try:
                yield from parse_events(answer)
            except TimeoutError:
                raise Silent() from None
            except OSError as exc:
                raise Unreachable(self.url, exc) from None


def _json_lines(raw: bytes) -> list:
    data = json.loads(raw) if raw else {}
    if isinstance(data, dict):
        data = data.get("lines", data.get("data", []))
    return data if isinstance(data, list) else []


def parse_events(stream) -> Iterator[Event]:
    """Server-sent events (the WHATWG format) read line by line from ``stream``."""
    kind, data, event_id = "message", [], None
    for raw in stream:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if data:
                yield Event(kind, _decode("\n".join(data)), event_id)
            kind, data = "message", []
            continue
        if line.startswith(":"):
            continue  # a comment: the server's keep-alive
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            kind = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            event_id = value
    if data:
        yield Event(kind, _decode("\n".join(data)), event_id)


def _decode(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def error_of(answer: urllib.error.HTTPError) -> ApiError:
    """The API's error envelope of a refused request (or what a proxy answered instead)."""
    try:
        raw = answer.read()
    except OSError:
        raw = b""
    try:
        envelope = json.loads(raw)["error"]
        code, message = str(envelope.get("code", "error")), str(envelope.get("message", ""))
        return ApiError(answer.code, code, message, envelope.get("details") or {})
    except (ValueError, KeyError, TypeError, AttributeError):
        reason = answer.reason or "error"
        return ApiError(answer.code, "http_error", f"HTTP {answer.code} {reason} from {answer.url}")


class Silent(Exception):
    """A stream said nothing for its read timeout (the connection may be dead)."""


class TimedOut(Exception):
    """The deadline of a followed stream passed before its end."""


def follow(
    client: Client,
    path: str,
    params: dict | None = None,
    *,
    deadline: float | None = None,
    read_timeout: float = 45,
    attempts: int = 8,
    is_over: Callable[[], bool] | None = None,
) -> Iterator[Event]:
    """Every event of a stream, across dropped connections: each reconnection sends
    ``Last-Event-ID`` (the last id seen), so the server resumes after it, no line lost
    and none twice. Ends after an ``end`` event, or when the server closes a stream that
    has no end (say the lines of a non-followed request); raises :class:`TimedOut` at
    ``deadline`` (a ``time.monotonic()`` value) and :class:`Unreachable` after
    ``attempts`` failed connections in a row.

    ``is_over()`` is asked before each reconnection: once it says the thing followed is
    over (a deployment went final while the stream was down, or a server never sends
    ``end``), the lines still missing are read once without following, and it ends."""
    last_id: str | None = None
    failures = 0
    while True:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise TimedOut()
        timeout = read_timeout if remaining is None else max(min(read_timeout, remaining), 0.1)
        try:
            for event in client.events(path, params, last_id, timeout):
                failures = 0
                if event.id is not None:
                    last_id = event.id
                yield event
                if event.event == "end":
                    return
        except Silent:
            pass  # nothing for read_timeout: the connection may be dead, make a new one
        except (Unreachable, ApiError) as exc:
            refused = isinstance(exc, ApiError) and exc.status not in RETRY_STATUSES
            if refused or not (params or {}).get("follow"):
                raise  # a refusal, or a one-off read: say so now
            failures += 1  # dropped, refused, or a gateway between restarts: connect again
            if failures >= attempts:
                raise
        else:
            if not (params or {}).get("follow"):
                return  # not following: the lines so far were the whole answer
            failures += 1  # closed without an end (a restart, say): resume, backing off
        time.sleep(min(0.1 * 2**failures, 3))
        if is_over is not None and _over(is_over):
            rest = {k: v for k, v in (params or {}).items() if k != "follow"}
            yield from client.events(path, rest, last_id, read_timeout)
            return


def _over(is_over: Callable[[], bool]) -> bool:
    try:
        return is_over()
    except (Unreachable, ApiError):
        return False  # cannot tell yet: keep trying the stream

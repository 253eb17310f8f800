"""A Server-Sent Events reader for the API's log streams (tests only)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import requests


@dataclass
class Event:
    name: str | None  # None: a comment
    data: dict | str | None = None
    id: str | None = None


def parse(text: str) -> list[Event]:
    """The events of a whole SSE body (comments included, as events named None)."""
    return [event for block in text.split("\n\n") if block and (event := _event(block))]


def _event(block: str) -> Event | None:
    name = data = event_id = None
    comment = None
    for line in block.split("\n"):
        if line.startswith(":"):
            comment = line[1:].strip()
        elif line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            data = json.loads(line[len("data: ") :])
        elif line.startswith("id: "):
            event_id = line[len("id: ") :]
    if name is None and data is None:
        return Event(None, comment) if comment is not None else None
    return Event(name or "message", data, event_id)


@dataclass
class Stream:
    """A live ``text/event-stream`` answer, read event by event as it arrives."""

    response: requests.Response
    events: list[Event] = field(default_factory=list)
    _reader: Iterator[Event] | None = None

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        if self._reader is None:
            self._reader = self._read()
        return next(self._reader)

    def _read(self) -> Iterator[Event]:
        pending = ""
        for chunk in self.response.iter_content(chunk_size=None, decode_unicode=True):
            pending += chunk
            *blocks, pending = pending.split("\n\n")
            for block in blocks:
                event = _event(block)
                if event is not None:
                    self.events.append(event)
                    yield event

    def until(self, stop) -> list[Event]:
        """Read until ``stop(event)`` is true or the server ends the stream."""
        for event in self:
            if stop(event):
                break
        return self.events

    def close(self) -> None:
        self.response.close()

    def lines(self) -> list[dict]:
        return [e.data for e in self.events if e.name == "line"]

    def named(self, name: str) -> list[Event]:
        return [e for e in self.events if e.name == name]


def open_stream(url: str, token: str, headers: dict | None = None, timeout: float = 30) -> Stream:
    response = requests.get(
        url, headers={"Authorization": f"Bearer {token}", **(headers or {})}, stream=True,
        timeout=(5, timeout),
    )  # fmt: skip
    assert response.status_code == 200, response.text
    return Stream(response)

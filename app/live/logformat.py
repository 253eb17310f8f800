"""Log text to safe HTML: escape first, then turn ANSI colours into class names.

A log line is whatever a build or a container printed, so it is hostile text.
It is HTML-escaped as a whole segment by segment *before* any markup is added,
and the only markup added is ``<span class="ansi-…">`` with class names chosen
here from a fixed set. Other escape sequences (cursor moves, titles) are
dropped. Pages (the stored build log) and websocket frames use the same function.
"""

from __future__ import annotations

import re

from markupsafe import Markup, escape

MAX_LINE = 4000
CUT_MARK = " …[line cut]"
# SGR ("select graphic rendition") sequences carry colours; everything else that
# starts with ESC is removed: CSI sequences, OSC strings, lone two-byte escapes.
_SGR = re.compile(r"\x1b\[([0-9;]{0,40})m")
_OTHER_ESCAPES = re.compile(
    r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?"
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def cut(text: str, limit: int = MAX_LINE) -> str:
    """A very long line is cut (and says so) rather than sent whole."""
    if len(text) > limit:
        return text[:limit] + CUT_MARK
    return text


def plain(text: str) -> str:
    """The text without escape sequences and control characters (for a one-line summary)."""
    return _CONTROL.sub("", _OTHER_ESCAPES.sub("", _SGR.sub("", text)))


def _classes(codes: list[int], state: dict[str, str]) -> None:
    for code in codes:
        if code == 0:
            state.clear()
        elif code == 1:
            state["bold"] = "ansi-bold"
        elif code == 22:
            state.pop("bold", None)
        elif 30 <= code <= 37 or 90 <= code <= 97:
            state["fg"] = f"ansi-fg-{code}"
        elif code == 39:
            state.pop("fg", None)
        elif 40 <= code <= 47 or 100 <= code <= 107:
            state["bg"] = f"ansi-bg-{code}"
        elif code == 49:
            state.pop("bg", None)


def to_html(text: str) -> Markup:
    """One log line as HTML: escaped text, ANSI colours as ``ansi-*`` spans."""
    text = cut(text)
    parts: list[str] = []
    state: dict[str, str] = {}
    position = 0
    for match in _SGR.finditer(text):
        _segment(parts, text[position : match.start()], state)
        codes = [int(c) for c in match.group(1).split(";") if c.isdigit()] or [0]
        _classes(codes, state)
        position = match.end()
    _segment(parts, text[position:], state)
    return Markup("".join(parts))


def _segment(parts: list[str], raw: str, state: dict[str, str]) -> None:
    raw = _CONTROL.sub("", _OTHER_ESCAPES.sub("", raw))
    if not raw:
        return
    safe = str(escape(raw))  # escaped before any markup is added
    if state:
        classes = " ".join(sorted(state.values()))  # only names made in _classes
        parts.append(f'<span class="{classes}">{safe}</span>')
    else:
        parts.append(safe)

"""Live-test fixtures: the test's app behind a real server (tests/livekit.py)."""

from __future__ import annotations

import pytest

from tests.livekit import serving


@pytest.fixture
def live_server(app):
    with serving(app) as server:
        yield server

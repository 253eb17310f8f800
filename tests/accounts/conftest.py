"""A real SMTP server on loopback for the tests that mail links (resets, invitations)."""

from __future__ import annotations

import socket

import pytest
from aiosmtpd.controller import Controller

# The installation's public URL in these tests: mailed links are built from it.
PUBLIC = "http://slipway.example.test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp(app):
    """A real SMTP server on loopback, configured as the installation's mail server."""
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    app.config.update(
        SMTP_HOST="127.0.0.1", SMTP_PORT=controller.port, SMTP_TLS="none",
        SMTP_SENDER="slipway@example.test", PUBLIC_URL=PUBLIC,
    )  # fmt: skip
    yield inbox
    controller.stop()

"""Email over SMTP: the one module that speaks SMTP.

Notification channels bring their own server (``app.notify``); mail from the
installation itself (password reset links) uses the ``SLIPWAY_SMTP_*`` settings.
"""

from __future__ import annotations

import smtplib
from dataclasses import dataclass
from email.message import EmailMessage

from flask import current_app

TIMEOUT = 10


class MailError(Exception):
    """The message was not handed over; the text says why (never a password)."""


@dataclass(frozen=True)
class Server:
    host: str
    port: int = 25
    tls: str = "none"  # "starttls", "ssl" (implicit TLS, port 465) or "none"
    username: str = ""
    password: str = ""


def installation_server() -> Server | None:
    """The installation's own SMTP server and sender, or None when none is configured."""
    config = current_app.config
    if not config.get("SMTP_HOST") or not config.get("SMTP_SENDER"):
        return None
    return Server(
        host=config["SMTP_HOST"], port=config["SMTP_PORT"], tls=config["SMTP_TLS"],
        username=config["SMTP_USERNAME"], password=config["SMTP_PASSWORD"],
    )  # fmt: skip


def send(
    server: Server, sender: str, to: str, subject: str, text: str, *, timeout: float = TIMEOUT
) -> None:
    """Send one plain-text message; raises :class:`MailError` with a plain reason."""
    msg = EmailMessage()
    msg["Subject"], msg["From"], msg["To"] = subject, sender, to
    msg.set_content(text)
    connect = smtplib.SMTP_SSL if server.tls == "ssl" else smtplib.SMTP
    try:
        with connect(server.host, server.port, timeout=timeout) as smtp:
            if server.tls == "starttls":
                smtp.starttls()
            if server.username:
                smtp.login(server.username, server.password)
            smtp.send_message(msg)
    except (smtplib.SMTPException, OSError) as exc:
        raise MailError(f"SMTP {server.host}: {exc}") from None

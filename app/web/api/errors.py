"""An API answer in the error envelope, raised from anywhere a request runs."""

from __future__ import annotations


class ApiError(Exception):
    """``{"error": {"code", "message", "details"}}`` with ``status`` (``app.web.api.base``
    turns it into the answer)."""

    def __init__(self, status: int, code: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details or {}


def fail(status: int, code: str, message: str, details: dict | None = None):
    raise ApiError(status, code, message, details)

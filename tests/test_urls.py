"""The dashboard's URLs are built in one place: PUBLIC_URL, else the request's host."""

from flask import url_for

from app import urls


class _App:
    def __init__(self, token: str | None = "tok123"):
        self.webhook_token = token


def test_without_public_url_the_request_host_is_the_base(app):
    app.config["PUBLIC_URL"] = ""
    with app.test_request_context("/", base_url="http://10.0.0.7:8000"):
        assert urls.dashboard_bases() == ["http://10.0.0.7:8000"]
        path = url_for("webhooks.receive", provider="github", token="tok123")
        assert urls.webhook_url(_App(), "github") == "http://10.0.0.7:8000" + path


def test_public_url_comes_first_and_the_request_host_still_counts(app):
    app.config["PUBLIC_URL"] = "https://slipway.example.com/"
    with app.test_request_context("/", base_url="http://10.0.0.7:8000"):
        assert urls.dashboard_bases() == ["https://slipway.example.com", "http://10.0.0.7:8000"]
        path = url_for("webhooks.receive", provider="gitlab", token="tok123")
        assert urls.webhook_url(_App(), "gitlab") == "https://slipway.example.com" + path
        assert urls.webhook_url(_App(token=None), "gitlab") is None

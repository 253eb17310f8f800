"""SECURITY.md case 20: security headers on authenticated pages, and templates
that need no inline script (so the CSP can forbid it).
"""

from __future__ import annotations

import re

import pytest

from app import config as config_module
from app.models import Role
from tests.conftest import Auth, csrf_token

TEMPLATES = config_module.ROOT / "app" / "templates"
SAFE_REFERRER_POLICIES = {
    "no-referrer",
    "same-origin",
    "strict-origin",
    "strict-origin-when-cross-origin",
}


def _csp(header: str) -> dict[str, list[str]]:
    directives = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            directives[words[0].lower()] = [w.lower() for w in words[1:]]
    return directives


def assert_secure_headers(response, where: str) -> None:
    headers = response.headers
    csp = _csp(headers.get("Content-Security-Policy", ""))
    script = csp.get("script-src", csp.get("default-src"))
    assert script is not None, f"{where}: no script-src or default-src"
    assert "'unsafe-inline'" not in script and "'unsafe-eval'" not in script, where
    assert not any(s in ("*", "data:", "http:", "https:") for s in script), where
    assert csp.get("frame-ancestors") == ["'none'"], where
    assert csp.get("object-src") == ["'none'"], where
    assert "base-uri" in csp, where
    assert headers.get("X-Content-Type-Options") == "nosniff", where
    assert headers.get("Referrer-Policy") in SAFE_REFERRER_POLICIES, where
    assert "no-store" in headers.get("Cache-Control", ""), where


@pytest.mark.parametrize("headers", [{}, {"HX-Request": "true"}], ids=["html", "htmx"])
def test_every_authenticated_page_sends_the_security_headers(app, client, team_a, routes, headers):
    # Team A's owner ran setup: the installation owner sees the installation pages too.
    assert Auth(client).login(team_a.user).status_code == 303
    for endpoint, _, url in routes(app, team_a, methods=("GET",)):
        if endpoint == "static":
            continue
        response = client.get(url, headers=headers)
        # /metrics is off (404) without SLIPWAY_METRICS_TOKEN; tests/monitoring/test_prometheus.py
        # A reset link whose token was never issued is refused with 404 (its page, headers too),
        # as are well-known tokens nobody put there (tests/proxy/test_wellknown.py).
        # So is single sign-on through a provider that does not exist, and its settings
        # (the route tables fill the id with 1, no provider's), and an invitation token
        # nobody issued (tests/accounts/test_invitations.py).
        unknown = ("prometheus.scrape", "auth.reset_get", "wellknown.acme_challenge",
                   "wellknown.probe", "sso.login", "sso.callback", "sso.edit_get",
                   "sso.delete_get", "invitations.show_get")  # fmt: skip
        expected = (404,) if endpoint in unknown else (200, 302)
        if endpoint.startswith("api.") and endpoint != "api.openapi_json":
            expected = (401,)  # the API takes keys, never the session (tests/api)
        assert response.status_code in expected, (url, response.status_code)
        assert_secure_headers(response, url)


def test_fragments_errors_and_redirects_send_the_security_headers(
    app, client, member, team_a, team_b
):
    member(Role.developer)
    token = csrf_token(client, "/")
    htmx = {"HX-Request": "true"}
    responses = {
        "env fragment": client.post(
            f"/apps/{team_a.application.id}/env",
            data={"csrf_token": token, "key": "K", "value": "v"},
            headers=htmx,
        ),
        "validate fragment": client.post(
            f"/projects/{team_a.project.id}/apps/validate/name",
            data={"csrf_token": token, "name": "Bad"},
            headers=htmx,
        ),
        "422 form": client.post("/projects/new", data={"csrf_token": token, "name": "Bad"}),
        "403": client.get(f"/projects/{team_a.project.id}/delete"),
        "404": client.get(f"/apps/{team_b.application.id}"),
        "404 htmx": client.get(f"/apps/{team_b.application.id}", headers=htmx),
        "400 csrf": client.post("/projects/new", data={"name": "x"}),
        "303 redirect": client.post("/projects/new", data={"csrf_token": token, "name": "ok-p"}),
    }
    for where, response in responses.items():
        assert_secure_headers(response, where)


def test_anonymous_pages_send_the_security_headers(app, client, owner):
    for url in ("/login", "/projects/1"):
        assert_secure_headers(client.get(url), url)
    assert_secure_headers(client.get("/", headers={"HX-Request": "true"}), "401 htmx")
    assert_secure_headers(client.get("/", headers={"Accept": "application/json"}), "401 json")


def test_authenticated_pages_cannot_be_framed(app, client, member, team_a):
    member(Role.owner)
    response = client.get(f"/apps/{team_a.application.id}")
    assert response.headers.get("X-Frame-Options") == "DENY"
    assert _csp(response.headers["Content-Security-Policy"])["frame-ancestors"] == ["'none'"]


# ---- templates -----------------------------------------------------------------

INLINE_SCRIPT = re.compile(r"<script\b(?P<attrs>[^>]*)>(?P<body>.*?)</script\s*>", re.I | re.S)
HANDLER_ATTR = re.compile(r"""[\s"'/]on[a-z]+\s*=""", re.I)
HTMX_EVAL = re.compile(r"\b(?:hx|data-hx)-(?:on\b|on[:-]|vars\b)", re.I)


def _templates() -> list:
    found = sorted(TEMPLATES.rglob("*.html"))
    assert found, TEMPLATES
    return found


def _tags(source: str) -> list[str]:
    """The text of every HTML tag, Jinja expressions left in place."""
    return re.findall(r"<[a-zA-Z][^<>]*(?:\{\{.*?\}\}[^<>]*)*>", source, re.S)


@pytest.mark.parametrize("path", _templates(), ids=lambda p: str(p.relative_to(TEMPLATES)))
def test_templates_have_no_inline_script_or_event_handlers(path):
    source = path.read_text()
    for match in INLINE_SCRIPT.finditer(source):
        assert not match["body"].strip(), f"{path.name}: inline <script> body"
        assert "src=" in match["attrs"], f"{path.name}: <script> without src"
    for tag in _tags(source):
        assert not HANDLER_ATTR.search(tag), f"{path.name}: event handler in {tag!r}"
        assert "javascript:" not in tag.lower(), f"{path.name}: javascript: URL in {tag!r}"
        assert not HTMX_EVAL.search(tag), f"{path.name}: hx-on/hx-vars evaluates script: {tag!r}"


def test_the_template_scan_finds_what_it_looks_for():
    """The control: the patterns above catch the things they are meant to catch."""
    bad = [
        "<script>alert(1)</script>",
        '<button onclick="go()">',
        "<img src=x onerror=alert(1)>",
        '<a href="javascript:alert(1)">',
        '<div hx-on:click="alert(1)">',
    ]
    for snippet in bad:
        caught = any(m["body"].strip() for m in INLINE_SCRIPT.finditer(snippet)) or any(
            HANDLER_ATTR.search(t) or "javascript:" in t or HTMX_EVAL.search(t)
            for t in _tags(snippet)
        )
        assert caught, snippet

"""Blueprints, and the rules every request passes: login, setup, headers, errors."""

from __future__ import annotations

import re
import uuid

from flask import Flask, g, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from app.extensions import csrf, db, login
from app.models import User
from app.web import templating
from app.web.htmx import error_json, installed, is_htmx, is_websocket, wants_json

# Endpoints reachable without a session. Everything else requires one: the check
# is here, once, not a decorator someone can forget.
PUBLIC_ENDPOINTS = {
    "auth.login_get",
    "auth.login_post",
    "auth.setup_get",
    "auth.setup_post",
    # Forgot password: the form, and the one-time link it mails (app.accounts.resets).
    "auth.forgot_get",
    "auth.forgot_post",
    "auth.reset_get",
    "auth.reset_post",
    # An invitation link (app.accounts.invitations): its page, and accepting it, with a
    # new account or the session one has. Refused tokens are rate-limited per address.
    "invitations.show_get",
    "invitations.accept_post",
    # The second step of a login: the session holds a pending login, which grants nothing.
    "twofactor.login_get",
    "twofactor.login_post",
    "static",
    "health.healthz",
    # Off (404) unless SLIPWAY_METRICS_TOKEN is set; then the view itself requires
    # "Authorization: Bearer <token>" (constant-time compare). GET only: no CSRF.
    "prometheus.scrape",
    # Single sign-on: the redirect to the provider and its way back (app.accounts.sso;
    # the callback checks the state this session's own sign-in stored).
    "sso.login",
    "sso.callback",
}
# Webhooks check their own signatures; well-known serves the ACME HTTP-01 answers and
# the preflight's probe tokens (short-lived, random, nothing else); /api/v1 takes API
# keys only (app.web.api.base), never the session cookie, so it has no CSRF surface;
# /api/docs is the API's public reference.
PUBLIC_BLUEPRINTS = {"webhooks", "wellknown", "api", "api_docs"}

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


@login.user_loader
def load_user(login_id: str) -> User | None:
    """The login id is ``<user id>:<session version>``; a bumped version ends old sessions."""
    user_id, _, version = login_id.partition(":")
    if not user_id.isdigit() or not version.isdigit():
        return None
    user = db.session.get(User, int(user_id))
    if user is None or user.session_version != int(version):
        return None
    return user


@login.unauthorized_handler
def unauthorized():
    if is_websocket():
        # Refused before the handshake: no socket, no frame.
        return error_json(401, "unauthenticated", "Log in first."), 401
    if wants_json():
        return error_json(401, "unauthenticated", "Log in or send an API key."), 401
    login_url = url_for("auth.login_get", next=request.full_path.rstrip("?"))
    if is_htmx():
        return "", 401, {"HX-Redirect": login_url}
    return redirect(login_url)


REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def request_id() -> str:
    """This request's id: the client's ``X-Request-Id`` when it is a sane one (a proxy
    or CLI correlating), else a new one. On the answer and in every log line."""
    found = g.get("request_id")
    if found is None:
        given = request.headers.get("X-Request-Id", "")
        found = given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        g.request_id = found
    return found


def _guard():
    endpoint = request.endpoint or ""
    if endpoint == "static" or endpoint == "health.healthz":
        return None
    if request.blueprint in PUBLIC_BLUEPRINTS or request.path.startswith("/api/"):
        # Webhooks authenticate by signature, the API by key (app.web.api.base), never by
        # session or CSRF token; /api/… without a route answers 404/405 in the envelope.
        return None
    if not installed() and endpoint not in ("auth.setup_get", "auth.setup_post"):
        return redirect(url_for("auth.setup_get"))
    if endpoint not in PUBLIC_ENDPOINTS and not current_user.is_authenticated:
        return login.unauthorized()
    csrf.protect()  # only checks state-changing methods
    return None


def _headers(response):
    response.headers["X-Request-Id"] = request_id()
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    if request.endpoint != "static":
        response.headers["Cache-Control"] = "no-store"
        response.vary.add("HX-Request")
        response.vary.add("Cookie")
    return response


def _errors(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_failed(exc: CSRFError):
        if wants_json():
            return error_json(400, "csrf_failed", exc.description), 400
        return render_template("error.html", code=400, message=exc.description), 400

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = exc.code or 500
        if wants_json():
            return error_json(code, exc.name.lower().replace(" ", "_"), exc.description), code
        if is_htmx() and code in (401, 403, 404):
            return f"<p class=error>{exc.name}</p>", code
        return render_template("error.html", code=code, message=exc.description), code


def register(app: Flask) -> None:
    from app.web import (
        api,
        apps,
        audit,
        auth,
        backups,
        dashboard,
        databases,
        deployments,
        domains,
        health,
        installation,
        invitations,
        keys,
        live,
        members,
        metrics,
        notifications,
        projects,
        repos,
        settings,
        sso,
        teams,
        twofactor,
        volumes,
        webhooks,
        wellknown,
    )
    from app.web import prometheus as prometheus_web
    from app.web import workers as workers_web

    blueprints = (
        auth, dashboard, projects, apps, deployments, settings, health, live, metrics, backups,
        notifications, prometheus_web, workers_web, installation, repos, webhooks, wellknown,
        domains, teams, sso, members, invitations, audit, twofactor, keys, databases, volumes,
    )  # fmt: skip
    for module in blueprints:
        app.register_blueprint(module.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(api.docs_bp)
    app.before_request(_guard)
    app.after_request(_headers)
    _errors(app)
    templating.register(app)

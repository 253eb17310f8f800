"""/metrics: off by default, bearer token only, parsable Prometheus text."""

from __future__ import annotations

from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.extensions import db, queue, redis
from app.models import Deployment
from app.models.base import utcnow
from app.monitoring.prometheus import HTTP_KEY
from tests.conftest import RequestScopedClient
from tests.conftest import running_app as running
from tests.factories import make_app, make_project, make_team, make_user

TOKEN = "scrape-token-0123456789abcdef"


@pytest.fixture
def metrics_app(base_config):
    with running(base_config | {"METRICS_TOKEN": TOKEN}) as flask_app:
        flask_app.test_client_class = RequestScopedClient
        yield flask_app


def _scrape(client, header=f"Bearer {TOKEN}"):
    return client.get("/metrics", headers={"Authorization": header} if header else {})


def _samples(text: str) -> dict:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_metrics_are_off_by_default(client, owner):
    assert _scrape(client).status_code == 404
    assert _scrape(client, header=None).status_code == 404
    assert not redis.client.exists(HTTP_KEY)  # and nothing is counted


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x", TOKEN],
)
def test_a_missing_or_wrong_token_is_401(metrics_app, header):
    make_user()
    response = _scrape(metrics_app.test_client(), header)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert b"slipway_" not in response.data


def test_a_session_is_not_a_token(metrics_app):
    from tests.conftest import Auth

    client = metrics_app.test_client()
    assert Auth(client).login(make_user()).status_code == 303
    assert _scrape(client, header=None).status_code == 401


def test_the_right_token_gets_parsable_figures(metrics_app):
    user = make_user()
    app_row = make_app(make_project(user.memberships[0].team))
    now = utcnow()
    for status, seconds in (("running", 40), ("replaced", 90), ("failed", 5), ("failed", 700)):
        db.session.add(
            Deployment(
                application_id=app_row.id,
                status=status,
                started_at=now - timedelta(seconds=seconds),
                finished_at=now,
            )  # fmt: skip
        )
    db.session.add(Deployment(application_id=app_row.id, status="queued"))
    db.session.commit()
    queue("default").enqueue("app.jobs.reap_lost_deployments")
    queue("deploy").enqueue("app.jobs.reap_lost_deployments")
    queue("deploy").enqueue("app.jobs.reap_lost_deployments")
    client = metrics_app.test_client()
    for _ in range(3):
        assert client.get("/healthz").status_code == 200
    assert client.get("/login").status_code == 200

    response = _scrape(client)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    found = _samples(response.get_data(as_text=True))

    health = (("endpoint", "health.healthz"), ("method", "GET"), ("status", "200"))
    assert found[("slipway_http_request_duration_seconds_count", health)] == 3
    assert (
        found[
            (
                "slipway_http_request_duration_seconds_bucket",
                tuple(sorted((*health, ("le", "+Inf")))),
            )
        ]
        == 3
    )
    assert found[("slipway_http_request_duration_seconds_sum", health)] > 0
    login = (("endpoint", "auth.login_get"), ("method", "GET"), ("status", "200"))
    assert found[("slipway_http_request_duration_seconds_count", login)] == 1

    assert found[("slipway_queue_jobs", (("queue", "default"), ("state", "queued")))] == 1
    assert found[("slipway_queue_jobs", (("queue", "deploy"), ("state", "queued")))] == 2
    assert found[("slipway_queue_jobs", (("queue", "deploy"), ("state", "failed")))] == 0
    assert found[("slipway_workers", ())] == 0

    assert found[("slipway_deployments", (("status", "failed"),))] == 2
    assert found[("slipway_deployments", (("status", "queued"),))] == 1
    failed = (("status", "failed"),)
    assert found[("slipway_deployment_duration_seconds_count", failed)] == 2
    assert found[("slipway_deployment_duration_seconds_sum", failed)] == pytest.approx(705, abs=1)
    assert (
        found[
            ("slipway_deployment_duration_seconds_bucket", tuple(sorted((*failed, ("le", "10.0")))))
        ]
        == 1
    )
    assert (
        found[
            (
                "slipway_deployment_duration_seconds_bucket",
                tuple(sorted((*failed, ("le", "600.0")))),
            )
        ]
        == 1
    )
    assert (
        found[
            (
                "slipway_deployment_duration_seconds_bucket",
                tuple(sorted((*failed, ("le", "1800.0")))),
            )
        ]
        == 2
    )
    running_ = (("status", "running"),)
    assert found[("slipway_deployment_duration_seconds_count", running_)] == 1

    # the scrape itself is counted from the next one on, across processes (Redis)
    again = _samples(_scrape(client).get_data(as_text=True))
    scrape = (("endpoint", "prometheus.scrape"), ("method", "GET"), ("status", "200"))
    assert again[("slipway_http_request_duration_seconds_count", scrape)] == 1


def test_unmatched_paths_share_one_label(metrics_app):
    make_user()
    client = metrics_app.test_client()
    client.get("/no/such/page/1")
    client.get("/no/such/page/2")
    found = _samples(_scrape(client).get_data(as_text=True))
    unmatched = [k for k in found if ("endpoint", "unmatched") in k[1]]
    assert unmatched and all("/no/such" not in str(k) for k in found)


def test_a_team_and_an_app_are_not_needed(metrics_app):
    """A fresh installation scrapes cleanly (empty tables, empty queues)."""
    make_team()
    make_user()
    response = _scrape(metrics_app.test_client())
    assert response.status_code == 200
    assert "slipway_workers 0.0" in response.get_data(as_text=True)

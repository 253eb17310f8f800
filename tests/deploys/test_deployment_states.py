"""Which deployments can be cancelled or rolled back to: derived from the status enum."""

import pytest

from app.extensions import db
from app.models import ACTIVE_STATUSES, FINAL_STATUSES, SERVED_STATUSES, DeploymentStatus
from app.models.deployments import Deployment
from tests.factories import make_app, make_project, team_of


def test_every_status_is_active_or_final_and_served_ones_are_final():
    assert set(ACTIVE_STATUSES) | set(FINAL_STATUSES) == set(DeploymentStatus)
    assert not set(ACTIVE_STATUSES) & set(FINAL_STATUSES)
    assert set(SERVED_STATUSES) <= set(FINAL_STATUSES)


@pytest.mark.parametrize("status", list(DeploymentStatus))
def test_cancel_and_rollback_follow_the_status(status):
    row = Deployment(status=status.value, image_tag="slipway/app:1")
    assert row.can_cancel == (status in ("queued", "building"))
    assert row.can_roll_back == (status in ("running", "replaced"))
    assert not Deployment(status=status.value, image_tag=None).can_roll_back


@pytest.mark.parametrize(
    ("status", "image_tag", "buttons"),
    [
        ("queued", None, ["Cancel"]),
        ("building", None, ["Cancel"]),
        ("running", "slipway/app:1", ["Redeploy this image"]),
        ("replaced", "slipway/app:1", ["Roll back to this"]),
        ("replaced", None, []),
        ("failed", "slipway/app:1", []),
    ],
)
def test_the_status_partial_offers_what_the_row_allows(logged_in, status, image_tag, buttons):
    client, user = logged_in
    application = make_app(make_project(team_of(user)))
    dep = Deployment(application_id=application.id, status=status, image_tag=image_tag)
    db.session.add(dep)
    db.session.commit()
    body = client.get(f"/deployments/{dep.id}", headers={"HX-Request": "true"}).text
    shown = [b for b in ("Cancel", "Redeploy this image", "Roll back to this") if b in body]
    assert shown == buttons

"""Every write through the domain functions is on the team's audit trail (issue 14).

Each case drives one write through the test client as the team's owner, with a valid
form, and checks that exactly one new audit row with the expected action, the team's
id and the owner as actor was added: a domain function that forgets to record (or
records without the team, so the team's Audit log page would not show it) fails here.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app import audit
from app.extensions import db
from app.models import AuditEvent, Deployment
from tests.conftest import Auth, csrf_token
from tests.factories import make_database, make_destination
from tests.security.conftest import _build_team

APP_FORM = {
    "name": "made-here", "description": "audited", "source_type": "image",
    "image": "nginx:1.27", "container_port": "80", "replicas": "1", "health_check_path": "/",
}  # fmt: skip
DOMAIN_FORM = {"host": "audited.example.com", "path_prefix": "/", "https_mode": "off",
               "www": "none"}  # fmt: skip


def _queued(w) -> int:
    row = Deployment(application_id=w.application.id, status="queued", trigger="manual")
    db.session.add(row)
    db.session.commit()
    return row.id


def _certificate_form(w) -> dict:
    import tempfile
    from pathlib import Path

    from tests.proxy.test_cert_upload import OwnCA

    with tempfile.TemporaryDirectory() as folder:
        chain, key = OwnCA(Path(folder)).issue([w.domain.host])
    return {"chain_pem": chain, "key_pem": key}


def _unused_destination(w) -> int:
    # The world's destination is in use by its policy (refused); a second one is not.
    return make_destination(w.team, "http://127.0.0.1:9", "spare").id


def _dest_form(w):
    return {"name": "second", "endpoint_url": "http://127.0.0.1:9", "region": "us-east-1",
            "bucket": "audited-bucket", "prefix": "p", "access_key_id": "id",
            "secret_access_key": "s3-secret", "path_style": "y"}  # fmt: skip


def _policy_form(w):
    return {"name": "audited-policy", "target_type": "postgres",
            "database_url": "postgresql://u:pw@127.0.0.1:5432/db",
            "destination_id": str(w.backup_objects["destination"].id), "cron": "0 2 * * *",
            "keep_local_days": "7", "keep_daily": "30", "keep_weekly": "12",
            "enabled": "y"}  # fmt: skip


def _second_database(w):
    """The world's app is linked to its database already: a second one to link."""
    return {"database_id": str(make_database(w.project, "second-db").id), "prefix": "SECOND"}


def _env(w):
    return w.project.environments[0].id


# (action, path, form) — path and form are callables of the team's world. Restart, apply
# and rollback go through the same ``control.start_deploy`` as "deploy".
CASES = {
    "project created": (audit.Action.PROJECT_CREATED, lambda w: "/projects/new",
                        lambda w: {"name": "audited", "description": ""}),
    "project updated": (audit.Action.PROJECT_UPDATED, lambda w: f"/projects/{w.project.id}/edit",
                        lambda w: {"name": "renamed", "description": "x"}),
    "project deleted": (audit.Action.PROJECT_DELETED,
                        lambda w: f"/projects/{w.project.id}/delete", lambda w: {}),
    "app created": (audit.Action.APP_CREATED, lambda w: f"/projects/{w.project.id}/apps/new",
                    lambda w: APP_FORM | {"environment_id": str(_env(w))}),
    "app updated": (audit.Action.APP_UPDATED, lambda w: f"/apps/{w.application.id}/edit",
                    lambda w: APP_FORM | {"environment_id": str(_env(w)),
                                          "name": w.application.name}),
    "app deleted": (audit.Action.APP_DELETED, lambda w: f"/apps/{w.application.id}/delete",
                    lambda w: {}),
    "env set": (audit.Action.ENV_SET, lambda w: f"/apps/{w.application.id}/env",
                lambda w: {"key": "NEW_KEY", "value": "v"}),
    "env deleted": (audit.Action.ENV_DELETED,
                    lambda w: f"/apps/{w.application.id}/env/{w.plain_var.id}/delete",
                    lambda w: {}),
    "database linked": (audit.Action.DATABASE_LINKED,
                        lambda w: f"/apps/{w.application.id}/databases/link", _second_database),
    "database unlinked": (audit.Action.DATABASE_UNLINKED,
                          lambda w: f"/apps/{w.application.id}/databases/{w.link.id}/unlink",
                          lambda w: {}),
    "deploy": (audit.Action.DEPLOY_STARTED, lambda w: f"/apps/{w.application.id}/deploy",
               lambda w: {}),
    "cancel": (audit.Action.DEPLOY_CANCELLED, lambda w: f"/deployments/{_queued(w)}/cancel",
               lambda w: {}),
    "domain added": (audit.Action.DOMAIN_ADDED, lambda w: f"/apps/{w.application.id}/domains",
                     lambda w: DOMAIN_FORM),
    "domain updated": (audit.Action.DOMAIN_UPDATED,
                       lambda w: f"/apps/{w.application.id}/domains/{w.domain.id}/edit",
                       lambda w: {"path_prefix": "/shop", "https_mode": "off", "www": "none"}),
    "domain removed": (audit.Action.DOMAIN_REMOVED,
                       lambda w: f"/apps/{w.application.id}/domains/{w.domain.id}/remove",
                       lambda w: {}),
    "certificate uploaded": (audit.Action.DOMAIN_CERTIFICATE_UPLOADED,
                             lambda w: f"/apps/{w.application.id}/domains/{w.domain.id}"
                             "/certificate", _certificate_form),
    "deploy key": (audit.Action.DEPLOY_KEY_GENERATED,
                   lambda w: f"/apps/{w.application.id}/git/deploy-key", lambda w: {}),
    "webhook secret": (audit.Action.WEBHOOK_SECRET_ROTATED,
                       lambda w: f"/apps/{w.application.id}/git/secret", lambda w: {}),
    "git token": (audit.Action.GIT_TOKEN_SET, lambda w: f"/apps/{w.application.id}/git/token",
                  lambda w: {"token": "glpat-audited-123456", "user": "oauth2"}),
    "git settings": (audit.Action.APP_GIT_SETTINGS_UPDATED,
                     lambda w: f"/apps/{w.application.id}/git/settings",
                     lambda w: {"watch_paths": "src/**", "deploy_tags": "v*"}),
    "host keys": (audit.Action.GIT_HOST_KEY_FORGOTTEN,
                  lambda w: f"/apps/{w.application.id}/git/host-key/forget", lambda w: {}),
    "destination added": (audit.Action.BACKUP_DESTINATION_SAVED,
                          lambda w: "/backups/destinations/new", _dest_form),
    "destination deleted": (audit.Action.BACKUP_DESTINATION_DELETED,
                            lambda w: f"/backups/destinations/{_unused_destination(w)}/delete",
                            lambda w: {}),
    "policy added": (audit.Action.BACKUP_POLICY_SAVED, lambda w: "/backups/policies/new",
                     _policy_form),
    "policy deleted": (audit.Action.BACKUP_POLICY_DELETED,
                       lambda w: f"/backups/policies/{w.backup_objects['policy'].id}/delete",
                       lambda w: {}),
    "backup run": (audit.Action.BACKUP_STARTED,
                   lambda w: f"/backups/policies/{w.backup_objects['policy'].id}/run",
                   lambda w: {}),
    "drill": (audit.Action.BACKUP_DRILL_STARTED,
              lambda w: f"/backups/policies/{w.backup_objects['policy'].id}/drill", lambda w: {}),
    "channel added": (audit.Action.NOTIFICATION_CHANNEL_SAVED, lambda w: "/notifications/",
                      lambda w: {"name": "ops", "kind": "slack", "events": ["backup.failed"],
                                 "url": "https://127.0.0.1/services/T0/B0/x"}),
    "channel deleted": (audit.Action.NOTIFICATION_CHANNEL_DELETED,
                        lambda w: f"/notifications/{w.backup_objects['channel'].id}/delete",
                        lambda w: {}),
}  # fmt: skip


@pytest.fixture
def owner_world(app, client):
    app.config["OUTBOUND_ALLOWED_HOSTS"] = ("127.0.0.1",)
    world = _build_team("alpha")
    assert Auth(client).login(world.user).status_code == 303
    return world


def _new_events(after_id: int) -> list[AuditEvent]:
    db.session.expire_all()
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.id > after_id)))


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_write_records_its_audit_event_for_the_team(app, client, owner_world, case):
    action, path, form = CASES[case]
    w = owner_world
    url = path(w)
    if case == "project deleted":  # a project with a live database is not deleted
        w.database.status = "deleted"
        db.session.commit()
    token = csrf_token(client, "/")
    last = db.session.scalar(select(AuditEvent.id).order_by(AuditEvent.id.desc())) or 0
    response = client.post(url, data=form(w) | {"csrf_token": token})
    assert response.status_code in (200, 302, 303), (url, response.get_data(as_text=True)[:800])
    found = [e for e in _new_events(last) if e.action == action.value]
    assert len(found) == 1, (case, [e.action for e in _new_events(last)])
    assert found[0].team_id == w.team.id and found[0].user_id == w.user.id
    body = client.get(f"/team/audit?action={action.value}").get_data(as_text=True)
    assert f'id="event-{found[0].id}"' in body  # and the team's page shows it


def test_account_writes_are_recorded_for_the_user(app, client, owner_world):
    """Password and sessions belong to the account, not a team: recorded with the user."""
    w = owner_world
    token = csrf_token(client, "/")
    last = db.session.scalar(select(AuditEvent.id).order_by(AuditEvent.id.desc())) or 0
    client.post("/account/sessions/revoke", data={"csrf_token": token})
    actions = [(e.action, e.user_id) for e in _new_events(last)]
    assert (audit.Action.SESSIONS_REVOKED.value, w.user.id) in actions

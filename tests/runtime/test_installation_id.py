"""The installation id: made with the installation row, filled in for an existing one."""

from __future__ import annotations

import re

from flask_migrate import upgrade
from sqlalchemy import select, text

from app import create_app
from app.extensions import db
from app.models import Installation
from app.runtime import installation
from tests.factories import make_user


def test_setup_makes_a_random_installation_id_and_the_runtime_labels_with_it(app):
    assert installation.current_id() is None  # before setup: nothing to label with
    assert installation.labels() == {}
    make_user()
    made = db.session.scalar(select(Installation.installation_id))
    assert re.fullmatch(r"[0-9a-f]{12}", made)
    assert installation.current_id() == made
    assert installation.labels() == {"slipway.installation": made}
    assert installation.owns({"slipway.app": "1", "slipway.installation": made})
    assert not installation.owns({"slipway.app": "1", "slipway.installation": "0" * 12})
    assert not installation.owns({"com.example": "x"})  # not Slipway's at all


def test_the_migration_gives_an_existing_installation_an_id(base_config, tmp_path):
    flask_app = create_app(base_config | {"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/o.db"})
    with flask_app.app_context():
        upgrade(revision="0004")
        db.session.execute(
            text(
                "INSERT INTO users (id, email, name, password_hash, session_version, created_at)"
                " VALUES (1, 'o@example.com', 'O', 'x', 1, CURRENT_TIMESTAMP)"
            )
        )
        db.session.execute(
            text(
                "INSERT INTO installation (id, owner_id, created_at)"
                " VALUES (1, 1, CURRENT_TIMESTAMP)"
            )
        )
        db.session.commit()
        upgrade()
        filled = db.session.scalar(text("SELECT installation_id FROM installation"))
        assert re.fullmatch(r"[0-9a-f]{12}", filled)
        db.session.remove()
        db.engine.dispose()

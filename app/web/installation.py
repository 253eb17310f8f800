"""Installation admins: the owner names the users who may open the installation pages."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for

from app import access
from app.accounts import installation
from app.forms import InstallationAdminForm

bp = Blueprint("installation", __name__)


def _page(form: InstallationAdminForm, status: int = 200):
    return render_template(
        "installation/admins.html", form=form, users=installation.users(),
        owner_id=installation.owner_id(),
    ), status  # fmt: skip


@bp.get("/server/admins")
def admins_get():
    access.require_installation_owner()
    return _page(InstallationAdminForm(formdata=None))


@bp.post("/server/admins")
def admins_post():
    access.require_installation_owner()
    form = InstallationAdminForm()
    if form.validate():
        try:
            user = installation.set_admin(form.user_id.data, form.change.data == "name")
        except installation.NamingRefused as exc:
            form.user_id.errors = [str(exc)]
        else:
            named = (
                "is now an installation admin"
                if user.installation_admin
                else ("is no longer an installation admin")
            )
            flash(f"{user.email} {named}.", "success")
            return redirect(url_for("installation.admins_get"), 303)
    return _page(form, 422)

"""The dashboard's WTForms, fed from an API body: the API checks a value with the very
rules the page applies (``app.names``, the SSRF check on hosts, the forms' own
``validate``), and hands the domain function the form it takes.

The body is validated by its pydantic model first (types, lengths), then turned into
form data: ``True`` is a checked box, ``False`` and ``None`` are left out (an unchecked
box, an empty field), a list is a repeated field.
"""

from __future__ import annotations

from typing import Any

from werkzeug.datastructures import MultiDict

from app.web.api import base


def formdata(values: dict[str, Any]) -> MultiDict:
    data = MultiDict()
    for name, value in values.items():
        if value is None or value is False:
            continue
        if value is True:
            data.add(name, "y")
        elif isinstance(value, list | tuple):
            for item in value:
                data.add(name, str(item))
        else:
            data.add(name, str(value))
    return data


def _control_characters(values: dict[str, Any]) -> dict[str, str]:
    """Fields holding a NUL or another control character (a database refuses a NUL; no
    setting here needs one): refused before any form sees them."""
    found = {}
    for name, value in values.items():
        items = value if isinstance(value, list | tuple) else [value]
        if any(isinstance(v, str) and any(ord(c) < 32 or ord(c) == 127 for c in v) for v in items):
            found[name] = "Control characters are not allowed here."
    return found


def validated(form_class, values: dict[str, Any], prepare=None, **kwargs):
    """The form filled with ``values`` and validated; a 422 with its errors otherwise.
    ``prepare(form)`` runs before the validation (a view fills choices there)."""
    if refused := _control_characters(values):
        fail_fields(refused)
    form = form_class(formdata=formdata(values), meta={"csrf": False}, **kwargs)
    if prepare is not None:
        prepare(form)
    if not form.validate():
        refuse(form)
    return form


def refuse(form, extra: dict[str, str] | None = None):
    fields = {name: errors[0] for name, errors in form.errors.items() if errors}
    fail_fields(fields | (extra or {}))


def fail_fields(fields: dict[str, str]):
    base.fail(422, "invalid", "Some fields are not valid.", {"fields": fields})

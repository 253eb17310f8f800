"""``/api/docs``: the OpenAPI document as a readable page, rendered here from the same
document (no script, no CDN: every file it uses is the dashboard's own)."""

from __future__ import annotations

import re

from flask import Blueprint, render_template
from markupsafe import Markup, escape

from app.web.api import spec

bp = Blueprint("api_docs", __name__)

METHOD_ORDER = ("get", "post", "put", "patch", "delete")


def _by_tag(document: dict) -> dict[str, list[dict]]:
    tags: dict[str, list[dict]] = {}
    for path, methods in document["paths"].items():
        for method in METHOD_ORDER:
            if method in methods:
                op = methods[method]
                entry = {"method": method.upper(), "path": path, **op}
                tags.setdefault(op["tags"][0], []).append(entry)
    return dict(sorted(tags.items()))


_CODE = re.compile(r"`([^`]+)`")


def _prose(text: str | None) -> Markup:
    """The document's prose with its `code` spans as <code> (escaped first)."""
    return Markup(_CODE.sub(r"<code>\1</code>", str(escape(text or ""))))


def _ref_name(schema: dict | None) -> str | None:
    ref = (schema or {}).get("$ref", "")
    return ref.rsplit("/", 1)[-1] if ref else None


@bp.get("/api/docs")
def page():
    document = spec.document()
    return render_template(
        "api/docs.html", document=document, tags=_by_tag(document), ref_name=_ref_name,
        prose=_prose,
        schemas=document["components"]["schemas"],
    )  # fmt: skip

"""The OpenAPI 3.1 document: valid, complete (every /api/v1 route and nothing else),
served without a key, rendered at /api/docs from the dashboard's own files (issue 15)."""

from __future__ import annotations

import re
import subprocess
import sys

from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from app.config import ROOT
from app.web.api import spec


def _document(client) -> dict:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return response.get_json()


def test_the_document_is_valid_openapi_3_1(client):
    document = _document(client)
    assert document["openapi"].startswith("3.1")
    validate(document)  # raises on the first error, with the validator for its version
    assert [e.message for e in OpenAPIV31SpecValidator(document).iter_errors()] == []


def test_every_api_rule_is_in_the_document_and_nothing_else(app, client):
    document = _document(client)
    in_map = set()
    for rule, method, endpoint in spec.api_rules():
        path, _ = spec._path_of(rule)
        in_map.add((path, method.lower()))
        assert endpoint in spec.OPERATIONS, f"{endpoint} has no spec.operation"
    in_document = {
        (path, method) for path, methods in document["paths"].items() for method in methods
    }
    assert in_map == in_document
    assert len(in_map) >= 2


def test_operation_ids_are_unique_and_every_model_they_name_exists(client):
    document = _document(client)
    ids = [op["operationId"] for methods in document["paths"].values() for op in methods.values()]
    assert len(ids) == len(set(ids))
    schemas = document["components"]["schemas"]
    for op in spec.OPERATIONS.values():
        for name in (op.body, op.query, op.response):
            assert name is None or name in schemas, name
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', str(document).replace("'", '"')))
    assert refs <= set(schemas)


def test_every_operation_documents_the_error_envelope_and_the_key(client):
    document = _document(client)
    assert document["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            error = op["responses"]["401"]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/Error"}, (path, method)
            if method == "post":
                names = {p["name"] for p in op["parameters"]}
                assert "Idempotency-Key" in names, (path, method)
    assert document["paths"]["/api/v1/openapi.json"]["get"]["security"] == []


def test_the_reference_page_lists_every_operation_with_no_outside_file(client):
    document = _document(client)
    page = client.get("/api/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    for methods in document["paths"].values():
        for op in methods.values():
            assert f'id="op-{op["operationId"]}"' in html
    for tag in re.findall(r"<(?:script|link|img)\b[^>]*>", html):
        assert not re.search(r"(src|href)=\"(https?:)?//", tag), tag


def test_start_up_does_not_import_pydantic():
    """The web and worker processes pay for pydantic on the first API request, not at
    start-up (the idle memory budget, bench/idle.py)."""
    code = (
        "import sys\nfrom app import create_app\ncreate_app(migrations=False)\n"
        "print('pydantic' in sys.modules, 'app.web.api.schemas' in sys.modules)"
    )
    env = {"SLIPWAY_DATA_DIR": "/tmp/slipway-import-check", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "False"]


def test_the_reference_page_escapes_the_document_and_shows_code_spans(client, monkeypatch):
    document = {**spec.document(), "info": {**spec.document()["info"],
                "description": "Use `Authorization` <script>alert(1)</script>"}}  # fmt: skip
    monkeypatch.setattr(spec, "document", lambda: document)
    html = client.get("/api/docs").get_data(as_text=True)
    assert "<code>Authorization</code>" in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html

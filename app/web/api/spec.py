"""The OpenAPI 3.1 document, built from the operations the handlers declare.

Each handler declares its operation with :func:`operation` (id, tag, summary, the
access action it needs, and the names of its pydantic models in
``app.web.api.schemas``). The document takes the paths from Flask's ``url_map`` (so a
route cannot be left out of it), the operations from here, and the schemas from
pydantic, whose JSON Schema (draft 2020-12) is OpenAPI 3.1's own.

The models are named, not imported, here: pydantic (9 MiB) is imported on the first
API request or the first read of the document, never at start-up by the web and worker
processes (the idle memory budget, bench/idle.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache

from flask import current_app, request

from app.access import Action

ERROR_STATUSES = {
    400: "Malformed request",
    401: "No key, or a key that is unknown, revoked or expired",
    403: "The key or its member may not do this",
    404: "No such object (or not visible to this key)",
    405: "Method not allowed",
    409: "Conflict with the current state",
    412: "If-Match names an older version",
    413: "Body too large",
    415: "Body is not JSON",
    422: "Invalid fields (details.fields)",
    429: "Rate limited (Retry-After)",
}


@dataclass(frozen=True)
class Operation:
    operation_id: str
    tag: str
    summary: str
    action: Action | None  # what access.can is asked (None: the key's own data)
    body: str | None = None
    query: str | None = None
    response: str | None = None  # None with status 204: no body
    status: int = 200
    stream: bool = False  # text/event-stream
    etag: bool = False
    public: bool = False  # no key needed
    # The answer holds a secret shown this once (a key's token, an invitation link, a
    # signing secret): an Idempotency-Key replay gets a 409 naming what was made instead,
    # so the answer is never kept (app.web.api.conventions).
    shown_once: bool = False
    extra_statuses: tuple[int, ...] = field(default_factory=tuple)
    description: str = ""


OPERATIONS: dict[str, Operation] = {}  # endpoint ("api.<function>") -> operation


def operation(operation_id: str, tag: str, summary: str, action: Action | None, **kwargs):
    """Declare a handler's operation (put it under the ``@bp.get``/``@bp.post`` line)."""

    def declare(view):
        OPERATIONS[f"api.{view.__name__}"] = Operation(operation_id, tag, summary, action, **kwargs)
        return view

    return declare


def current() -> Operation:
    return OPERATIONS[request.endpoint]


def schemas():
    """The pydantic models (imported on first use)."""
    from app.web.api import schemas as module

    return module


_PARAM = re.compile(r"<(?:(\w+):)?(\w+)>")


def _path_of(rule: str) -> tuple[str, list[dict]]:
    params = []
    for converter, name in _PARAM.findall(rule):
        kind = {"int": {"type": "integer", "minimum": 0}}.get(converter, {"type": "string"})
        params.append({"name": name, "in": "path", "required": True, "schema": kind})
    return _PARAM.sub(lambda m: "{" + m.group(2) + "}", rule), params


def api_rules():
    """(rule, method, endpoint) of every ``/api/v1`` route, sorted."""
    found = []
    for rule in current_app.url_map.iter_rules():
        if not rule.endpoint.startswith("api."):
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append((rule.rule, method, rule.endpoint))
    return sorted(found)


def _query_parameters(model_schema: dict) -> list[dict]:
    required = set(model_schema.get("required", []))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": prop}
        for name, prop in model_schema.get("properties", {}).items()
    ]


def _responses(op: Operation) -> dict:
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    responses: dict[str, dict] = {}
    if op.stream:
        responses[str(op.status)] = {
            "description": "Server-Sent Events",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    elif op.response is None:
        responses[str(op.status)] = {"description": "Done"}
    else:
        ref = {"$ref": f"#/components/schemas/{op.response}"}
        answer: dict = {"description": "OK", "content": {"application/json": {"schema": ref}}}
        if op.etag:
            answer["headers"] = {"ETag": {"schema": {"type": "string"}}}
        responses[str(op.status)] = answer
        for status in op.extra_statuses:
            if 200 <= status < 300:  # another success (a deploy's 200 after ?wait=)
                responses[str(status)] = answer
    statuses = (*ERROR_STATUSES, *op.extra_statuses, *((409,) if op.shown_once else ()))
    for status in statuses:
        responses.setdefault(
            str(status), {"description": ERROR_STATUSES.get(status, "Error"), "content": error}
        )
    responses["default"] = {"description": "Unexpected error", "content": error}
    return responses


def _operation_document(op: Operation, method: str, path_params: list[dict], defs: dict) -> dict:
    doc: dict = {
        "operationId": op.operation_id,
        "tags": [op.tag],
        "summary": op.summary,
        "parameters": list(path_params),
        "responses": _responses(op),
    }
    description = op.description
    if op.action is not None:
        description = (description + "\n\n" if description else "") + (
            f"Needs `{op.action.value}` (a role that allows it, and a key scope that holds it)."
        )
    if description:
        doc["description"] = description
    if op.public:
        doc["security"] = []
    if op.query:
        doc["parameters"] += _query_parameters(defs[op.query])
    if op.body:
        doc["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{op.body}"}}
            },
        }
    if method == "POST":
        doc["parameters"].append({
            "name": "Idempotency-Key", "in": "header", "required": False,
            "schema": {"type": "string", "minLength": 1, "maxLength": 200},
            "description": "A retry with the same key gets the first answer again.",
        })  # fmt: skip
    if method in ("PATCH", "PUT", "DELETE") and op.etag:
        doc["parameters"].append({
            "name": "If-Match", "in": "header", "required": False,
            "schema": {"type": "string"}, "description": "412 unless it is the current ETag.",
        })  # fmt: skip
    return doc


def _model_schemas(names: set[str]) -> dict:
    from pydantic.json_schema import models_json_schema

    module = schemas()
    models = [(getattr(module, name), "validation") for name in sorted(names)]
    _, top = models_json_schema(models, ref_template="#/components/schemas/{model}")
    return top.get("$defs", {})


def document() -> dict:
    """The OpenAPI 3.1 document of ``/api/v1``, as a dict (cached per process)."""
    return _document(current_app.config.get("PUBLIC_URL") or "")


@cache
def _document(_base: str) -> dict:
    rules = api_rules()
    names = {"Error"}
    for _, _, endpoint in rules:
        op = OPERATIONS[endpoint]
        names |= {n for n in (op.body, op.query, op.response) if n}
    defs = _model_schemas(names)
    paths: dict[str, dict] = {}
    for rule, method, endpoint in rules:
        path, params = _path_of(rule)
        op = OPERATIONS[endpoint]
        paths.setdefault(path, {})[method.lower()] = _operation_document(op, method, params, defs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Slipway API",
            "version": "1",
            "description": (
                "Every dashboard action, for scripts, CI jobs and the `slipway` command "
                "line. Authenticate with `Authorization: Bearer slw_<id>_<secret>` (a key "
                'from the API keys page). Errors are `{"error": {"code", "message", '
                '"details"}}`; lists are `{"data": [...], "next_cursor": ...}`.'
            ),
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": defs,
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer", "bearerFormat": "slw_<id>_<secret>"}
            },
        },
        "security": [{"apiKey": []}],
    }

"""schemathesis against a live server on loopback (issue 15): every operation of the
OpenAPI document, with a bounded number of generated examples each, on a real team's
objects: no 5xx, and every answer matches the document (status, content type, headers,
body schema).

Streaming operations (Server-Sent Events) are left to tests/api/test_sse.py: a
generated ``follow=true`` would never end. Deletes run last, so the objects the other
operations are given still exist while they run.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from app.web.api import spec
from tests.api.conftest import make_key
from tests.browser.conftest import start_server

pytestmark = pytest.mark.once  # a live server and many requests: one database run

EXAMPLES_PER_OPERATION = 6


@pytest.fixture
def live(base_config, tmp_path_factory, app):
    started = start_server(
        base_config, tmp_path_factory.mktemp("slipway-contract"),
        {"SLIPWAY_API_RATE_LIMIT": "100000 per minute", "SLIPWAY_API_WAIT_MAX_SECONDS": "1"},
    )  # fmt: skip
    yield started
    started.stop()


def _checks():
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    return [
        not_a_server_error, status_code_conformance, content_type_conformance,
        response_headers_conformance, response_schema_conformance,
    ]  # fmt: skip


def _operations(schema):
    found = [result.ok() for result in schema.get_all_operations()]
    streams = {op.operation_id for op in spec.OPERATIONS.values() if op.stream}
    found = [op for op in found if op.definition.raw.get("operationId") not in streams]
    return sorted(found, key=lambda op: op.method.upper() == "DELETE")


def _exercise(operation, base_url: str, headers: dict, path_parameters: dict, failures: list):
    names = {p["name"] for p in operation.definition.raw.get("parameters", []) if p["in"] == "path"}
    fixed = {name: path_parameters[name] for name in names if name in path_parameters}
    strategy = operation.as_strategy(path_parameters=fixed or None)
    checks = _checks()

    @given(case=strategy)
    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))  # fmt: skip
    def run(case):
        response = case.call(base_url=base_url, headers=headers, timeout=15)
        try:
            case.validate_response(response, checks=checks, headers=headers)
        except Exception as exc:  # collect every operation's failure, not just the first
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}"[:1500])

    run()


def test_every_operation_answers_as_documented_with_no_server_error(live, team_a):
    import schemathesis

    _, token = make_key(team_a.user, team_a.team, scopes=["admin"])
    headers = {"Authorization": f"Bearer {token}"}
    schema = schemathesis.openapi.from_url(f"{live.url}/api/v1/openapi.json")
    operations = _operations(schema)
    assert len(operations) >= 1, operations  # the document itself is not among them
    failures: list[str] = []
    ids = {name: str(value) for name, value in team_a.ids().items()}
    ids["key"] = team_a.plain_var.key
    for operation in operations:
        _exercise(operation, live.url, headers, ids, failures)
    assert not failures, "\n\n".join(dict.fromkeys(failures))
    assert "Traceback" not in live.log_tail(), live.log_tail()

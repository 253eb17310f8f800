"""X-Request-Id (issue 15): on every answer, pages too, and in every log line of the
request it belongs to."""

from __future__ import annotations

import logging

from app.web import request_id


def test_log_lines_inside_a_request_carry_its_id_and_outside_a_dash(app, caplog):
    caplog.set_level(logging.INFO)
    with app.test_request_context("/", headers={"X-Request-Id": "from-the-proxy-1"}):
        logging.getLogger("slipway.test").info("inside")
        assert request_id() == "from-the-proxy-1"
    logging.getLogger("slipway.test").info("outside")
    ids = {r.getMessage(): r.request_id for r in caplog.records if r.name == "slipway.test"}
    assert ids == {"inside": "from-the-proxy-1", "outside": "-"}


def test_pages_redirects_and_errors_all_answer_with_an_id(client):
    seen = set()
    for path in ("/login", "/", "/no-such-page", "/api/v1/me", "/healthz"):
        response = client.get(path)
        found = response.headers.get("X-Request-Id")
        assert found and len(found) == 32, (path, response.status_code)
        seen.add(found)
    assert len(seen) == 5  # one per request

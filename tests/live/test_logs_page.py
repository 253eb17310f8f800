"""The Logs page is one of the app's tabs, marked current on itself.

No running deployment here, so the page asks Docker nothing (tests/live/
test_runtime_log.py covers the lines themselves).
"""

from __future__ import annotations

import re

from tests.factories import make_app, make_project, team_of


def _tabs(body: str) -> list[tuple[str, str, bool]]:
    """(label, href, current) of the app's tab bar."""
    nav = re.search(r'<nav class="tabs" aria-label="Application">(.*?)</nav>', body, re.S)
    assert nav, "no tab bar"
    return [
        (label, href, 'aria-current="page"' in attrs)
        for href, attrs, label in re.findall(r'<a href="([^"]+)"([^>]*)>([^<]+)</a>', nav.group(1))
    ]


def test_every_app_tab_links_the_logs_page_and_it_is_current_there(logged_in):
    client, user = logged_in
    app_id = make_app(make_project(team_of(user)), "web").id
    logs = f"/apps/{app_id}/logs"
    for url in (f"/apps/{app_id}", f"/apps/{app_id}/metrics"):
        tabs = _tabs(client.get(url).get_data(as_text=True))
        assert ("Logs", logs, False) in tabs, url
        assert "Logs" not in [label for label, _, current in tabs if current], url
    page = client.get(logs)
    assert page.status_code == 200
    tabs = _tabs(page.get_data(as_text=True))
    assert [label for label, _, current in tabs if current] == ["Logs"]
    assert [label for label, _, _ in tabs] == [
        "Overview",
        "Metrics",
        "Deployments",
        "Logs",
        "Domains",
        "Volumes",
    ]


def test_the_app_page_links_its_logs_once(logged_in):
    """The tab replaces the old Logs button: one link, so it is not announced twice."""
    client, user = logged_in
    app_id = make_app(make_project(team_of(user)), "web").id
    body = client.get(f"/apps/{app_id}").get_data(as_text=True)
    assert body.count(f'href="/apps/{app_id}/logs"') == 1

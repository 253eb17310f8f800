"""The audit trail is append-only: no code in app/ updates or deletes an audit row, but
the retention job (``app.audit._delete_older``, run daily by ``apply_retention``).

The scan reads every module's syntax tree and flags, outside the allowed places:
``update(AuditEvent…)`` / ``delete(AuditEvent…)``; a ``.update(…)`` / ``.delete(…)``
chained on anything built from ``AuditEvent`` (``query(AuditEvent).filter(…).delete()``);
``session.delete(…)`` or an assignment to an audit column (``x.details = …``) in a
function that touches ``AuditEvent``; raw SQL that updates, deletes or truncates
``audit_events``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = {"action", "team_id", "user_id", "target_type", "target_id", "ip", "details",
           "created_at", "id"}  # fmt: skip
ALLOWED = {
    # Retention: the one place that deletes audit rows, in batches.
    ("app/audit.py", "_delete_older", "delete(AuditEvent)"),
    # A flood of failed logins raises one row's ``count`` in its details instead of adding
    # a row per attempt (``audit.record_counted``): the only update, and only of the count
    # of a row written in the same minute.
    ("app/audit.py", "record_counted", "assign .details"),
}
RAW_SQL = re.compile(r"\b(update|delete\s+from|truncate)\b[^;]*\baudit_events\b", re.I | re.S)


def _names(node: ast.AST) -> set[str]:
    found = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            found.add(sub.id)
        elif isinstance(sub, ast.Attribute):
            found.add(sub.attr)
    return found


def _call_name(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _scan_function(path: str, func: ast.AST) -> list[tuple[str, str, str]]:
    name = getattr(func, "name", "<module>")
    touches = "AuditEvent" in _names(func)
    found = []
    for node in ast.walk(func):
        if isinstance(node, ast.Call) and _call_name(node) in ("update", "delete"):
            verb = _call_name(node)
            target = node.args[0] if node.args else None
            if target is not None and "AuditEvent" in _names(target):
                found.append((path, name, f"{verb}(AuditEvent)"))
            elif isinstance(node.func, ast.Attribute) and "AuditEvent" in _names(node.func.value):
                found.append((path, name, f"chained .{verb}() on AuditEvent"))
            elif touches and verb == "delete" and isinstance(node.func, ast.Attribute):
                found.append((path, name, "session.delete in a function touching AuditEvent"))
        elif touches and isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Attribute) and target.attr in COLUMNS:
                    found.append((path, name, f"assign .{target.attr}"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if RAW_SQL.search(node.value):
                found.append((path, name, "raw SQL on audit_events"))
    return found


def scan(path: str, source: str) -> set[tuple[str, str, str]]:
    tree = ast.parse(source)
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    found = set()
    for func in functions:
        found.update(_scan_function(path, func))
    # Module level (outside any function): strings and calls only.
    body = ast.Module(body=[n for n in tree.body if not isinstance(n, ast.FunctionDef)],
                      type_ignores=[])  # fmt: skip
    found.update((p, "<module>", what) for p, _, what in _scan_function(path, body))
    return found


def test_nothing_in_app_updates_or_deletes_audit_rows_but_retention():
    found = set()
    for file in sorted((ROOT / "app").rglob("*.py")):
        path = file.relative_to(ROOT).as_posix()
        found |= scan(path, file.read_text())
    assert found - ALLOWED == set()
    assert ALLOWED <= found, "an allowed place moved: update ALLOWED (and think why)"


def test_the_scan_catches_each_kind_of_write():
    """The scanner itself: each way of changing an audit row is caught."""
    bad = {
        "sa_delete": "def f():\n    db.session.execute(delete(AuditEvent).where(x))\n",
        "sa_update": "def f():\n    db.session.execute(sa.update(AuditEvent).values(ip=None))\n",
        "query": "def f():\n    db.session.query(AuditEvent).filter_by(team_id=1).delete()\n",
        "session": "def f():\n    e = db.session.get(AuditEvent, 1)\n    db.session.delete(e)\n",
        "assign": "def f():\n    e = db.session.get(AuditEvent, 1)\n    e.details = {}\n",
        "raw": "def f():\n    db.session.execute(text('DELETE FROM audit_events WHERE 1'))\n",
        "raw_update": "X = 'update audit_events set ip = null'\n",
    }
    for label, source in bad.items():
        assert scan("app/x.py", source), label
    fine = "def f():\n    db.session.add(AuditEvent(action='x'))\n    app.name = 'y'\n"
    assert scan("app/x.py", fine) == set()

"""The runtime seam: only ``app/runtime`` talks to Docker or speaks in container addresses."""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app"
RUNTIME = APP / "runtime"


def _outside_runtime() -> list[tuple[Path, ast.Module]]:
    found = []
    for path in sorted(APP.rglob("*.py")):
        if RUNTIME not in path.parents:
            found.append((path, ast.parse(path.read_text(), filename=str(path))))
    assert len(found) > 20  # the scan sees the app, not an empty folder
    return found


def _imports_docker(node: ast.AST) -> bool:
    if isinstance(node, ast.Import):
        return any(alias.name.split(".")[0] == "docker" for alias in node.names)
    if isinstance(node, ast.ImportFrom):
        return node.level == 0 and (node.module or "").split(".")[0] == "docker"
    return False


def _builds_address_url(node: ast.AST) -> bool:
    """An f-string ``http://{host}:{port}``: the shape of a URL made from a container IP."""
    if not isinstance(node, ast.JoinedStr):
        return False
    parts = node.values
    for before, value, after in zip(parts, parts[1:], parts[2:], strict=False):
        if (
            isinstance(before, ast.Constant) and str(before.value).endswith("://")
            and isinstance(value, ast.FormattedValue)
            and isinstance(after, ast.Constant) and str(after.value).startswith(":")
        ):  # fmt: skip
            return True
    return False


def test_no_module_outside_the_runtime_imports_docker():
    offenders = [
        f"{path.relative_to(APP.parent)}:{node.lineno}"
        for path, tree in _outside_runtime()
        for node in ast.walk(tree)
        if _imports_docker(node)
    ]
    assert offenders == []


def test_no_module_outside_the_runtime_builds_container_urls():
    offenders = [
        f"{path.relative_to(APP.parent)}:{node.lineno}"
        for path, tree in _outside_runtime()
        for node in ast.walk(tree)
        if _builds_address_url(node)
    ]
    assert offenders == []


def test_the_scans_recognise_what_they_look_for():
    """Each check fires on the code it forbids, so a passing scan means something."""
    tree = ast.parse(
        "import docker\nfrom docker.errors import NotFound\nurl = f'http://{ip}:{port}'\n"
    )
    assert sum(_imports_docker(node) for node in ast.walk(tree)) == 2
    assert sum(_builds_address_url(node) for node in ast.walk(tree)) == 1
    assert not any(_builds_address_url(n) for n in ast.walk(ast.parse("f'http://127.0.0.1:{p}'")))

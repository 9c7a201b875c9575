"""The test suite's own layout: shared helpers come from conftest.py (or a support module beside it),
never from another test module or from bench/, and no test edits sys.path to reach them."""

from __future__ import annotations

import ast

import pytest

from conftest import ROOT

TESTS = ROOT / "tests"


def imported_modules(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted(TESTS.glob("*.py")), ids=lambda p: p.name)
def test_no_test_module_imports_another_or_bench(path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    bad = sorted(m for m in imported_modules(tree) if m.split(".")[0].startswith("test_") or m.split(".")[0] in ("bench", "tests"))
    assert not bad, f"{path.name} imports {bad}: put shared helpers in tests/conftest.py, product logic in the package"
    touches_path = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                    and node.attr == "path" and isinstance(node.value, ast.Name) and node.value.id == "sys"]
    assert not touches_path, f"{path.name}: sys.path used at lines {touches_path}; import helpers from conftest instead"

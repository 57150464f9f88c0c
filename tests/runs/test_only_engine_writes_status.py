"""The engine is the only writer of run status: no other module may assign it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENGINE_MODULES = set((ROOT / "runs" / "engine").glob("*.py"))
WRITE_METHODS = {"update", "create", "bulk_create", "get_or_create", "update_or_create", "bulk_update"}


def status_writes(tree: ast.AST) -> list[int]:
    """Line numbers that assign a `status` attribute or pass status= to a write method."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            lines += [t.lineno for t in targets if isinstance(t, ast.Attribute) and t.attr == "status"]
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in WRITE_METHODS:
            lines += [node.lineno for kw in node.keywords if kw.arg == "status"]
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in {"Run", "RunAttempt"}:
            lines += [node.lineno for kw in node.keywords if kw.arg == "status"]
    return lines


def project_modules() -> list[Path]:
    files = [ROOT / "example_tasks.py"]
    for package in ("runs", "api", "dashboard"):
        files += [p for p in (ROOT / package).rglob("*.py") if "migrations" not in p.parts]
    return files


def test_no_module_but_the_engine_writes_run_status() -> None:
    offenders = {
        str(path.relative_to(ROOT)): lines
        for path in project_modules()
        if path not in ENGINE_MODULES and (lines := status_writes(ast.parse(path.read_text())))
    }
    assert offenders == {}


def test_the_check_catches_a_status_assignment() -> None:
    sneaky = "run.status = 'COMPLETED'\nRun.objects.filter(pk=1).update(status='FAILED')\n"
    assert status_writes(ast.parse(sneaky)) == [1, 2]


def test_the_engine_does_write_status() -> None:
    assert any(status_writes(ast.parse(path.read_text())) for path in ENGINE_MODULES)

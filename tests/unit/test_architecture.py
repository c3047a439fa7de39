"""The layering rule: flows -> tasks -> winnow, and winnow/ (but cli.py) runs without Prefect."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORE = sorted(p for p in (ROOT / "winnow").glob("*.py") if p.name != "cli.py")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_core_modules_never_import_prefect_tasks_or_flows():
    offenders = {
        p.name: sorted(_imports(p) & {"prefect", "prefect_aws", "prefect_dask", "tasks", "flows"})
        for p in CORE
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_tasks_never_import_flows_except_parameters():
    for path in (ROOT / "tasks").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("flows"):
                assert node.module == "flows.params", f"{path.name} imports {node.module}"


def test_importing_the_core_does_not_load_prefect():
    modules = ", ".join(f"winnow.{p.stem}" for p in CORE if p.stem != "__init__")
    code = f"import sys, {modules}; print('prefect' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"

"""The layers: entry points (CLI) -> flows -> tasks -> winnow, for whole folders, no exceptions."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ORCHESTRATION = {"prefect", "prefect_aws", "prefect_dask", "typer"}
# What each layer may not import: anything above it (and the core: no orchestrator at all).
FORBIDDEN = {
    "winnow": ORCHESTRATION | {"tasks", "flows"},
    "tasks": {"flows"},
    "flows": set(),
}


def _modules(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Top-level packages a module imports (relative imports resolved to their package)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: stays inside its own top-level package
                names.add(_module_name(path).split(".")[0])
            elif node.module:
                names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_imports_run_one_way(layer):
    modules = _modules(layer)
    assert modules, f"no modules under {layer}/"
    offenders = {str(p.relative_to(ROOT)): sorted(_imports(p) & FORBIDDEN[layer]) for p in modules}
    assert {k: v for k, v in offenders.items() if v} == {}


def _imports_cli(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "flows":
            if any(a.name == "cli" for a in node.names):
                return True
        elif isinstance(node, ast.ImportFrom) and node.module == "flows.cli":
            return True
        elif isinstance(node, ast.Import) and any(a.name == "flows.cli" for a in node.names):
            return True
    return False


def test_the_cli_is_an_entry_point_nothing_imports():
    modules = [p for folder in FORBIDDEN for p in _modules(folder)]
    assert [str(p.relative_to(ROOT)) for p in modules if _imports_cli(p)] == []


def test_every_core_module_imports_without_prefect():
    names = [_module_name(p) for p in _modules("winnow")]
    assert any("." in n.removeprefix("winnow.") for n in names), "subpackages are checked too"
    code = f"import sys\nfor m in {names!r}: __import__(m)\nprint('prefect' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


MAX_LINES = 60  # a flow reads as a table of contents; a task is an adapter around one core call


@pytest.mark.parametrize("layer", ["flows", "tasks"])
def test_flows_and_tasks_hold_no_function_of_60_lines_or_more(layer):
    long = []
    for path in _modules(layer):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines >= MAX_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.name} ({lines} lines)")
    assert long == [], "move the logic into winnow/ (or a helper): " + ", ".join(long)


def test_flows_call_no_core_function_between_their_tasks():
    # A flow module calls tasks (and the `tasks` layer's helpers), never a `winnow` function:
    # what it takes from `winnow` are types (records, parameter models), which it may build.
    for path in _modules("flows"):
        if path.name in ("cli.py", "__init__.py"):
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        core = {
            alias.asname or alias.name
            for node in tree.body
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("winnow")
            for alias in node.names
        }
        bodies = [
            ast.Module(body=fn.body, type_ignores=[])
            for fn in tree.body
            if isinstance(fn, ast.FunctionDef)  # decorators (e.g. documented_by) run at import
        ]
        calls = []
        for node in (n for body in bodies for n in ast.walk(body)):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Name) and func.id in core:
                calls.append(func.id)
            elif isinstance(func, ast.Attribute) and getattr(func.value, "id", None) in core:
                calls.append(f"{func.value.id}.{func.attr}")
        functions = [c for c in calls if c.rsplit(".", 1)[-1][:1].islower()]
        assert functions == [], f"{path.relative_to(ROOT)} calls the core: {functions}"

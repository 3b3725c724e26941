"""The package's shape: no import cycles between its modules."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "nested_learning"


def _modules(package: Path) -> dict[str, Path]:
    return {".".join(p.relative_to(package.parent).with_suffix("").parts).removesuffix(".__init__"): p for p in package.rglob("*.py")}


def _imports(package: Path) -> dict[str, set[str]]:
    """module -> the package modules it imports anywhere: at module level, in TYPE_CHECKING blocks and in
    functions (an import deferred to a function still ties the two modules together).

    `from a import b` imports the module a.b when there is one, else a name of module a.
    """
    modules = _modules(package)
    graph = {}
    for name, path in modules.items():
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module for a in node.names}
            elif isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
        graph[name] = {m for m in imported if m in modules and m != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[str]:
    """Every simple cycle once, written from its alphabetically first module."""
    cycles = set()
    for start in graph:
        stack = [[start]]
        while stack:
            path = stack.pop()
            for module in graph[path[-1]]:
                if module == start:
                    cycles.add(" -> ".join(path + [start]))
                elif module not in path and module > start:
                    stack.append(path + [module])
    return sorted(cycles)


def test_no_module_imports_itself_through_others():
    assert _cycles(_imports(PACKAGE)) == []


def test_the_cycle_check_sees_an_import_inside_a_function(tmp_path):
    """Two modules that import each other, one of them only inside a function (as report.py and summary.py once did)."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "summary.py").write_text("from pkg import report\n")
    (package / "report.py").write_text("def table():\n    from pkg.summary import METRICS\n")
    assert _cycles(_imports(package)) == ["pkg.report -> pkg.summary -> pkg.report"]


def _pins(lock: str) -> list[str]:
    lines = (PACKAGE.parent / lock).read_text().splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


def test_the_gpu_lock_is_the_cpu_lock_with_the_cuda_build_of_torch():
    """make venv-gpu pins what make venv pins: a dependency added to one lock and not the other fails here."""
    cpu = _pins("requirements.lock")
    assert "torch==2.13.0+cpu" in cpu
    assert _pins("requirements-gpu.lock") == ["torch==2.13.0" if pin == "torch==2.13.0+cpu" else pin for pin in cpu]

"""The package's shape (docs/architecture.md): no import cycles between its modules, every module on the
page's map, and analysis/ free of torch."""
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


MAPPED = ("cli", "run", "analysis")  # the subpackages whose every module has its line on docs/architecture.md


def test_the_architecture_page_places_every_module():
    """A module added at the package's top or in cli/, run/ or analysis/ gets a place on the map."""
    page = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    entries = [p.name + ("/" if p.is_dir() else "") for p in PACKAGE.iterdir()
               if p.name != "__init__.py" and (p.suffix == ".py" or (p / "__init__.py").is_file())]
    entries += [f"{package}/{p.name}" for package in MAPPED for p in (PACKAGE / package).glob("*.py") if p.name != "__init__.py"]
    assert "analysis/summary.py" in entries and "train.py" in entries and "data/" in entries
    assert [e for e in entries if f"`{e}`" not in page and f"  {e} " not in page] == []


def _third_party(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
    return names


def test_reading_runs_needs_no_torch():
    """scripts/summarize.py reads a sweep through analysis/: nothing it reaches imports torch or Lightning."""
    graph, modules = _imports(PACKAGE), _modules(PACKAGE)
    reached = {m for m in graph if m.startswith("nested_learning.analysis.")}
    frontier = set(reached)
    while frontier:
        frontier = {n for m in frontier for n in graph[m]} - reached
        reached |= frontier
    heavy = {m: sorted(_third_party(modules[m]) & {"torch", "pytorch_lightning", "lightning"}) for m in reached}
    assert {m: names for m, names in heavy.items() if names} == {}


def _pins(lock: str) -> list[str]:
    lines = (PACKAGE.parent / lock).read_text().splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


def test_the_gpu_lock_is_the_cpu_lock_with_the_cuda_build_of_torch():
    """make venv-gpu pins what make venv pins: a dependency added to one lock and not the other fails here."""
    cpu = _pins("requirements.lock")
    assert "torch==2.13.0+cpu" in cpu
    assert _pins("requirements-gpu.lock") == ["torch==2.13.0" if pin == "torch==2.13.0+cpu" else pin for pin in cpu]

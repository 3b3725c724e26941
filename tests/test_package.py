"""The package's shape: no import cycles between its modules."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "nested_learning"


def _module_level_imports() -> dict[str, set[str]]:
    """module -> the package modules it imports at module level (TYPE_CHECKING blocks included)."""
    modules = {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        statements = []
        for node in ast.parse(path.read_text()).body:
            statements += node.body if isinstance(node, ast.If) else [node]
        imported = set()
        for node in statements:
            if isinstance(node, ast.ImportFrom) and node.module:
                imported |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
        graph[name] = {m for m in imported if m in modules and m != name}
    return graph


def test_no_module_imports_itself_through_others():
    graph = _module_level_imports()
    cycles = []
    for start in graph:
        stack = [[start]]
        while stack:
            path = stack.pop()
            for module in graph[path[-1]]:
                if module == start:
                    cycles.append(" -> ".join(path + [start]))
                elif module not in path:
                    stack.append(path + [module])
    assert cycles == []


def _pins(lock: str) -> list[str]:
    lines = (PACKAGE.parent / lock).read_text().splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


def test_the_gpu_lock_is_the_cpu_lock_with_the_cuda_build_of_torch():
    """make venv-gpu pins what make venv pins: a dependency added to one lock and not the other fails here."""
    cpu = _pins("requirements.lock")
    assert "torch==2.13.0+cpu" in cpu
    assert _pins("requirements-gpu.lock") == ["torch==2.13.0" if pin == "torch==2.13.0+cpu" else pin for pin in cpu]

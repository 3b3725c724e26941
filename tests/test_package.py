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

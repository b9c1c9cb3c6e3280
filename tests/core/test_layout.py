"""The package's shape, held to what ``personahub_dagster/core/__init__.py`` promises: each package of
the core imports only the packages before it on the data's path, the core imports nothing of Dagster,
no two modules import each other (directly or round a longer loop), and no module grows past ~300
lines."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "personahub_dagster"
ORDER = ["config", "storage", "llm", "instructions", "lake", "stages", "hub", "evaluation"]
ALLOWED = {
    "config": set(),
    "storage": {"config"},
    "llm": {"config", "storage"},
    "instructions": {"config"},
    "lake": {"config", "storage", "llm", "instructions"},
    "stages": {"config", "storage", "llm", "instructions", "lake"},
    "hub": {"config", "storage", "lake"},
    "evaluation": set(ORDER) - {"evaluation"},
}
MAX_LINES = 320


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Modules of this package that ``path`` imports anywhere (functions too), except for type checking."""
    tree = ast.parse(path.read_text())
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for n in ast.walk(node))
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.startswith("personahub_dagster"):
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names)  # `from pkg import module`
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("personahub_dagster"))
    return found


def _graph() -> dict[str, set[str]]:
    files = {_module(p): p for p in PACKAGE.rglob("*.py")}
    return {m: {i for i in _imports(p) if i in files and i != m} for m, p in files.items()}


def test_each_core_package_imports_only_the_packages_before_it():
    wrong = []
    for module, imported in _graph().items():
        parts = module.split(".")
        if len(parts) < 4 or parts[1] != "core":
            continue
        for target in imported:
            tparts = target.split(".")
            package = tparts[2] if len(tparts) > 2 and tparts[1] == "core" else None
            if package not in (None, parts[2]) and package not in ALLOWED[parts[2]]:
                wrong.append(f"{module} -> {target}")
    assert wrong == []
    assert sorted(ALLOWED) == sorted(ORDER)


def test_the_core_imports_nothing_of_dagster():
    offenders = [
        str(p.relative_to(PACKAGE))
        for p in (PACKAGE / "core").rglob("*.py")
        for node in ast.walk(ast.parse(p.read_text()))
        if (
            isinstance(node, ast.Import)
            and any(a.name.split(".")[0] in ("dagster", "dagster_ray") for a in node.names)
        )
        or (
            isinstance(node, ast.ImportFrom)
            and (node.module or "").split(".")[0] in ("dagster", "dagster_ray")
        )
    ]
    assert offenders == []


def test_no_module_imports_itself_round_a_loop():
    graph = _graph()
    index, low, stack, on_stack, loops = {}, {}, [], set(), []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                loops.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    assert loops == []


def test_no_module_is_past_300_lines_or_so():
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}

"""The package's structure, read from its source (nothing is imported or run).

* no import cycles between modules;
* no imports inside functions, except lazy imports of optional heavy libraries;
* modules reach each other through their own modules, never through a package's
  face (``from jaxreplica import ...`` / ``import jaxreplica``), except the
  ``__init__`` files that re-export;
* no module over 400 lines.
"""

from __future__ import annotations

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "jaxreplica"
LAZY_ALLOWED = ("matplotlib", "tqdm", "IPython", "ipywidgets")
MAX_LINES = 400


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _absolute(module: str, path: pathlib.Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _targets(module: str, path: pathlib.Path, node) -> list[str]:
    """The package's modules an import statement names (a ``from X import y`` of a
    submodule ``y`` names ``X.y``)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = _absolute(module, path, node)
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
    return sorted({n for n in names if n in MODULES})


def _graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports, wherever the import stands."""
    graph = {}
    for module, path in MODULES.items():
        nodes = [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, (ast.Import, ast.ImportFrom))]
        graph[module] = {t for node in nodes for t in _targets(module, path, node)} - {module}
    return graph


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node, trail):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(trail[trail.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles


def test_imports_only_at_module_level_except_lazy_optional_libraries():
    found = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    names = [_absolute(module, path, node)]
                else:
                    continue
                bad = [n for n in names if n.split(".")[0] not in LAZY_ALLOWED]
                if bad:
                    found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {bad}")
    assert not found, sorted(set(found))


def test_modules_do_not_import_through_the_package_face():
    found = []
    for module, path in MODULES.items():
        if path.name == "__init__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and not node.level and node.module == "jaxreplica":
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
            if isinstance(node, ast.Import) and any(a.name == "jaxreplica" for a in node.names):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert not found, found


def test_no_module_over_400_lines():
    long = {}
    for path in MODULES.values():
        n = len(path.read_text().splitlines())
        name = str(path.relative_to(PACKAGE))
        if n > MAX_LINES:
            long[name] = n
    assert not long, long


def test_the_structure_test_sees_the_package():
    graph = _graph()
    assert "jaxreplica.training.loop" in graph and "jaxreplica.solvers" in graph["jaxreplica.batched"]
    assert "jaxreplica.experiments.figure2.replica" in graph["jaxreplica.experiments.figure2.compare"]

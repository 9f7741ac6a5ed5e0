"""The shape of the code, checked from its imports (every ``import``, inside functions too):
imports run one way down the floors, no module or package is part of an import circle, no
private name is imported from another module of ours, and no file passes 300 lines.

Floors, bottom up (docs/architecture.md): impls/spec, the framework translations, weights_bridge,
the conformance engine, its CLI; the tests sit on top."""
from __future__ import annotations

import ast

import pytest

from conformance.launch import REPO

PACKAGES = ("impls", "weights_bridge", "fid", "conformance")
FLOORS = (("impls.spec",), ("impls",), ("weights_bridge",), ("fid",), ("conformance",), ("conformance.cli",),
          ("conformance.tests",))
MAX_LINES = 300


def _modules():
    out = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


MODULES = _modules()


def _resolve(module, node):
    """The module an import statement names (relative imports resolved), and the names it takes."""
    if isinstance(node, ast.Import):
        return [(alias.name, None) for alias in node.names]
    base = node.module or ""
    if node.level:
        package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{base}" if base else package
    return [(base, alias.name) for alias in node.names]


def _ours(name):
    """The module of ours ``name`` refers to (a package's submodule if it names one), or None."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports():
    """{module: {(imported module of ours, name taken or None)}}."""
    graph = {}
    for module, path in MODULES.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target, name in _resolve(module, node):
                    sub = f"{target}.{name}" if name else target
                    ours = _ours(sub if sub in MODULES else target)
                    if ours and ours != module:
                        edges.add((ours, name if sub not in MODULES else None))
        graph[module] = edges
    return graph


GRAPH = imports()


def floor(module):
    """The floor of the longest prefix that names ``module``'s package."""
    matches = [(len(p), i) for i, prefixes in enumerate(FLOORS) for p in prefixes
               if module == p or module.startswith(p + ".")]
    return max(matches)[1]


def _cycles(edges):
    """Strongly connected components with more than one member (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in list(edges):
        if v not in index:
            visit(v)
    return out


def test_imports_run_down_the_floors():
    upward = [f"{m} -> {t}" for m, edges in GRAPH.items() for t, _ in edges if floor(t) > floor(m)]
    assert not upward, upward


def test_no_module_import_circles():
    edges = {m: {t for t, _ in e} for m, e in GRAPH.items()}
    assert not _cycles(edges), _cycles(edges)


def test_no_package_import_circles():
    """Folders too: one package's modules never import back from a package importing them."""
    package = lambda m: m if MODULES[m].name == "__init__.py" else m.rpartition(".")[0]
    edges = {}
    for m, e in GRAPH.items():
        for t, _ in e:
            a, b = package(m), package(t)
            if a != b and not a.startswith(b + "."):  # a package's own parents hold it: not an arrow
                edges.setdefault(a, set()).add(b)
    assert not _cycles(edges), _cycles(edges)


def test_no_private_names_across_modules():
    private = [f"{m} imports {t}.{name}" for m, e in GRAPH.items() for t, name in e
               if name and name.startswith("_") and not name.startswith("__")]
    assert not private, private


@pytest.mark.parametrize("path", sorted(MODULES.values()), ids=lambda p: str(p.relative_to(REPO)))
def test_no_file_past_300_lines(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES


def test_the_longest_first_order_names_test_files_that_exist():
    """A renamed test file would drop out of the order silently and might start last."""
    from pathlib import Path

    from .conftest import LONGEST_FIRST

    here = Path(__file__).parent
    assert len(set(LONGEST_FIRST)) == len(LONGEST_FIRST)
    assert [n for n in LONGEST_FIRST if not (here / n).is_file()] == []

"""The package's dependency direction, checked: the MMD core stands alone, and the whole import
graph (function-level imports included) follows the layer table that README.md states."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

import gmmn

MMD_DIR = Path(gmmn.__file__).parent / "mmd"


def _gmmn_imports(path: Path) -> list[str]:
    """Absolute ``gmmn...`` module names imported anywhere in ``path`` (relative imports stay
    inside the package they are written in)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names if a.name.split(".")[0] == "gmmn"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] == "gmmn":
                names.append(node.module)
    return names


def test_mmd_core_imports_nothing_else_from_the_package_statically():
    files = sorted(MMD_DIR.glob("*.py"))
    assert {f.name for f in files} >= {"__init__.py", "_kernels.py", "_blocked.py", "_perm.py"}
    outside = {f.name: [m for m in _gmmn_imports(f) if not m.startswith("gmmn.mmd")]
               for f in files}
    assert not any(outside.values()), outside


@pytest.mark.slow
def test_importing_the_mmd_core_loads_no_other_gmmn_module():
    code = ("import sys, gmmn.mmd; print(sorted(m for m in sys.modules if m.startswith('gmmn.')"
            " and not m.startswith('gmmn.mmd')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_a_planted_import_is_found(tmp_path):
    # the static check must be able to fail: an absolute import of the package is caught
    planted = tmp_path / "x.py"
    planted.write_text("from gmmn.config import TrainConfig\nimport gmmn.data\nfrom . import y\n")
    assert _gmmn_imports(planted) == ["gmmn.config", "gmmn.data"]


# --- The whole package's import graph against the README's layer table --------------------
#
# The checker functions take their inputs (a package directory, a layer table) as arguments, so
# that the planted tests below run the very code that checks the real package.

SRC = Path(gmmn.__file__).parent
README = Path(__file__).resolve().parents[1] / "README.md"
LAYERS_MARKER = "<!-- layers -->"

Layers = Sequence[Sequence[str]]
Edges = Mapping[str, Mapping[str, int]]


@dataclass(frozen=True)
class ImportGraph:
    """Which module imports which, from the source alone (nothing is imported to build it)."""

    edges: dict[str, dict[str, int]]  # importer -> {imported module: first line importing it}
    unresolved: list[str]  # "module:line" of each import_module call the AST cannot resolve


def parse_layers(markdown: str) -> list[list[str]]:
    """The fenced block after ``LAYERS_MARKER``: one layer a line, top first; ``#`` comments.

    The table lives in the README so that the order people read is the order that is tested.
    """
    _, marker, rest = markdown.partition(LAYERS_MARKER)
    block = re.match(r"\s*```[^\n]*\n(.*?)^```", rest, flags=re.S | re.M)
    if not marker or not block:
        raise ValueError(f"no fenced block after {LAYERS_MARKER!r}")
    layers = [names for line in block.group(1).splitlines()
              if (names := line.split("#")[0].split())]
    entries = [name for names in layers for name in names]
    repeated = sorted({name for name in entries if entries.count(name) > 1})
    if repeated:
        raise ValueError(f"named in more than one place: {repeated}")
    return layers


def layer_of(module: str, layers: Layers) -> int | None:
    """Index (0 = top) of the layer whose entry is the longest prefix of ``module``.

    An entry covers itself and everything under it, except a dotless one (the top package):
    that is the package's ``__init__`` only, else it would cover every module.
    """
    best: tuple[int, int] | None = None  # (entry length, layer index)
    for index, names in enumerate(layers):
        for name in names:
            covers = module == name or ("." in name and module.startswith(name + "."))
            if covers and (best is None or len(name) > best[0]):
                best = (len(name), index)
    return None if best is None else best[1]


def module_files(root: Path) -> dict[str, Path]:
    """Module name -> file for every ``.py`` under ``root``, whose directory names the package."""
    files = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        files[".".join((root.name, *parts))] = path
    return files


def _in_package(name: str, top: str) -> bool:
    return name == top or name.startswith(top + ".")


def _submodule_or_base(base: str, name: str, modules: set[str]) -> str:
    """``from base import name`` imports the submodule ``base.name`` when there is one."""
    return f"{base}.{name}" if f"{base}.{name}" in modules else base


def _from_base(node: ast.ImportFrom, package: str, top: str) -> str | None:
    """The absolute module a ``from ... import`` reads from, or None outside the package."""
    if node.level == 0:
        return node.module if node.module and _in_package(node.module, top) else None
    parts = package.split(".")
    if node.level > len(parts):
        return None
    base = ".".join(parts[:len(parts) - node.level + 1])
    return f"{base}.{node.module}" if node.module else base


def _module_name_literals(tree: ast.Module, top: str) -> dict[str, set[str]]:
    """Names bound to literals holding module names: module-level assignments, and for-loop
    targets over those, which is how a registry of modules (a dict, a tuple) gets imported."""
    found: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            strings = {c.value for c in ast.walk(node.value) if isinstance(c, ast.Constant)
                       and isinstance(c.value, str) and _in_package(c.value, top)}
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name) and strings:
                    found[target.id] = strings
    for node in ast.walk(tree):
        if (isinstance(node, (ast.For, ast.comprehension)) and isinstance(node.target, ast.Name)
                and isinstance(node.iter, ast.Name) and node.iter.id in found):
            found.setdefault(node.target.id, set()).update(found[node.iter.id])
    return found


def _dynamic_targets(call: ast.Call, literals: dict[str, set[str]], top: str) -> set[str] | None:
    """Modules an ``import_module(...)`` call may load; None when the source does not say."""
    if not call.args:
        return None
    arg = call.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        if arg.value.startswith("."):
            return None
        return {arg.value} if _in_package(arg.value, top) else set()
    names = {n.id for n in ast.walk(arg) if isinstance(n, ast.Name)}
    return set().union(*(literals[n] for n in names if n in literals)) or None


def _is_import_module(node: ast.AST) -> bool:
    func = node.func if isinstance(node, ast.Call) else None
    return (isinstance(func, ast.Attribute) and func.attr == "import_module"
            or isinstance(func, ast.Name) and func.id == "import_module")


def _file_imports(module: str, path: Path, modules: set[str],
                  top: str) -> tuple[dict[str, int], list[str]]:
    """Every module ``path`` imports, at any depth: function bodies, try/except and ``if
    TYPE_CHECKING:`` included (a type-only import is still a dependency of the layer)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    literals = _module_name_literals(tree, top)
    edges: dict[str, int] = {}
    unresolved: list[str] = []
    for node in ast.walk(tree):
        targets: set[str] | None = set()
        if isinstance(node, ast.Import):
            targets = {a.name for a in node.names if _in_package(a.name, top)}
        elif isinstance(node, ast.ImportFrom):
            base = _from_base(node, package, top)
            if base is not None:
                targets = {_submodule_or_base(base, a.name, modules) for a in node.names}
        elif _is_import_module(node):
            targets = _dynamic_targets(node, literals, top)
        if targets is None:
            unresolved.append(f"{module}:{node.lineno}")
        for target in (targets or set()) - {module}:
            edges[target] = min(edges.get(target, node.lineno), node.lineno)
    return edges, unresolved


def import_graph(root: Path) -> ImportGraph:
    """The import graph of the package in ``root``, every file read as source."""
    files = module_files(root)
    edges: dict[str, dict[str, int]] = {}
    unresolved: list[str] = []
    for module, path in files.items():
        edges[module], missed = _file_imports(module, path, set(files), root.name)
        unresolved += missed
    return ImportGraph(edges, sorted(unresolved))


def unplaced(modules: Iterable[str], layers: Layers) -> list[str]:
    """Modules no entry of the table covers: nobody has decided where they sit."""
    return sorted(m for m in modules if layer_of(m, layers) is None)


def layer_violations(edges: Edges, layers: Layers) -> list[str]:
    """``a -> b (layer i imports layer j; line n)`` for each import of a higher layer, the
    layers numbered from 1 at the top of the table. Unplaced modules are left to unplaced()."""
    found = []
    for importer, targets in sorted(edges.items()):
        i = layer_of(importer, layers)
        for target, line in sorted(targets.items()):
            j = layer_of(target, layers)
            if i is not None and j is not None and j < i:
                found.append(f"{importer} -> {target} (layer {i + 1} imports layer {j + 1};"
                             f" line {line})")
    return found


def _tangles(edges: Edges) -> list[list[str]]:
    """Strongly connected components of two or more modules (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in edges.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            members = stack[stack.index(node):]
            del stack[stack.index(node):]
            if len(members) > 1:
                found.append(sorted(members))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(found)


def _shortest_cycle(start: str, members: set[str], edges: Edges) -> list[str]:
    """A shortest cycle from ``start`` back to it inside one tangle (breadth first)."""
    paths = {start: [start]}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for nxt in sorted(edges.get(node, {})):
            if nxt == start:
                return paths[node]
            if nxt in members and nxt not in paths:
                paths[nxt] = paths[node] + [nxt]
                queue.append(nxt)
    raise AssertionError(f"{start} is in no cycle")  # cannot happen inside a tangle


def cycles(edges: Edges) -> list[list[str]]:
    """One cycle, in import order, per tangle of mutually importing modules."""
    return [_shortest_cycle(t[0], set(t), edges) for t in _tangles(edges)]


def _describe(cycle: list[str], edges: Edges) -> str:
    tangle = next(t for t in _tangles(edges) if cycle[0] in t)
    more = f" (tangle of {len(tangle)}: {', '.join(tangle)})" if len(tangle) > len(cycle) else ""
    return " -> ".join([*cycle, cycle[0]]) + more


@pytest.fixture(scope="module")
def layers() -> list[list[str]]:
    return parse_layers(README.read_text())


@pytest.fixture(scope="module")
def graph() -> ImportGraph:
    return import_graph(SRC)


def test_the_readme_states_the_layer_table(layers):
    assert len(layers) >= 2, layers
    outside = [n for names in layers for n in names if not _in_package(n, SRC.name)]
    assert not outside, f"README layer table names modules outside the package: {outside}"


def test_every_module_is_placed_in_a_layer(layers):
    missing = unplaced(module_files(SRC), layers)
    assert not missing, ("modules in no layer; add each to the layer table in README.md "
                         f"(after {LAYERS_MARKER!r}): {missing}")


def test_every_dynamic_import_is_resolved(graph):
    assert not graph.unresolved, ("import_module calls whose module the source does not name "
                                  f"(use a literal or a module-level table): {graph.unresolved}")


def test_the_import_graph_has_no_cycle(graph):
    found = [_describe(c, graph.edges) for c in cycles(graph.edges)]
    assert not found, "import cycles:\n" + "\n".join(found)


def test_every_import_respects_the_layer_order(graph, layers):
    found = layer_violations(graph.edges, layers)
    assert not found, ("imports of a higher layer (layers numbered from the top of the README "
                       "table):\n" + "\n".join(found))


# --- The checker can fail: planted packages ----------------------------------------------------

def _plant(tmp_path: Path, files: dict[str, str]) -> Path:
    """A fake package ``fake`` under ``tmp_path``: relative path -> source."""
    root = tmp_path / "fake"
    for name, source in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(source))
    return root


def test_a_planted_upward_import_in_a_function_body_is_caught(tmp_path):
    root = _plant(tmp_path, {
        "__init__.py": "",
        "top.py": "X = 1\n",
        "low.py": """\
            def f():
                try:
                    from fake.top import X
                except ImportError:
                    X = 0
                return X
            """,
    })
    table = [["fake"], ["fake.top"], ["fake.low"]]
    assert layer_violations(import_graph(root).edges, table) == [
        "fake.low -> fake.top (layer 3 imports layer 2; line 3)"]
    assert layer_violations(import_graph(root).edges, [["fake"], ["fake.low", "fake.top"]]) == []


def test_a_planted_cycle_is_caught_in_order(tmp_path):
    root = _plant(tmp_path, {
        "__init__.py": "",
        "a.py": "from . import b\n",
        "b.py": "def g():\n    from .c import h\n",
        "c.py": "import fake.a\nimport fake.d\n",
        "d.py": "",
    })
    edges = import_graph(root).edges
    assert cycles(edges) == [["fake.a", "fake.b", "fake.c"]]
    assert _describe(cycles(edges)[0], edges) == "fake.a -> fake.b -> fake.c -> fake.a"
    assert cycles({**edges, "fake.c": {"fake.d": 1}}) == []


def test_the_graph_resolves_every_import_form(tmp_path):
    root = _plant(tmp_path, {
        "__init__.py": """\
            import importlib
            _EXPORTS = {"Top": "fake.top"}
            def __getattr__(name):
                return getattr(importlib.import_module(_EXPORTS[name]), name)
            """,
        "top.py": "from fake import sub\nfrom fake.sub import mod, NAME\n",
        "reg.py": """\
            from importlib import import_module
            MODS: tuple[str, ...] = ("fake.sub.mod",)
            def load(which):
                for name in MODS:
                    import_module(name)
                import_module("fake.top")
                import_module(which)
            """,
        "sub/__init__.py": "NAME = 1\n",
        "sub/mod.py": """\
            from typing import TYPE_CHECKING
            from .. import top
            from . import NAME
            if TYPE_CHECKING:
                from ..reg import load
            """,
    })
    graph = import_graph(root)
    assert {m: sorted(t) for m, t in graph.edges.items()} == {
        "fake": ["fake.top"], "fake.top": ["fake.sub", "fake.sub.mod"],
        "fake.reg": ["fake.sub.mod", "fake.top"], "fake.sub": [],
        "fake.sub.mod": ["fake.reg", "fake.sub", "fake.top"]}
    assert graph.unresolved == ["fake.reg:7"]


def test_a_planted_unplaced_module_is_reported_and_the_longest_entry_wins(tmp_path):
    root = _plant(tmp_path, {"__init__.py": "", "run/__init__.py": "", "run/x.py": "",
                             "loop.py": "", "stray.py": ""})
    table = [["fake"], ["fake.run"], ["fake.loop", "fake.run.x"]]
    assert unplaced(module_files(root), table) == ["fake.stray"]
    assert [layer_of(m, table) for m in ("fake", "fake.run", "fake.run.x", "fake.runx")] == \
        [0, 1, 2, None]
    with pytest.raises(ValueError, match="more than one"):
        parse_layers(f"{LAYERS_MARKER}\n```text\nfake\nfake.run fake # x\n```\n")
    assert parse_layers(f"{LAYERS_MARKER}\n\n```text\na  # top\n\nb c\n```\n") == \
        [["a"], ["b", "c"]]

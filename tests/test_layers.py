"""Layering of the package, checked on the source with :mod:`ast`.

The ground floor (``constants``, ``errors``, ``crypto/``, ``esp/``, ``nat``,
``recovery``, ``dpd``, ``config/model``) must not import from the protocol core
(``pyipsec.ikev2``) or the daemon; and the modules inside ``pyipsec/ikev2`` must
not import each other in a cycle.  Imports are counted wherever they are written,
at module level and inside functions; only imports under ``if TYPE_CHECKING:``
are left out, as they never run.
"""

from __future__ import annotations

import ast
import enum
import inspect
import itertools
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

import pyipsec.constants
import pyipsec.errors
import pyipsec.ikev2.constants
import pyipsec.ikev2.errors

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "pyipsec"

#: Modules (or packages, with every module under them) of the ground floor.
GROUND_FLOOR = (
    "pyipsec.crypto",
    "pyipsec.esp",
    "pyipsec.nat",
    "pyipsec.recovery",
    "pyipsec.dpd",
    "pyipsec.constants",
    "pyipsec.errors",
    "pyipsec.config.model",
    "pyipsec.pools",
)
FORBIDDEN = ("pyipsec.ikev2", "pyipsec.daemon")


def module_name(path: Path, root: Path = SRC) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules(pkg: Path = PKG) -> dict[str, Path]:
    return {module_name(p, pkg.parent): p for p in sorted(pkg.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk_runtime(node: ast.AST) -> Iterator[ast.AST]:
    """Every node below ``node`` except the bodies of ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                yield other
                yield from _walk_runtime(other)
            continue
        yield child
        yield from _walk_runtime(child)


_IMPORT_FUNCS = ("import_module", "__import__")


def imports_of(
    source: str, name: str, is_package: bool, known: Mapping[str, object]
) -> list[tuple[str, int]]:
    """(imported module, line) for every runtime import in ``source``.

    ``from X import a`` counts as an import of ``X.a`` when that is a module in
    ``known``, else of ``X``.  ``importlib.import_module("X")`` with a literal
    string counts as an import of ``X``.
    """
    out: list[tuple[str, int]] = []
    package = name if is_package else name.rpartition(".")[0]
    for node in _walk_runtime(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.append((sub if sub in known else base, node.lineno))
        elif (
            isinstance(node, ast.Call)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (isinstance(node.func, ast.Name) and node.func.id in _IMPORT_FUNCS)
            )
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            out.append((node.args[0].value, node.lineno))
    return out


def import_graph(modules: Mapping[str, Path]) -> dict[str, dict[str, int]]:
    """module -> {imported module: first line} for every module in ``modules``."""
    graph: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        edges: dict[str, int] = {}
        for target, line in imports_of(
            path.read_text(), name, path.name == "__init__.py", modules
        ):
            edges.setdefault(target, line)
        graph[name] = edges
    return graph


def find_cycle(graph: Mapping[str, Mapping[str, int]], within: str) -> list[str] | None:
    """The first import cycle among the modules named ``within`` or below, or None.

    Returned as ``[a, b, ..., a]``; a module importing itself is not counted.
    """

    def inside(mod: str) -> bool:
        return mod == within or mod.startswith(within + ".")

    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(mod: str) -> list[str] | None:
        state[mod] = 1
        stack.append(mod)
        for nxt in sorted(graph.get(mod, {})):
            if not inside(nxt) or nxt not in graph or nxt == mod:
                continue
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        stack.pop()
        state[mod] = 2
        return None

    for mod in sorted(graph):
        if inside(mod) and mod not in state and (cycle := visit(mod)) is not None:
            return cycle
    return None


def describe(cycle: list[str], graph: Mapping[str, Mapping[str, int]]) -> str:
    return " -> ".join(
        f"{a} (line {graph[a][b]})" for a, b in itertools.pairwise(cycle)
    ) + f" -> {cycle[-1]}"


# --- the graph code itself ------------------------------------------------------------


def test_relative_and_function_level_imports_are_resolved() -> None:
    known = {"pyipsec.ikev2.sa": 0, "pyipsec.ikev2.exchanges.child": 0}
    source = (
        "from typing import TYPE_CHECKING\n"
        "from ..constants import EncrId\n"
        "if TYPE_CHECKING:\n"
        "    from ..ikev2.sa import IkeSa\n"
        "def f() -> None:\n"
        "    from ..ikev2.exchanges import child\n"
        "    import importlib\n"
        "    importlib.import_module('pyipsec.daemon.runtime')\n"
    )
    got = imports_of(source, "pyipsec.crypto.encr", False, known)
    assert ("pyipsec.constants", 2) in got
    assert ("pyipsec.ikev2.exchanges.child", 6) in got
    assert ("pyipsec.daemon.runtime", 8) in got
    assert all(target != "pyipsec.ikev2.sa" for target, _ in got)  # TYPE_CHECKING only


def test_package_relative_import_resolves_from_the_package() -> None:
    got = imports_of("from .sa import IkeSa\n", "pyipsec.ikev2", True, {})
    assert got == [("pyipsec.ikev2.sa", 1)]


def test_find_cycle_names_the_cycle() -> None:
    graph = {
        "p.a": {"p.b": 3},
        "p.b": {"p.c": 7, "q.x": 1},
        "p.c": {"p.a": 11},
        "p.d": {"p.d": 2},
    }
    cycle = find_cycle(graph, "p")
    assert cycle == ["p.a", "p.b", "p.c", "p.a"]
    assert describe(cycle, graph) == "p.a (line 3) -> p.b (line 7) -> p.c (line 11) -> p.a"
    assert find_cycle({"p.a": {"p.b": 1}, "p.b": {}}, "p") is None
    assert find_cycle(graph, "q") is None


# --- the package ----------------------------------------------------------------------


def _ground_floor_violations() -> list[str]:
    modules = all_modules()
    graph = import_graph(modules)
    bad: list[str] = []
    for mod, edges in sorted(graph.items()):
        if not any(mod == g or mod.startswith(g + ".") for g in GROUND_FLOOR):
            continue
        for target, line in sorted(edges.items()):
            if any(target == f or target.startswith(f + ".") for f in FORBIDDEN):
                bad.append(f"{modules[mod].relative_to(SRC)}:{line} imports {target}")
    return bad


def test_ground_floor_is_scanned() -> None:
    graph = import_graph(all_modules())
    for ground in GROUND_FLOOR:
        assert any(m == ground or m.startswith(ground + ".") for m in graph), ground


def test_ground_floor_does_not_import_the_core_or_the_daemon() -> None:
    assert _ground_floor_violations() == []


def test_no_import_cycle_inside_ikev2() -> None:
    graph = import_graph(all_modules())
    cycle = find_cycle(graph, "pyipsec.ikev2")
    assert cycle is None, "import cycle: " + describe(cycle, graph)


# --- the historical import paths still work ----------------------------------------


@pytest.mark.parametrize(
    ("ground", "shim"),
    [(pyipsec.constants, pyipsec.ikev2.constants), (pyipsec.errors, pyipsec.ikev2.errors)],
)
def test_ikev2_modules_re_export_the_ground_floor(ground: object, shim: object) -> None:
    public = {
        n
        for n, v in vars(ground).items()
        if not n.startswith("_")
        and getattr(v, "__module__", ground.__name__) == ground.__name__  # type: ignore[attr-defined]
        and (inspect.isclass(v) or inspect.isfunction(v) or isinstance(v, int | bytes))
        and n != "E"
    }
    assert public, "nothing found to compare"
    assert set(shim.__all__) == public  # type: ignore[attr-defined]
    for n in public:
        assert getattr(shim, n) is getattr(ground, n), n
    assert issubclass(pyipsec.ikev2.constants.NotifyType, enum.IntEnum)

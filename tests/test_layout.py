"""The package's shape: modules of one concern and a bounded size, layers that import only
the layers below them (no cycle, not even through an import inside a function), sans-IO
cores that never touch trio, and a public API whose every name says what it is."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import triosock

PACKAGE = Path(triosock.__file__).parent
#: The longest a module may be, in lines.
MAX_LINES = 600
#: The public tiers.
TIERS = ["triosock", "triosock.hub", "triosock.chat", "triosock.services"]


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


MODULES = dict(_modules())


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(name: str, source: str, *, is_package: bool) -> set[str]:
    """Every module ``name`` imports when it runs: at the top, in functions, in branches;
    not what an ``if TYPE_CHECKING:`` block names (read by type checkers only)."""
    tree = ast.parse(source, name)
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for branch in node.orelse:
                visit(branch)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            for alias in node.names:
                submodule = f"{module}.{alias.name}"
                found.add(submodule if submodule in MODULES else module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


GRAPH = {
    name: _imports(name, path.read_text(), is_package=path.name == "__init__.py")
    for name, path in MODULES.items()
}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_is_over_600_lines(name: str) -> None:
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name}: {lines} lines"


def test_no_import_cycle_not_even_inside_functions() -> None:
    # Tarjan's strongly connected components over the modules of the package.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(GRAPH[node] & MODULES.keys()):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in GRAPH[node]:
                cycles.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            connect(node)
    assert cycles == []


def test_the_graph_sees_imports_inside_functions_and_not_type_checking_ones() -> None:
    # The check above is only as good as its reading of the source: an import inside a
    # function (where cycles hide) counts; one for type checkers only does not.
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from .tcp import TCPServer\n"
        "def f():\n    from .udp import server\n    import trio\n"
    )
    found = _imports("triosock._transport.websocket", source, is_package=False)
    assert found == {"typing", "triosock._transport.udp.server", "trio"}


def test_the_sans_io_cores_never_import_trio() -> None:
    sansio = sorted(name for name in MODULES if name.startswith("triosock._sansio"))
    assert sansio
    seen: set[str] = set()
    todo = list(sansio)
    while todo:  # everything they import, transitively, within the package
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += [target for target in GRAPH[name] if target in MODULES]
    outside = {target for name in seen for target in GRAPH[name] if target not in MODULES}
    assert not any(
        target == "trio" or target.startswith(("trio.", "outcome", "h11", "websockets"))
        for target in outside
    ), sorted(outside)
    assert all(not name.startswith("triosock._transport") for name in seen), sorted(seen)


def _public_names() -> Iterator[tuple[str, str, object]]:
    for tier in TIERS:
        module = importlib.import_module(tier)
        for name in module.__all__:
            yield tier, name, getattr(module, name)


@pytest.mark.parametrize("tier", TIERS)
def test_every_tier_imports_and_lists_what_it_exports(tier: str) -> None:
    module = importlib.import_module(tier)
    assert module.__doc__
    assert sorted(module.__all__) == sorted(set(module.__all__))
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{tier}.{name}"


def test_every_public_class_and_function_has_a_docstring() -> None:
    missing = []
    for tier, name, obj in _public_names():
        if (inspect.isclass(obj) or inspect.isfunction(obj)) and not (obj.__doc__ or "").strip():
            missing.append(f"{tier}.{name}")
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if attr.startswith("_") or not (
                    inspect.isfunction(member) or isinstance(member, property)
                ):
                    continue
                if not (inspect.getdoc(getattr(obj, attr)) or "").strip():
                    missing.append(f"{tier}.{name}.{attr}")
    assert missing == []


def test_the_private_modules_are_not_tiers() -> None:
    # Every public name lives in a private module and is re-exported by one tier only.
    owners: dict[int, list[str]] = {}
    for tier, name, obj in _public_names():
        if inspect.isclass(obj) or inspect.isfunction(obj):
            owners.setdefault(id(obj), []).append(f"{tier}.{name}")
            assert obj.__module__.split(".")[1].startswith("_"), f"{tier}.{name}"
    assert [names for names in owners.values() if len(names) > 1] == []


def test_every_module_of_the_package_imports() -> None:
    for info in pkgutil.walk_packages([str(PACKAGE)], "triosock."):
        if info.name.endswith("__main__"):
            continue
        if info.name.endswith("_redis") or info.name == "triosock._redis":
            pytest.importorskip("coredis")
        importlib.import_module(info.name)


@pytest.mark.parametrize(
    "made_by_a_server",
    [
        triosock.TCPServer,
        triosock.TCPConnection,
        triosock.UDPServer,
        triosock.UDPPeer,
        triosock.WebSocketServer,
        triosock.WebSocketPeer,
    ],
)
def test_what_a_server_makes_has_no_public_constructor(made_by_a_server: type) -> None:
    with pytest.raises(
        TypeError, match=rf"^triosock\.{made_by_a_server.__name__} has no public constructor: "
    ):
        made_by_a_server()

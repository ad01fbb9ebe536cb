"""
The code's shape, measured (#28's targets): the largest class and the longest function in ``rehook_sdk/``, import
circles between its modules, imports that run back up its layers (`LAYERS`), private attributes of other objects
touched by package code, and the lines of tests that import private modules or read private fields. ``python
benchmarks/layout.py`` prints the table; tests/test_layout.py holds each figure at or below where the code is, so it
only moves down.

Counted from the syntax tree: a class or function spans its first to last line (decorators excluded, docstrings
and comments included); "private" is a name with one leading underscore; ``x._y`` counts where ``x`` is not
``self``, ``type(self)``, ``cls`` or a module of the package itself, and is not one of the declared `SEAMS`.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "rehook_sdk"
TESTS = ROOT / "tests"


# The private attributes of other objects that package code touches on purpose (module, expression): why each one
# is there. The figure counts every other touch; a new seam is declared here, with its reason, or not at all.
SEAMS = {
    ("rehook_sdk._client.client", "client._engine"): "delivery_engine(): the package's declared seam into a client's "
    "delivery engine (the command line, the sync client's exit report, tests)",
    ("rehook_sdk._client.client", "client._after_fork"): "reset_if_forked(): the sync client resets the client it "
    "wraps after a fork that skipped os.register_at_fork's hooks",
    ("rehook_sdk._exit", "drain._drain_at_exit"): "the exit drain's protocol; private so that it is no public method "
    "of the clients",
    **{
        (module, "asyncio._get_running_loop"): "asyncio exports it (asyncio.events.__all__): the running loop or "
        "None, in C, without raising; the hot path asks it once per call"
        for module in ("rehook_sdk._client.client", "rehook_sdk._delivery.handle", "rehook_sdk._report.outcome_log")
    },
    ("rehook_sdk._transports.aiohttp", "session._loop"): "aiohttp has no other way to ask which loop a session "
    "belongs to (ClientSession.loop warns that it is deprecated and returns this)",
    ("rehook_sdk._transports.aiohttp", "connector._factory"): "the answer-head limits on aiohttp connections "
    "(_sniff_heads); tests/security/test_hostile_servers.py fails if aiohttp changes it",
}


# The layers, top to bottom (DEVELOPERS.md's map): a module may import its own layer and the layers below it.
LAYERS = (
    ("rehook_sdk", "rehook_sdk.__main__"),
    ("rehook_sdk._cli",),
    ("rehook_sdk.integrations",),
    ("rehook_sdk.testing",),
    ("rehook_sdk.outbox",),
    ("rehook_sdk._client",),
    ("rehook_sdk._exit",),
    ("rehook_sdk._delivery",),
    ("rehook_sdk._durable",),
    ("rehook_sdk._report",),
    ("rehook_sdk._transports",),
    ("rehook_sdk._mapping",),
    ("rehook_sdk._core",),
)


class Figures(NamedTuple):
    largest_class: tuple[int, str]
    longest_function: tuple[int, str]
    circles: list[list[str]]
    upward: list[tuple[str, str]]
    private_touches: int
    test_private_lines: int


def _modules(folder: Path) -> Iterator[tuple[str, Path, ast.Module]]:
    for path in sorted(folder.rglob("*.py")):
        parts = path.relative_to(folder.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, path, ast.parse(path.read_text(encoding="utf-8"), str(path))


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _spans(tree: ast.Module, kinds: tuple[type[ast.AST], ...]) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, kinds):
            assert isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            end = node.end_lineno if node.end_lineno is not None else node.lineno
            yield end - node.lineno + 1, node.name


def _imports(name: str, path: Path, tree: ast.Module, names: set[str]) -> set[str]:
    """
    The package's modules that ``name`` imports, anywhere in it (a function-level import counts too);
    ``from . import _exit`` imports the module ``_exit``, not the package's ``__init__``.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("rehook_sdk"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            if module.startswith("rehook_sdk"):
                submodules = {f"{module}.{alias.name}" for alias in node.names} & names
                found.update(submodules or {module})
                if len(submodules) < len(node.names):
                    found.add(module)
    return found


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
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
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _module_names(tree: ast.Module, name: str, path: Path, names: set[str]) -> set[str]:
    """The names that ``name`` binds to modules of the package (``from . import _exit`` binds ``_exit``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                module = ".".join([*base[: len(base) - node.level + 1], *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            bound.update(alias.asname or alias.name for alias in node.names if f"{module}.{alias.name}" in names)
        elif isinstance(node, ast.Import):
            bound.update(alias.asname for alias in node.names if alias.asname and alias.name in names)
    return bound


def _layer(module: str) -> int:
    """The index in `LAYERS` of the layer ``module`` belongs to (the most specific prefix that names it)."""
    found = [
        (len(prefix), index)
        for index, prefixes in enumerate(LAYERS)
        for prefix in prefixes
        if module == prefix or module.startswith(prefix + ".")
    ]
    if not found:
        raise ValueError(f"{module} is in no layer of benchmarks/layout.py's LAYERS")
    return max(found)[1]


def _upward(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """The imports that run back up: from a module to one of a layer above its own."""
    return sorted(
        (source, target) for source, targets in graph.items() for target in targets if _layer(target) < _layer(source)
    )


def _private_touches(tree: ast.Module, name: str, modules: set[str]) -> Iterator[ast.Attribute]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            owner = node.value
            if isinstance(owner, ast.Name) and (owner.id in ("self", "cls") or owner.id in modules):
                continue
            if ast.unparse(owner) == "type(self)" or (name, ast.unparse(node)) in SEAMS:
                continue
            yield node


def measure() -> Figures:
    parsed = list(_modules(PACKAGE))
    names = {name for name, _, _ in parsed}
    classes = [span for _, _, tree in parsed for span in _spans(tree, (ast.ClassDef,))]
    functions = [span for _, _, tree in parsed for span in _spans(tree, (ast.FunctionDef, ast.AsyncFunctionDef))]
    graph = {
        name: {m for m in _imports(name, path, tree, names) if m in names and m != name} for name, path, tree in parsed
    }
    touches = sum(
        1 for name, path, tree in parsed for _ in _private_touches(tree, name, _module_names(tree, name, path, names))
    )
    test_lines: set[tuple[str, int]] = set()
    for name, _, tree in _modules(TESTS):
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rehook_sdk"):
                parts = [*(node.module or "").split("."), *(alias.name for alias in node.names)]
                if any(_private(part) for part in parts):  # `from rehook_sdk import _router` too
                    test_lines.add((name, node.lineno))
            elif isinstance(node, ast.Attribute) and _private(node.attr):
                owner = node.value
                if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
                    test_lines.add((name, node.lineno))
    return Figures(max(classes), max(functions), _circles(graph), _upward(graph), touches, len(test_lines))


def main() -> int:
    figures = measure()
    rows = [
        ("largest class in rehook_sdk/ (lines)", f"{figures.largest_class[0]} ({figures.largest_class[1]})", "<= 300"),
        (
            "longest function (lines)",
            f"{figures.longest_function[0]} ({figures.longest_function[1]})",
            "<= 60",
        ),
        ("import circles", f"{len(figures.circles)} {figures.circles or ''}".strip(), "0"),
        ("imports that run back up the layers", f"{len(figures.upward)} {figures.upward or ''}".strip(), "0"),
        (
            "private attributes of another object touched, package code (outside SEAMS)",
            str(figures.private_touches),
            "0",
        ),
        ("test lines importing private modules or reading private fields", str(figures.test_private_lines), "seams"),
    ]
    width = max(len(row[0]) for row in rows)
    for figure, now, target in rows:
        print(f"{figure:<{width}}  {now:<40}  target {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

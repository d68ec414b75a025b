"""The package's modules import one another without a cycle, the package root included."""

import ast
from pathlib import Path

import mnist_clip

PACKAGE = Path(mnist_clip.__file__).parent
ROOT = "__init__"


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that a file imports, anywhere in it (lazy imports inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "mnist_clip":
            parts = node.module.split(".")
            if len(parts) > 1:
                found.add(parts[1])
            else:  # from mnist_clip import x: a module of the package, or a name from its root
                found.update(alias.name if alias.name in modules else ROOT for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[1] for alias in node.names
                         if alias.name.startswith("mnist_clip."))
    return found


def import_graph() -> dict[str, set[str]]:
    modules = {path.stem for path in PACKAGE.glob("*.py")}
    return {path.stem: imported_modules(path, modules) - {path.stem} for path in PACKAGE.glob("*.py")}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, done = [], set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            found.append(path[path.index(module):] + [module])
            return
        if module in done:
            return
        for imported in sorted(graph.get(module, ())):
            visit(imported, path + [module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_of_the_package_imports_another_in_a_cycle():
    graph = import_graph()
    assert {"plots", "time_plots", "figures", "training", "api", ROOT} <= set(graph)
    assert cycles(graph) == []

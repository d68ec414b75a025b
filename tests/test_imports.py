"""The package's modules import one another without a cycle, the package root included, and
none is much over 500 lines."""

import ast
from pathlib import Path

import mnist_clip

PACKAGE = Path(mnist_clip.__file__).parent
ROOT = "mnist_clip"
MAX_LINES = 500


def module_name(path: Path) -> str:
    """mnist_clip, mnist_clip.api, mnist_clip.viz (a subpackage's __init__), mnist_clip.viz.compare."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def resolved(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    """The absolute module of `from X import ...`, relative imports included."""
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that a file imports, anywhere in it (lazy imports inside functions too).
    `from package import name` imports the submodule `name` when there is one, else the package."""
    importer = module_name(path)
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            module = resolved(node, importer, path.name == "__init__.py")
            if module.split(".")[0] != ROOT:
                continue
            for alias in node.names:
                found.add(f"{module}.{alias.name}" if f"{module}.{alias.name}" in modules else module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == ROOT)
    # importing a.b.c runs the subpackage a.b first (the root is already loading: no edge to it
    # unless a name is taken from it, as `from mnist_clip import __version__` does)
    implied = {parent for name in found for parent in parents(name)[1:]} - set(parents(importer))
    return (found | implied) & modules - {importer}


def parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(path) for path in sources()}
    graph = {}
    for path in sources():
        graph[module_name(path)] = imported_modules(path, modules)
    return graph


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


def test_relative_and_package_imports_are_resolved(tmp_path):
    package = tmp_path / "mnist_clip"
    (package / "viz").mkdir(parents=True)
    (package / "viz" / "__init__.py").write_text("from .compare import compare_figure\n")
    (package / "viz" / "compare.py").write_text("from ..runs import Run\nfrom mnist_clip import viz\n")
    (package / "runs.py").write_text("import mnist_clip.viz.compare\n")
    global PACKAGE
    saved, PACKAGE = PACKAGE, package
    try:
        graph = import_graph()
    finally:
        PACKAGE = saved
    assert graph["mnist_clip.viz"] == {"mnist_clip.viz.compare"}
    assert graph["mnist_clip.viz.compare"] == {"mnist_clip.runs", "mnist_clip.viz"}
    assert graph["mnist_clip.runs"] == {"mnist_clip.viz", "mnist_clip.viz.compare"}
    assert ["mnist_clip.runs", "mnist_clip.viz", "mnist_clip.viz.compare", "mnist_clip.runs"] in cycles(graph)


def test_no_module_of_the_package_imports_another_in_a_cycle():
    graph = import_graph()
    assert {"mnist_clip.api", ROOT} <= set(graph)
    assert cycles(graph) == []


def test_no_module_is_much_over_500_lines():
    lengths = {module_name(path): len(path.read_text().splitlines()) for path in sources()}
    assert {name: n for name, n in lengths.items() if n > MAX_LINES * 1.1} == {}


def test_no_module_of_the_package_root_is_named_as_a_public_function():
    """`import mnist_clip.x.y` sets the root's attribute x to the module: a module named `train`
    would put itself in the place of mc.train."""
    modules = {path.stem for path in PACKAGE.glob("*.py")} | {path.parent.name for path in PACKAGE.glob("*/__init__.py")}
    assert set(mnist_clip.__all__) & modules == set()
    assert {"train", "compare", "sweep", "cures", "demo"} <= set(mnist_clip.__all__)

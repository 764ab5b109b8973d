"""The house reads as the pipeline (issue 13): no import circle, few levels, files and functions of a readable size.

Measured by ``scripts/house.py`` on the source as text (nothing is imported), every import counting: at module
level, inside functions and under ``if TYPE_CHECKING:``. A subpackage (``solve/``, ``distributed/``,
``formats/``) is one node from outside and is measured among its own modules too.
"""

import ast
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "torchlinreg"
MAX_LEVELS = 7  # from the command (cli.py) down; ``python -m torchlinreg``'s two-line __main__.py sits above it


@pytest.fixture(scope="module")
def house():
    spec = importlib.util.spec_from_file_location("house", ROOT / "scripts" / "house.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    paths = sorted(SRC.rglob("*.py"))
    names = {path: module.module_name(path, SRC) for path in paths}
    trees = {path: ast.parse(path.read_text(encoding="utf-8")) for path in paths}
    imports = {names[p]: module.imported_modules(trees[p], names[p], p.name == "__init__.py", set(names.values()))
               for p in paths}
    return module, paths, trees, module.graphs(imports, SRC.name)


def test_no_import_circle(house):
    module, _, _, graphs = house
    assert {package: module.circles(graph) for package, graph in graphs.items() if module.circles(graph)} == {}


def test_the_command_stands_on_few_levels(house):
    module, _, _, graphs = house
    top = graphs["torchlinreg"]
    assert top["torchlinreg.__main__"] == {"torchlinreg.cli"}
    below_cli = {name: targets for name, targets in top.items() if name != "torchlinreg.__main__"}
    chain = module.longest_chain(below_cli)
    assert len(chain) <= MAX_LEVELS, " -> ".join(chain)
    for package, graph in graphs.items():
        if package != "torchlinreg":
            assert len(module.longest_chain(graph)) <= 5, package


def test_files_and_functions_read_in_one_sitting(house):
    module, paths, trees, _ = house
    big = {p.name: n for p in paths if (n := len(p.read_text(encoding="utf-8").splitlines())) > module.MAX_LINES}
    assert big == {}
    long = [(p.name, f, n) for p in paths for f, _, n in module.long_functions(trees[p]) if n > module.MAX_FUNCTION_LINES]
    assert long == []


def test_no_exported_name_is_a_module_name():
    # importing a submodule sets it as the package's attribute: a function exported under the same name as its
    # module (tl.ols from ols.py) would turn into the module once anything imports that module
    import pkgutil

    import torchlinreg

    modules = {info.name for info in pkgutil.iter_modules(torchlinreg.__path__)}
    assert sorted(set(torchlinreg.__all__) & modules) == []

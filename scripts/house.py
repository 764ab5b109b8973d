"""How the house reads: import circles, import depth, long modules and long functions.

Reads ``src/torchlinreg`` with ``ast`` (nothing is imported) and prints

* import circles between modules. Every import counts: at module level, inside functions and
  under ``if TYPE_CHECKING:`` (an annotation is a dependency a reader follows too).
* import depth: the longest chain of imports, as levels. A subpackage such as ``solve/`` is one
  node from outside; its inner modules are measured among themselves.
* modules over ``MAX_LINES`` lines and functions over ``MAX_FUNCTION_LINES`` lines
  (``end_lineno - lineno + 1``; a nested def counts separately, and its lines count in its parent too).

Usage: ``python scripts/house.py [SRC_DIR]`` (default: ``src/torchlinreg`` beside this script).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

MAX_LINES = 500
MAX_FUNCTION_LINES = 60


def module_name(path: Path, root: Path) -> str:
    """``torchlinreg.solve.rank`` for ``root/solve/rank.py``; a package's ``__init__`` is the package."""
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(tree: ast.Module, name: str, is_package: bool, modules: set[str]) -> set[str]:
    """The modules of ``modules`` that ``tree`` imports anywhere (functions and conditionals included)."""
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            base = (f"{base}.{node.module}" if node.module else base) if node.level else node.module
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # 'a.b.c' imports the deepest known module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def longest_chain(graph: dict[str, set[str]]) -> list[str]:
    """The longest import chain, a circle counted as one node (its members joined by '|')."""
    groups = {v: "|".join(c) for c in circles(graph) for v in c}
    node = {v: groups.get(v, v) for v in graph}
    dag: dict[str, set[str]] = {n: set() for n in node.values()}
    for v, targets in graph.items():
        dag[node[v]] |= {node[w] for w in targets} - {node[v]}
    chain: dict[str, list[str]] = {}

    def deepest(n):
        if n not in chain:
            below = [deepest(m) for m in sorted(dag[n])]
            chain[n] = [n] + max(below, key=len, default=[])
        return chain[n]

    return max((deepest(n) for n in sorted(dag)), key=len, default=[])


def graphs(imports: dict[str, set[str]], top: str) -> dict[str, dict[str, set[str]]]:
    """The import graph of ``top``'s members (a subpackage one node), and one per subpackage of its own members."""
    packages = {top} | {m for m in imports if any(other.startswith(m + ".") for other in imports)}
    found = {}
    for package in sorted(packages):
        def node(module: str) -> str:  # the member of ``package`` that holds ``module``
            return module if module == package else f"{package}.{module[len(package) + 1:].split('.')[0]}"

        members = {m for m in imports if m == package or m.startswith(package + ".")}
        graph: dict[str, set[str]] = {node(m): set() for m in members}
        for module in members:
            graph[node(module)] |= {node(t) for t in imports[module] & members} - {node(module)}
        found[package] = graph
    return found


def long_functions(tree: ast.Module) -> list[tuple[str, int, int]]:
    """(qualified name, first line, length) of every def, nested ones included."""
    found = []

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    found.append((name, child.lineno, child.end_lineno - child.lineno + 1))
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return found


def main(argv: list[str]) -> int:
    root = Path(argv[0]) if argv else Path(__file__).resolve().parent.parent / "src" / "torchlinreg"
    paths = sorted(root.rglob("*.py"))
    names = {path: module_name(path, root) for path in paths}
    modules = set(names.values())
    trees = {path: ast.parse(path.read_text(encoding="utf-8"), str(path)) for path in paths}
    imports = {names[p]: imported_modules(trees[p], names[p], p.name == "__init__.py", modules) for p in paths}

    print("import circles:")
    any_circle = False
    for level, graph in graphs(imports, root.name).items():
        for circle in circles(graph):
            any_circle = True
            print(f"  in {level}: " + " <-> ".join(circle))
    if not any_circle:
        print("  none")

    print("import depth (levels, the longest chain):")
    for level, graph in graphs(imports, root.name).items():
        chain = longest_chain(graph)
        print(f"  {level}: {len(chain)}: " + " -> ".join(chain))

    print(f"modules over {MAX_LINES} lines:")
    long_modules = [(len(p.read_text(encoding="utf-8").splitlines()), p) for p in paths]
    long_modules = sorted((n, p) for n, p in long_modules if n > MAX_LINES)
    for n, p in reversed(long_modules):
        print(f"  {p.relative_to(root.parent)}: {n}")
    if not long_modules:
        print("  none")

    print(f"functions over {MAX_FUNCTION_LINES} lines:")
    found = sorted(((n, p, f, line) for p in paths for f, line, n in long_functions(trees[p])
                    if n > MAX_FUNCTION_LINES), key=lambda t: (-t[0], str(t[1]), t[3]))
    for n, p, f, line in found:
        print(f"  {p.relative_to(root.parent)}:{line} {f}: {n}")
    if not found:
        print("  none")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

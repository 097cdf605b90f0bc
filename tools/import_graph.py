"""Print which fer_utils modules each fer_utils module imports, and any import cycles.

    python tools/import_graph.py           # module -> imported fer_utils modules, then the cycles
    python tools/import_graph.py PACKAGE   # the same for another package folder

Every import statement counts, at module level and inside functions (where the package keeps its
imports of heavy or circular modules): `import fer_utils.x`, `from fer_utils import x` (when x is a
module of the package, not a name such as CLASS_NAMES), `from fer_utils.x import y`, and relative
imports. The graph is read with `ast`, nothing is imported. `tests/test_structure.py` uses
`import_graph` and `find_cycles` to keep the package free of cycles. Exit status 1 when there is a cycle.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "fer_utils"


def _imported_modules(tree: ast.AST, package: str, modules: set[str]) -> set[str]:
    """The modules of `package` (names in `modules`) that the import statements of `tree` name."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == package and len(parts) > 1 and parts[1] in modules:
                    found.add(parts[1])
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: `from . import x`, `from .x import y`
                parts = (node.module or "").split(".") if node.module else []
                parts = [package, *parts]
            else:
                parts = (node.module or "").split(".")
            if parts[0] != package:
                continue
            if len(parts) > 1:
                if parts[1] in modules:
                    found.add(parts[1])
            else:
                found.update(alias.name for alias in node.names if alias.name in modules)
    return found


def import_graph(package_dir: str | Path = PACKAGE) -> dict[str, set[str]]:
    """{module: the package's modules it imports} for every `.py` file directly in `package_dir`.

    Module names are file stems ("data", "evaluation", "__init__"); a module's imports of itself
    are left out.
    """
    package_dir = Path(package_dir)
    if not package_dir.is_dir():
        raise FileNotFoundError(f"No package folder at '{package_dir}'; pass the folder that holds __init__.py.")
    files = sorted(package_dir.glob("*.py"))
    modules = {path.stem for path in files}
    graph = {}
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph[path.stem] = _imported_modules(tree, package_dir.name, modules) - {path.stem}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[tuple[str, ...]]:
    """Every elementary import cycle once, as a tuple of modules starting at its smallest name.

    ("data", "demo") means data imports demo and demo imports data; ("a", "b", "c") means
    a -> b -> c -> a. Sorted, so the output is stable.
    """
    cycles: set[tuple[str, ...]] = set()
    nodes = sorted(graph)

    def walk(start: str, node: str, path: list[str]) -> None:
        for successor in sorted(graph.get(node, ())):
            if successor == start:
                cycles.add(tuple(path))
            # Only cycles through names after `start` are searched from it: each cycle is found from
            # its smallest member, once.
            elif successor > start and successor not in path:
                walk(start, successor, [*path, successor])

    for start in nodes:
        walk(start, start, [start])
    return sorted(cycles)


def format_graph(graph: dict[str, set[str]]) -> str:
    """One line per module: `module -> imported, modules` (`-> (none)` for a module importing none)."""
    width = max((len(name) for name in graph), default=0)
    return "\n".join(
        f"{name:<{width}} -> {', '.join(sorted(imports)) if imports else '(none)'}" for name, imports in sorted(graph.items())
    )


def format_cycle(cycle: tuple[str, ...]) -> str:
    """`a -> b -> a` for the cycle ("a", "b")."""
    return " -> ".join([*cycle, cycle[0]])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    graph = import_graph(argv[0] if argv else PACKAGE)
    print(format_graph(graph))
    cycles = find_cycles(graph)
    print()
    if not cycles:
        print("No import cycles.")
        return 0
    print(f"{len(cycles)} import cycle(s):")
    for cycle in cycles:
        print(f"  {format_cycle(cycle)}")
    return 1


if __name__ == "__main__":
    sys.exit(main())

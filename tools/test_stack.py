"""Run the test suite against a platform's own library versions (Colab, Kaggle), as users meet them.

    python tools/test_stack.py colab kaggle      # what `make test-stacks` runs
    python tools/test_stack.py kaggle --keep     # keep .stacks/kaggle afterwards for a closer look

For each stack named after a file in `constraints/`:

1. create a fresh virtual environment in `.stacks/<stack>` (with the Python running this script:
   the platforms' own Python versions, 3.12 and 3.13, are not installable on every machine);
2. install the stack's pinned libraries, then the test tools under the same pins;
3. install fer_utils exactly as the notebooks' setup cell does on Colab and Kaggle: its `%pip
   install` lines are read from notebook 01, with the repository URL replaced by this checkout
   (so fer_utils itself goes in with --no-deps and meets the pinned libraries, not its own);
4. run the unit tests and nbval over every notebook (smoke settings, a fresh runs folder).

It prints one line per step and stops at the first stack that fails.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / "constraints"
STACKS = ROOT / ".stacks"
SETUP_NOTEBOOK = ROOT / "notebooks" / "01_explore_data.ipynb"
NBVAL = ("--nbval-lax", "--nbval-current-env", "--nbval-cell-timeout=900")


def setup_cell_installs(checkout: Path = ROOT) -> list[list[str]]:
    """The arguments of each `%pip install` line of the notebooks' setup cell, for this checkout."""
    cells = json.loads(SETUP_NOTEBOOK.read_text())["cells"]
    source = next("".join(cell["source"]) for cell in cells if "notebook.setup(" in "".join(cell["source"]))
    installs = []
    for line in source.splitlines():
        line = line.strip()
        if line.startswith("%pip install"):
            arguments = shlex.split(line[len("%pip install"):])
            installs.append([str(checkout) if re.match(r"git\+https?://", arg) else arg for arg in arguments])
    if not installs:
        raise SystemExit(f"No %pip install line in the setup cell of {SETUP_NOTEBOOK.name}.")
    return installs


def test_requirements() -> list[str]:
    """pyproject.toml's `test` extra, and a Jupyter kernel for nbval (the platforms have their own)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [*project["optional-dependencies"]["test"], "ipykernel>=6.0"]


def _run(step: str, command: list[str], **kwargs) -> None:
    start = time.perf_counter()
    result = subprocess.run(command, **kwargs)
    if result.returncode != 0:
        raise SystemExit(f"  {step}: failed (exit {result.returncode}): {shlex.join(command)}")
    print(f"  {step}: {time.perf_counter() - start:.0f} s", flush=True)


def _quiet_pip(python: Path) -> list[str]:
    return [str(python), "-m", "pip", "--disable-pip-version-check", "--no-input"]


def _check_pins(python: Path, constraints: Path) -> None:
    """Fail when an install step replaced one of the platform's pinned versions."""
    pins = dict(
        line.split("#")[0].strip().split("==") for line in constraints.read_text().splitlines()
        if "==" in line.split("#")[0]
    )
    script = (
        "import importlib.metadata as m, json, sys; pins = json.loads(sys.argv[1]); "
        "print(json.dumps({n: m.version(n) for n in pins}))"
    )
    found = json.loads(subprocess.run([str(python), "-c", script, json.dumps(pins)], capture_output=True,
                                      text=True, check=True).stdout)
    changed = {name: (pins[name], found[name]) for name in pins if found[name] != pins[name]}
    if changed:
        raise SystemExit(f"  pinned versions changed by an install step (pinned, installed): {changed}")
    print(f"  {len(pins)} pinned versions in place: " + ", ".join(f"{n} {v}" for n, v in list(found.items())[:5]) + ", ...",
          flush=True)


def run_stack(name: str, keep: bool) -> None:
    constraints = CONSTRAINTS / f"{name}.txt"
    if not constraints.is_file():
        known = ", ".join(sorted(path.stem for path in CONSTRAINTS.glob("*.txt")))
        raise SystemExit(f"No stack '{name}': there is no {constraints.relative_to(ROOT)}. Known stacks: {known}.")
    print(f"{name} ({constraints.relative_to(ROOT)}, Python {sys.version.split()[0]}):", flush=True)
    venv = STACKS / name
    shutil.rmtree(venv, ignore_errors=True)
    _run("fresh virtual environment", [sys.executable, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    pip = _quiet_pip(python)
    _run("platform libraries", pip + ["install", "--quiet", "-r", str(constraints)])
    _run("test tools", pip + ["install", "--quiet", "-c", str(constraints), *test_requirements()])
    for arguments in setup_cell_installs():
        _run("setup cell: %pip install " + " ".join(Path(a).name if a == str(ROOT) else a for a in arguments),
             pip + ["install", "--quiet", "-c", str(constraints), *arguments])
    _check_pins(python, constraints)
    runs = tempfile.mkdtemp(prefix=f"fer-{name}-runs-")
    environment = {**os.environ, "FER_SMOKE": "1", "FER_RUNS_DIR": runs, "PYTHONNOUSERSITE": "1"}
    environment.pop("PYTHONPATH", None)
    try:
        # The venv's `pytest` script, not `python -m pytest`, so that fer_utils is imported from the
        # installed wheel (as on the platforms) rather than from the checkout in the current folder.
        _run("unit tests and nbval", [str(venv / "bin" / "pytest"), "-q", "-p", "no:cacheprovider", "tests",
                                       "notebooks", *NBVAL], cwd=ROOT, env=environment)
    finally:
        shutil.rmtree(runs, ignore_errors=True)
        if not keep:
            shutil.rmtree(venv, ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stacks", nargs="+", help="Stack names: files constraints/<name>.txt.")
    parser.add_argument("--keep", action="store_true", help="Keep .stacks/<name> after the run.")
    args = parser.parse_args(argv)
    for name in args.stacks:
        run_stack(name, args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
4. run the unit tests and nbval over every notebook (smoke settings, a fresh runs folder). Left
   to `make test`: the full-settings notebook runs of tests/test_notebooks_imagenet.py and the
   tests of the benchmark scripts (`TOOLING_TESTS`: they run on a developer's or the GPU machine,
   not on the platforms). A stack whose TensorFlow and Keras pins equal those of a stack named
   before it in the same run leaves the test files and notebooks that exercise TensorFlow and Keras
   only (`KERAS_ONLY_TESTS`, `KERAS_ONLY_NOTEBOOKS`) to that stack: Kaggle and Colab ship the same
   TensorFlow and Keras, so `colab kaggle` runs them on Colab's stack and Kaggle's adds its own
   NumPy, pandas and OpenCV.

Stacks run side by side (`--jobs`), each with its own runs and cache folders; every step prints
one line, and each stack's full output goes to `.stacks/<stack>.log`, whose last lines are shown
when that stack fails.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / "constraints"
STACKS = ROOT / ".stacks"
SETUP_NOTEBOOK = ROOT / "notebooks" / "01_explore_data.ipynb"
NBVAL = ("--nbval-lax", "--nbval-current-env", "--nbval-cell-timeout=900")
# Left to `make test`, for CI's time: the full-settings runs of notebooks 03 and 04 (their smoke runs
# stay in the stacks' nbval), and the benchmark scripts' tests.
TOOLING_TESTS = ("tests/test_notebooks_imagenet.py", "tests/test_gpu_check.py", "tests/test_bench_backends.py")
# Test files whose outcome depends on TensorFlow and Keras alone among the pinned libraries (models,
# training, run folders, backends, exports, the shipped model's tools): one stack per TensorFlow and Keras pair runs them.
KERAS_ONLY_TESTS = ("tests/test_models.py", "tests/test_training.py", "tests/test_reliability.py",
                    "tests/test_backends.py", "tests/test_export.py", "tests/test_shipped_model_tools.py")
# The same for notebooks: the two training stories, and the comparison that evaluates their runs (its
# tables and plots are covered on every stack by test_compare_cli and test_plots).
KERAS_ONLY_NOTEBOOKS = ("notebooks/03_train_vgg16.ipynb", "notebooks/04_train_resnet50.ipynb",
                        "notebooks/05_compare_models.ipynb")
KERAS_PACKAGES = ("tensorflow", "keras")
# Held while a stack installs from the checkout (stacks run in threads of this process).
_CHECKOUT_BUILD = threading.Lock()


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


class StackFailed(Exception):
    """One step of a stack failed; the message says which, and where its log is."""


@dataclasses.dataclass
class Stack:
    """One platform stack under test: its pins, its virtual environment and its log file."""

    name: str
    constraints: Path
    venv: Path
    log: Path

    @classmethod
    def named(cls, name: str) -> "Stack":
        constraints = CONSTRAINTS / f"{name}.txt"
        if not constraints.is_file():
            known = ", ".join(sorted(path.stem for path in CONSTRAINTS.glob("*.txt")))
            raise SystemExit(f"No stack '{name}': there is no {constraints.relative_to(ROOT)}. Known stacks: {known}.")
        return cls(name, constraints, STACKS / name, STACKS / f"{name}.log")

    def say(self, line: str) -> None:
        print(f"[{self.name}] {line}", flush=True)

    def run(self, step: str, command: list[str], **kwargs) -> None:
        """Run `command`, its output appended to the stack's log; one console line when it ends."""
        start = time.perf_counter()
        with self.log.open("a") as log:
            log.write(f"\n$ {shlex.join(command)}\n")
            log.flush()
            result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, **kwargs)
        if result.returncode != 0:
            raise StackFailed(f"{step}: failed (exit {result.returncode}); see {self.log.relative_to(ROOT)}")
        self.say(f"{step}: {time.perf_counter() - start:.0f} s")


def pins(constraints: Path) -> dict[str, str]:
    """The `name==version` lines of a constraints file, as {name: version}."""
    return dict(
        line.split("#")[0].strip().split("==") for line in constraints.read_text().splitlines()
        if "==" in line.split("#")[0]
    )


def deselected_tests(stacks: list[Stack]) -> dict[str, tuple[str, ...]]:
    """For each stack, the test files and notebooks it leaves to `make test` or to an earlier stack of `stacks`."""
    deselected, keras_pairs_seen = {}, set()
    for stack in stacks:
        stack_pins = pins(stack.constraints)
        keras_pair = tuple(stack_pins.get(name) for name in KERAS_PACKAGES)
        files = TOOLING_TESTS + (KERAS_ONLY_TESTS + KERAS_ONLY_NOTEBOOKS if keras_pair in keras_pairs_seen else ())
        keras_pairs_seen.add(keras_pair)
        deselected[stack.name] = files
    return deselected


def _quiet_pip(python: Path) -> list[str]:
    return [str(python), "-m", "pip", "--disable-pip-version-check", "--no-input"]


def _check_pins(stack: Stack, python: Path) -> None:
    """Fail when an install step replaced one of the platform's pinned versions."""
    pinned = pins(stack.constraints)
    script = (
        "import importlib.metadata as m, json, sys; pins = json.loads(sys.argv[1]); "
        "print(json.dumps({n: m.version(n) for n in pins}))"
    )
    found = json.loads(subprocess.run([str(python), "-c", script, json.dumps(pinned)], capture_output=True,
                                      text=True, check=True).stdout)
    changed = {name: (pinned[name], found[name]) for name in pinned if found[name] != pinned[name]}
    if changed:
        raise StackFailed(f"pinned versions changed by an install step (pinned, installed): {changed}")
    stack.say(f"{len(pinned)} pinned versions in place: " + ", ".join(f"{n} {v}" for n, v in list(found.items())[:5]) + ", ...")


def run_stack(stack: Stack, keep: bool, deselect: tuple[str, ...] = TOOLING_TESTS) -> str:
    """Install the stack as the platform has it and run the tests; returns pytest's closing line."""
    stack.say(f"{stack.constraints.relative_to(ROOT)}, Python {sys.version.split()[0]}, log {stack.log.relative_to(ROOT)}")
    shutil.rmtree(stack.venv, ignore_errors=True)
    stack.log.write_text("")
    stack.run("fresh virtual environment", [sys.executable, "-m", "venv", str(stack.venv)])
    python = stack.venv / "bin" / "python"
    pip = _quiet_pip(python)
    stack.run("platform libraries", pip + ["install", "--quiet", "-r", str(stack.constraints)])
    stack.run("test tools", pip + ["install", "--quiet", "-c", str(stack.constraints), *test_requirements()])
    for arguments in setup_cell_installs():
        # pip builds the checkout's wheel in its build/ folder, where two stacks building at once collide.
        with _CHECKOUT_BUILD:
            stack.run("setup cell: %pip install " + " ".join(Path(a).name if a == str(ROOT) else a for a in arguments),
                      pip + ["install", "--quiet", "-c", str(stack.constraints), *arguments])
    _check_pins(stack, python)
    scratch = Path(tempfile.mkdtemp(prefix=f"fer-{stack.name}-"))
    # Each stack gets its own runs and cache folders, so stacks can run side by side.
    environment = {**os.environ, "FER_SMOKE": "1", "FER_RUNS_DIR": str(scratch / "runs"),
                   "FER_CACHE_DIR": str(scratch / "cache"), "PYTHONNOUSERSITE": "1"}
    environment.pop("PYTHONPATH", None)
    left = [name for name in deselect if name not in TOOLING_TESTS]
    if left:
        stack.say("same TensorFlow and Keras as a stack before it, which runs " + ", ".join(Path(n).name for n in left))
    try:
        # The venv's `pytest` script, not `python -m pytest`, so that fer_utils is imported from the
        # installed wheel (as on the platforms) rather than from the checkout in the current folder.
        stack.run("unit tests and nbval", [str(stack.venv / "bin" / "pytest"), "-q", "-p", "no:cacheprovider",
                                           "tests", "notebooks", *NBVAL, *(f"--deselect={name}" for name in deselect)],
                  cwd=ROOT, env=environment)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if not keep:
            shutil.rmtree(stack.venv, ignore_errors=True)
    lines = [line for line in stack.log.read_text().splitlines() if re.search(r"\d+ passed", line)]
    return lines[-1] if lines else "(no pytest summary line)"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stacks", nargs="+", help="Stack names: files constraints/<name>.txt.")
    parser.add_argument("--keep", action="store_true", help="Keep .stacks/<name> after the run.")
    parser.add_argument("--jobs", type=int, default=2,
                        help="Stacks run side by side (default 2): much of a test run is single-threaded.")
    args = parser.parse_args(argv)
    stacks = [Stack.named(name) for name in args.stacks]
    STACKS.mkdir(exist_ok=True)
    failed = False
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        deselect = deselected_tests(stacks)
        futures = {pool.submit(run_stack, stack, args.keep, deselect[stack.name]): stack for stack in stacks}
        for future in concurrent.futures.as_completed(futures):
            stack = futures[future]
            try:
                stack.say(future.result())
            except StackFailed as error:
                failed = True
                stack.say(str(error))
                print("".join(stack.log.read_text().splitlines(keepends=True)[-60:]), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Execute the notebook series headless, in order.

    python tools/run_notebooks.py --out outputs/demo   # executed copies + runs + summary in outputs/demo
    python tools/run_notebooks.py --inplace            # refresh the committed notebooks' outputs

Set FER_SMOKE=1 for the small settings CI uses (the Makefile's `demo`, `test` and `notebooks` targets
do). Training notebooks write run folders that the comparison and prediction notebooks read, so the
order matters; a failing notebook stops the series with its error.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def _notebooks(only: str | None) -> list[Path]:
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    return [path for path in paths if only is None or only in path.name]


def execute_inplace(paths: list[Path], timeout: int) -> None:
    """Run each notebook with nbclient and store its outputs in the file itself (no extra metadata)."""
    import nbformat
    from nbclient import NotebookClient

    for path in paths:
        start = time.perf_counter()
        notebook = nbformat.read(path, as_version=4)
        NotebookClient(notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
        nbformat.write(notebook, path)
        print(f"{path.name}: {time.perf_counter() - start:.0f} s", flush=True)


def execute_to(paths: list[Path], out_dir: Path, timeout: int) -> None:
    """Run each notebook with papermill into `out_dir`, with run folders in `out_dir/runs`."""
    import papermill

    out_dir.mkdir(parents=True, exist_ok=True)
    for path in paths:
        start = time.perf_counter()
        papermill.execute_notebook(
            str(path), str(out_dir / path.name), cwd=str(out_dir), kernel_name="python3",
            progress_bar=False, execution_timeout=timeout,
        )
        print(f"{path.name}: {time.perf_counter() - start:.0f} s -> {out_dir / path.name}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", type=Path, help="Write executed copies (and runs/) into this folder.")
    target.add_argument("--inplace", action="store_true", help="Refresh the committed notebooks' outputs.")
    parser.add_argument("--only", help="Run only notebooks whose file name contains this text.")
    parser.add_argument("--timeout", type=int, default=1800, help="Seconds allowed per cell.")
    args = parser.parse_args(argv)

    paths = _notebooks(args.only)
    if not paths:
        print(f"error: no notebooks found in {NOTEBOOKS}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    if args.inplace:
        # Runs written while refreshing the committed notebooks go to notebooks/runs/ (ignored by
        # git); the path is relative to the notebooks' folder so no machine path lands in outputs.
        os.environ.setdefault("FER_RUNS_DIR", "runs")
        execute_inplace(paths, args.timeout)
    else:
        out_dir = args.out.resolve()
        os.environ["FER_RUNS_DIR"] = str(out_dir / "runs")
        execute_to(paths, out_dir, args.timeout)
        summary = out_dir / "runs" / "comparison" / "summary.md"
        if summary.is_file():
            print(f"\nComparison summary: {summary}\n")
            print(summary.read_text())
    print(f"All {len(paths)} notebooks ran in {time.perf_counter() - start:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

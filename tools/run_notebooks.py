"""Execute the notebook series headless, in order.

    python tools/run_notebooks.py --out outputs/demo --force          # `make demo`: demo data, smoke settings
    python tools/run_notebooks.py --out outputs/experiment --data DIR  # `make experiment`: your FER2013, full settings
    python tools/run_notebooks.py --inplace                            # refresh the committed notebooks' outputs

Set FER_SMOKE=1 for the small settings CI uses (the Makefile's `demo`, `test` and `notebooks` targets
do). Training notebooks write run folders that the comparison and prediction notebooks read, so the
order matters; a failing notebook stops the series with its error. The console shows one line per
notebook; TensorFlow's log lines stay out of it and out of the notebooks.

With `--out`, executed notebooks, `runs/` and `runs/comparison/` land in that one folder, and the
series **resumes**: a notebook that already finished there with the same parameters is not run again
(`--force` reruns it), and a training notebook that was interrupted continues its run from the last
finished epoch (run folders are resumable).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
# The kernel's own start-up notices (e.g. "Kernel is running over TCP without encryption") would
# print on this console once per notebook.
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]


def _notebooks(only: str | None) -> list[Path]:
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    return [path for path in paths if only is None or only in path.name]


def _quiet_kernels() -> None:
    """Kernels inherit this process's environment: TensorFlow's C++ logs stay out of the console."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.getLogger("papermill").setLevel(logging.ERROR)  # e.g. "Black is not installed" notices


def coalesce_streams(notebook) -> None:
    """Merge consecutive stream outputs and keep only what `\r` leaves: a progress bar is stored as
    its final line, not as one output per update."""
    from nbconvert.preprocessors import CoalesceStreamsPreprocessor

    CoalesceStreamsPreprocessor().preprocess(notebook, {})


def execute_inplace(paths: list[Path], timeout: int) -> None:
    """Run each notebook with nbclient and store its outputs in the file itself (no extra metadata)."""
    import nbformat
    from nbclient import NotebookClient

    for index, path in enumerate(paths, 1):
        print(f"[{index}/{len(paths)}] {path.name} ...", end="", flush=True)
        start = time.perf_counter()
        notebook = nbformat.read(path, as_version=4)
        NotebookClient(notebook, timeout=timeout, kernel_name="python3", extra_arguments=KERNEL_ARGUMENTS,
                       resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
        coalesce_streams(notebook)
        nbformat.write(notebook, path)
        print(f" {time.perf_counter() - start:.0f} s", flush=True)


def finished(path: Path, parameters: dict) -> bool:
    """True when `path` is a notebook papermill executed to the end with these parameters."""
    import nbformat

    if not path.is_file():
        return False
    try:
        metadata = nbformat.read(path, as_version=4).metadata.get("papermill", {})
    except Exception:  # a half-written or foreign file: run it again
        return False
    return bool(metadata.get("end_time")) and not metadata.get("exception") and metadata.get("parameters", {}) == parameters


def execute_to(paths: list[Path], out_dir: Path, timeout: int, parameters: dict, force: bool) -> None:
    """Run each notebook with papermill into `out_dir`, with run folders in `out_dir/runs`."""
    import papermill

    out_dir.mkdir(parents=True, exist_ok=True)
    for index, path in enumerate(paths, 1):
        target = out_dir / path.name
        prefix = f"[{index}/{len(paths)}] {path.name}"
        if not force and finished(target, parameters):
            print(f"{prefix}: finished earlier, kept (--force reruns it)", flush=True)
            continue
        print(f"{prefix} ...", end="", flush=True)
        start = time.perf_counter()
        try:
            papermill.execute_notebook(
                str(path), str(target), parameters=parameters, cwd=str(out_dir), kernel_name="python3",
                progress_bar=False, log_output=False, execution_timeout=timeout, extra_arguments=KERNEL_ARGUMENTS,
            )
        except papermill.PapermillExecutionError as error:
            print(f" failed in cell {error.cell_index}: {error.ename}: {error.evalue}", flush=True)
            print(f"The executed notebook with the error is {target}; rerun the same command to resume.", file=sys.stderr)
            raise SystemExit(1) from None
        import nbformat

        executed = nbformat.read(target, as_version=4)
        coalesce_streams(executed)
        nbformat.write(executed, target)
        print(f" {time.perf_counter() - start:.0f} s -> {target}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", type=Path, help="Write executed copies (and runs/) into this folder.")
    target.add_argument("--inplace", action="store_true", help="Refresh the committed notebooks' outputs.")
    parser.add_argument("--data", type=Path, help="The FER2013 folder (train/, test/) or fer2013.csv; sets DATA.")
    parser.add_argument("--force", action="store_true", help="With --out: rerun notebooks that finished earlier.")
    parser.add_argument("--only", help="Run only notebooks whose file name contains this text.")
    parser.add_argument("--timeout", type=int, default=None,
                        help="Seconds allowed per cell (default: none with --data, 1800 otherwise).")
    args = parser.parse_args(argv)

    paths = _notebooks(args.only)
    if not paths:
        print(f"error: no notebooks found in {NOTEBOOKS}", file=sys.stderr)
        return 2
    if args.data is not None and not args.data.exists():
        print(f"error: --data {args.data} does not exist", file=sys.stderr)
        return 2
    if args.data is not None and args.inplace:
        print("error: --data goes with --out (the committed notebooks run on the demo data)", file=sys.stderr)
        return 2
    timeout = args.timeout if args.timeout is not None else (None if args.data is not None else 1800)
    _quiet_kernels()
    start = time.perf_counter()
    if args.inplace:
        # Runs written while refreshing the committed notebooks go to notebooks/runs/ (ignored by
        # git); the path is relative to the notebooks' folder so no machine path lands in outputs.
        os.environ.setdefault("FER_RUNS_DIR", "runs")
        execute_inplace(paths, timeout)
    else:
        out_dir = args.out.resolve()
        os.environ["FER_RUNS_DIR"] = str(out_dir / "runs")
        parameters = {"DATA": str(args.data.resolve())} if args.data is not None else {}
        execute_to(paths, out_dir, timeout, parameters, args.force)
        summary = out_dir / "runs" / "comparison" / "summary.md"
        if summary.is_file():
            print(f"\nComparison summary: {summary}\n")
            print(summary.read_text())
    print(f"All {len(paths)} notebooks done in {time.perf_counter() - start:.0f} s; outputs in "
          f"{'notebooks/' if args.inplace else args.out}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

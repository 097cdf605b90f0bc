"""The `python -m fer_utils` command line: a thin argparse layer over the package.

Each sub-command has a `_add_<name>_parser` function that declares its arguments and a
`_run_<name>` function that calls into the package. Heavy imports (Keras) happen inside the
`_run_*` functions, so `python -m fer_utils info` stays fast.

Errors that a user can fix (a wrong path, a bad file, missing weights) are raised by the package
as `ValueError` or `OSError` subclasses with a message that says what, where and what to do; `main`
prints that message on one line and exits with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import sys

from fer_utils import __version__


# ---------------------------------------------------------------------------------------------
# info
# ---------------------------------------------------------------------------------------------
def _add_info_parser(subparsers):
    parser = subparsers.add_parser("info", help="Print the per-split, per-class image counts.")
    parser.add_argument("data", help="Dataset root, single split folder, or fer2013.csv.")
    parser.add_argument("--no-cache", action="store_true", help="Do not read or write the cache.")
    parser.set_defaults(handler=_run_info)


def _run_info(args):
    raise NotImplementedError  # Filled in by fer_utils.data work.


# ---------------------------------------------------------------------------------------------
# demo-data
# ---------------------------------------------------------------------------------------------
def _add_demo_data_parser(subparsers):
    parser = subparsers.add_parser("demo-data", help="Write the procedurally drawn demo dataset.")
    parser.add_argument("out", help="Folder to write train/<class>/*.png and test/<class>/*.png into.")
    parser.set_defaults(handler=_run_demo_data)


def _run_demo_data(args):
    raise NotImplementedError  # Filled in by fer_utils.data work.


# ---------------------------------------------------------------------------------------------
# train  (owned by the models/training work)
# ---------------------------------------------------------------------------------------------
def _add_train_parser(subparsers):
    parser = subparsers.add_parser("train", help="Train a model and write a run folder.")
    parser.set_defaults(handler=_run_train)


def _run_train(args):
    raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# evaluate  (owned by the evaluation work)
# ---------------------------------------------------------------------------------------------
def _add_evaluate_parser(subparsers):
    parser = subparsers.add_parser("evaluate", help="Evaluate a saved model on a labelled split.")
    parser.set_defaults(handler=_run_evaluate)


def _run_evaluate(args):
    raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# compare  (owned by the evaluation work)
# ---------------------------------------------------------------------------------------------
def _add_compare_parser(subparsers):
    parser = subparsers.add_parser("compare", help="Compare several runs (and their ensemble).")
    parser.set_defaults(handler=_run_compare)


def _run_compare(args):
    raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# predict  (owned by the faces work)
# ---------------------------------------------------------------------------------------------
def _add_predict_parser(subparsers):
    parser = subparsers.add_parser("predict", help="Detect and classify faces in a photo or video.")
    parser.set_defaults(handler=_run_predict)


def _run_predict(args):
    raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="python -m fer_utils",
        description="Facial expression recognition on FER2013 with Keras transfer learning.",
    )
    parser.add_argument("--version", action="version", version=f"fer_utils {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_info_parser(subparsers)
    _add_demo_data_parser(subparsers)
    _add_train_parser(subparsers)
    _add_evaluate_parser(subparsers)
    _add_compare_parser(subparsers)
    _add_predict_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line and return the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.handler(args)
    except (ValueError, OSError) as error:
        # A user-fixable problem: one clear line, no traceback.
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())

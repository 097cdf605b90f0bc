"""The `python -m fer_utils` command line: `_add_<name>_parser` (arguments) and `_run_<name>` (the calls,
importing Keras only there) per sub-command; `main` prints a user-fixable error on one line and exits 2."""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import threading

from fer_utils import __version__
from fer_utils.backend import BACKENDS

OVERWRITE_HELP = "Replace what fer_utils wrote there before (never other files)."


# --- info ---
def _add_info_parser(subparsers):
    parser = subparsers.add_parser("info", help="Print the per-split, per-class image counts.")
    parser.add_argument("data", help="Dataset root, single split folder, or fer2013.csv.")
    parser.add_argument("--no-cache", action="store_true", help="Do not read or write the cache.")
    parser.set_defaults(handler=_run_info)


def _run_info(args):
    from fer_utils import data

    dataset = data.load_dataset(args.data, cache=not args.no_cache, progress=True)
    table = data.dataset_summary(dataset)
    print(f"Dataset: {args.data}")
    print(f"Fingerprint: {data.dataset_fingerprint(args.data)}")
    print(table.to_string())
    return 0


# --- demo-data ---
def _add_demo_data_parser(subparsers):
    parser = subparsers.add_parser("demo-data", help="Write the procedurally drawn demo dataset.")
    parser.add_argument("out", help="Folder to write train/<class>/*.png and test/<class>/*.png into.")
    parser.add_argument("--per-class", type=int, default=None,
                        help="Average training images per class (default 100; FER2013's class proportions).")
    parser.add_argument("--seed", type=int, default=0, help="Random seed; the same seed gives the same images.")
    parser.add_argument("--overwrite", action="store_true", help="Replace what demo-data wrote there before.")
    parser.set_defaults(handler=_run_demo_data)


def _run_demo_data(args):
    from fer_utils import data, demo

    out = demo.make_demo_dataset(args.out, per_class=args.per_class, seed=args.seed, overwrite=args.overwrite)
    dataset = data.load_dataset(out, cache=False, progress=False)
    print(f"Wrote the demo dataset to {out}")
    print(data.dataset_summary(dataset).to_string())
    return 0


# --- train ---
def _add_train_parser(subparsers):
    from fer_utils.models import BACKBONES

    parser = subparsers.add_parser(
        "train",
        help="Train a model and write a run folder.",
        description=(
            "Train a backbone on DATA's train split (the validation split is carved from train; test is "
            "never used) with the steps notebooks 03 and 04 show, and write RUN_DIR with model.keras, "
            "history.csv, config.json and val_metrics.json. Re-running the same command after an interruption "
            "resumes from the last finished epoch. Unset options take the backbone's defaults "
            "(fer_utils.recipe.default_settings)."
        ),
    )
    parser.add_argument("--backbone", required=True, choices=BACKBONES, help="Network to train.")
    parser.add_argument("--data", required=True, help="Dataset root with train/ (and test/), or fer2013.csv.")
    parser.add_argument("--out", required=True, metavar="RUN_DIR", help="Run folder to write (or resume).")
    group = parser.add_argument_group("training options (unset ones take the backbone's defaults)")
    for flag, kind, text in TRAIN_OPTIONS:
        dest = flag[2:].replace("-", "_")
        if kind is bool:
            group.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif isinstance(kind, tuple):
            group.add_argument(flag, dest=dest, choices=kind, default=None, help=text)
        else:
            group.add_argument(flag, dest=dest, type=kind, default=None, metavar=dest.upper(), help=text)
    parser.add_argument("--overwrite", action="store_true",
                        help="Discard the run RUN_DIR holds (only the files training wrote) and start over.")
    parser.add_argument("--no-cache", action="store_true", help="Do not read or write the decoded-data cache.")
    parser.add_argument("--quiet", action="store_true", help="No progress bars.")
    parser.set_defaults(handler=_run_train)


def _weights_value(text: str):
    return None if text.lower() == "none" else text


def _augmentation_value(text: str) -> dict:
    """'rotation=0.05,flip=false' -> {"rotation": 0.05, "flip": False}: the strengths to change."""
    changes = {}
    for part in filter(None, (part.strip() for part in text.split(","))):
        key, _, value = part.partition("=")
        try:
            if key == "flip" and value.lower() in ("true", "false", "on", "off", "1", "0"):
                changes[key] = value.lower() in ("true", "on", "1")
            elif key in ("rotation", "zoom", "translation", "contrast") and 0 <= float(value) < 1:
                changes[key] = float(value)
            else:
                raise ValueError
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"'{part}' is not NAME=VALUE with NAME one of flip (true/false), rotation, zoom, translation, "
                "contrast (fractions in [0, 1)), e.g. --augmentation rotation=0.05,zoom=0.1,flip=true."
            ) from None
    return changes


# flag, type (bool: a switch; a tuple: the choices), help. Ranges are checked in one place,
# fer_utils.recipe.check_settings, which names the flag.
TRAIN_OPTIONS = (
    ("--weights", _weights_value, "imagenet | none | PATH to a weights file (default: imagenet, none for small_cnn)."),
    ("--img-size", int, "Backbone input size in px (default: 48 on CPU, 96 vgg16/resnet50, 160 efficientnetb0 on GPU)."),
    ("--epochs-head", int, "Head-phase epochs of a pretrained backbone (default 10)."),
    ("--epochs-finetune", int, "Fine-tuning epochs, 0 to skip (default 10)."),
    ("--epochs", int, "small_cnn: end-to-end epochs (default 30)."),
    ("--head-mode", ("cached", "images"), "Head phase on backbone features computed once (cached, the default) or "
     "on augmented images through the frozen backbone every epoch (images: slower)."),
    ("--batch-size", int, "Batch size (default 64)."),
    ("--learning-rate", float, "Learning rate of the head / small_cnn phase (default 1e-3, 3e-3 small_cnn)."),
    ("--finetune-learning-rate", float, "Peak of fine-tuning's cosine decay (default 1e-4)."),
    ("--weight-decay", float, "AdamW weight decay of kernels (default 1e-4)."),
    ("--label-smoothing", float, "Label smoothing of the cross-entropy (default 0.1)."),
    ("--dropout", float, "Head dropout rate (default 0.5, 0.2 small_cnn)."),
    ("--head-batchnorm", bool, "Standardise the pooled features before the head (for random-weight backbones)."),
    ("--augmentation", _augmentation_value, "Strengths to change, e.g. rotation=0.05,zoom=0.1,translation=0.1,"
     "contrast=0.1,flip=true (unnamed ones keep the backbone's default)."),
    ("--class-weights", ("none", "balanced"), "none (plain cross-entropy, the default) or balanced (inverse class "
     "frequency: more recall on the rare classes, less accuracy)."),
    ("--patience", int, "Early-stopping patience in epochs, 0 = off (default 5, 10 small_cnn)."),
    ("--val-fraction", float, "Share of train held out, stratified, for validation (default 0.1)."),
    ("--seed", int, "Seed of weights, shuffling, augmentation and the validation split (default 42)."),
    ("--max-minutes", float, "Time budget of all epochs: the learning rate anneals by steps or time, whichever "
     "runs out first, and training stops cleanly."),
)


def _run_train(args):
    from fer_utils import recipe

    names = [flag[2:].replace("-", "_") for flag, _, _ in TRAIN_OPTIONS]
    overrides = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    settings = recipe.default_settings(args.backbone, **overrides)
    run_dir = recipe.train(args.data, settings, args.out, progress=not args.quiet, cache=not args.no_cache,
                             overwrite=args.overwrite)
    print(f"Run folder: {run_dir}")
    for name in ("model.keras", "history.csv", "config.json", "val_metrics.json"):
        print(f"  {run_dir / name}")
    return 0


# --- evaluate ---
def _add_evaluate_parser(subparsers):
    parser = subparsers.add_parser("evaluate", help="Evaluate a saved model on a labelled split.")
    parser.add_argument("--model", required=True,
                        help="Run folder (holding model.keras), a .keras file, or builtin (the model that ships "
                             "with fer_utils).")
    parser.add_argument("--json", metavar="OUT", help="Also write the metrics, per-class scores and confusion matrix here.")
    _add_scoring_arguments(parser)
    parser.set_defaults(handler=_run_evaluate)


def _add_scoring_arguments(parser) -> None:
    """The options evaluate and compare share."""
    parser.add_argument("--data", required=True, help="Dataset root, fer2013.csv, or a single labelled split folder.")
    parser.add_argument("--split", default="test", help="Split of a dataset root to evaluate on (default: test).")
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    parser.add_argument("--tta", action="store_true", help="Average the predictions on each face and its mirror image.")
    parser.add_argument("--batch-size", type=int, default=256, help="Images per prediction batch (default 256).")
    parser.add_argument("--n-boot", type=int, default=1000, help="Bootstrap resamples for the 95%% CIs (0: none).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the bootstrap resampling (default 0).")
    parser.add_argument("--no-cache", action="store_true", help="Do not read or write the decoded-image cache.")


def _run_evaluate(args):
    from fer_utils import data, evaluation, files, report
    from fer_utils.loading import load_model

    # The output and the model first: a wrong path fails at once, before any image is decoded.
    if args.json:
        files.check_output(args.json, "file", args.overwrite)
    run = load_model(args.model)
    split = data.load_labelled(args.data, split=args.split, cache=not args.no_cache, progress=True)
    result = evaluation.evaluate_model(
        run, split, tta=args.tta, batch_size=args.batch_size, n_boot=args.n_boot, seed=args.seed
    )
    print(f"Data: {split.source or args.data}")
    print(report.format_report(result))
    if args.json:
        payload = {"model": str(args.model), "data": str(args.data), "split": args.split, **result.to_dict()}
        files.record_output(args.json)
        files.atomic_write_json(args.json, payload)
        print(f"Wrote {args.json}")
    return 0


# --- compare ---
def _add_compare_parser(subparsers):
    parser = subparsers.add_parser("compare", help="Compare several runs (and their ensemble).")
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR",
                        help="Run folders, .keras files, a folder holding run folders, or builtin.")
    parser.add_argument("--out", required=True, help="Folder for summary.md, summary.json and the figures.")
    _add_scoring_arguments(parser)
    parser.add_argument("--no-ensemble", action="store_true", help="Do not add the average of all runs as a model.")
    parser.add_argument("--gradcam-images", type=int, default=7, help="Faces per Grad-CAM figure (0: no Grad-CAM).")
    parser.add_argument("--no-figures", action="store_true", help="Write summary.md and summary.json only.")
    parser.set_defaults(handler=_run_compare)


def _run_compare(args):
    from fer_utils import data, files, report

    # The output and the run folders first: a wrong path fails at once, before any image is decoded.
    files.check_output(args.out, "folder", args.overwrite)
    runs = report.check_runs(args.runs)
    split = data.load_labelled(args.data, split=args.split, cache=not args.no_cache, progress=True)
    settings = report.ComparisonSettings(
        tta=args.tta, n_boot=args.n_boot, seed=args.seed, batch_size=args.batch_size,
        include_ensemble=not args.no_ensemble, gradcam_images=args.gradcam_images, write_figures=not args.no_figures,
    )
    files.remove_outputs(args.out)  # an earlier comparison's files (check_output: only with --overwrite)
    _, results = report.compare_runs(runs, split, args.out, settings)
    print(f"Data: {split.source or args.data} ({len(split)} images)")
    print(report.formatted_summary(list(results.values())).to_string(index=False))
    print(f"Wrote summary.md, summary.json{'' if args.no_figures else ' and the figures'} to {args.out}")
    return 0


# --- predict ---
def _add_predict_parser(subparsers):
    parser = subparsers.add_parser("predict", help="Detect and classify faces in a photo or video.")
    parser.add_argument("--model", default="builtin",
                        help="Run folder (holding model.keras) or a .keras file (default: builtin, the model "
                             "that ships with fer_utils, trained on FER2013).")
    parser.add_argument("input", metavar="IMAGE_OR_VIDEO",
                        help="A photo, a video file (.mp4 .avi .mov .mkv), or a webcam index such as 0.")
    parser.add_argument("--out", help="Write the annotated photo or video here.")
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    parser.add_argument("--max-frames", type=int, default=None, help="Video: stop after this many frames.")
    parser.add_argument("--every-n", type=int, default=1, help="Video: analyse every n-th frame (default 1).")
    parser.add_argument("--min-size", type=int, default=48, help="Smallest face side in pixels (default 48).")
    parser.set_defaults(handler=_run_predict)


def _run_predict(args):
    from pathlib import Path

    from fer_utils import faces, files, loading, video

    # Check the input and the output before loading the model, so that a wrong path fails at once.
    is_webcam = args.input.isdigit()
    if not is_webcam and not Path(args.input).is_file():
        raise FileNotFoundError(f"No photo or video file at '{args.input}'. Check the path.")
    if args.out:  # the input file itself too: the rule refuses what fer_utils did not write
        files.check_output(args.out, "file", args.overwrite)
    if is_webcam or video.is_video_path(args.input):
        run = loading.load_model(args.model)
        print(f"Model: {loading.describe(run)}")
        options = video.VideoOptions(
            class_names=run.class_names, max_frames=args.max_frames, every_n=args.every_n, min_size=args.min_size
        )
        if args.out:
            files.record_output(args.out)  # before the video writer may leave a partial file
        stats = video.run_video(run.model, args.input, out_path=args.out, options=options)
        print(f"Video: {args.input}")
        print(f"frames: {stats['frames']}  faces: {stats['faces']}  fps: {stats['fps']:.1f}  detector: {stats['detector']}")
        if stats["out_path"]:
            print(f"Wrote {stats['out_path']}")
        return 0
    image = faces.load_image(args.input)
    if args.out and Path(args.out).suffix.lower() not in faces.IMAGE_SUFFIXES:
        raise ValueError(f"--out '{args.out}' must be an image file ({', '.join(faces.IMAGE_SUFFIXES)}).")
    run = loading.load_model(args.model)
    print(f"Model: {loading.describe(run)}")
    predictions = faces.predict_faces(run.model, image, run.class_names, min_size=args.min_size)
    print(f"Image: {args.input}  ({len(predictions)} face(s), model {run.name}, detector: {faces.resolve_detector()})")
    if not predictions:
        print(f"No face found. Faces must be frontal and at least --min-size {args.min_size} pixels wide.")
    for number, prediction in enumerate(predictions, start=1):
        x, y, width, height = prediction.box
        print(f"face {number}: x={x} y={y} w={width} h={height}  {prediction.label} {prediction.confidence:.0%}")
    if args.out:
        files.record_output(args.out)
        faces.save_image(args.out, faces.annotate(image, predictions))
        print(f"Wrote {args.out}")
    return 0


# --- export ---
def _add_export_parser(subparsers):
    from fer_utils.export import FORMATS

    parser = subparsers.add_parser(
        "export",
        help="Export a model to ONNX, LiteRT (.tflite) or a TensorFlow SavedModel.",
        description=(
            "Write SOURCE's model in a deployment format. The export takes the Keras model's input "
            "(float32 pixels 0..255, shape (batch, 48, 48, 1)) and returns its class probabilities. "
            "Unless --no-check, the export is loaded with its own runtime and compared with Keras on 64 demo faces. "
            'Converters and runtimes: pip install -e ".[export]".'
        ),
    )
    parser.add_argument("source", metavar="SOURCE", help="Run folder (holding model.keras), a .keras file, or builtin.")
    parser.add_argument("--format", required=True, choices=FORMATS,
                        help="onnx: a .onnx file; litert: a .tflite file; saved_model: a folder.")
    parser.add_argument("--out", required=True, metavar="PATH", help="File (.onnx, .tflite) or folder to write.")
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    parser.add_argument("--no-check", action="store_true", help="Do not compare the export with the Keras model.")
    parser.set_defaults(handler=_run_export)


def _run_export(args):
    from fer_utils import demo, export
    from fer_utils.loading import load_model

    # The path first: a wrong --out fails at once, before the model is loaded.
    export.check_export_path(args.out, args.format, overwrite=args.overwrite)
    run = load_model(args.source)
    path = export.export_model(run.model, args.out, args.format, overwrite=args.overwrite)
    print(f"Exported {run.name} ({args.source}) to {path} ({args.format}, {_size_mb(path):.1f} MB)")
    print(f"Input: float32 pixels 0..255, shape (batch, {', '.join(map(str, run.model.input_shape[1:]))}). "
          f"Output: probabilities of {', '.join(run.class_names)}")
    try:  # a failed check removes the export, so that the rerun is not refused
        if not args.no_check:
            difference = export.max_difference(run.model, export.load_exported(path, args.format), demo.draw_faces(64))
            print(f"Check: on 64 demo faces the export's probabilities differ from Keras's by at most {difference:.1e}")
            if difference > 1e-4:
                raise ValueError(f"the {args.format} export does not match the Keras model (tolerance 1e-4); it was "
                                 "removed. Pass --no-check to keep it.")
    except Exception:
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        raise
    return 0


def _size_mb(path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 1e6


# --- Numeric options: every bound in one table, checked before any command runs ---
# The lowest value of each numeric option of evaluate / compare / predict / demo-data (and train's
# --batch-size and --seed); training's other bounds are checked by recipe.check_settings.
NUMERIC_OPTIONS = {
    "batch_size": 1,
    "n_boot": 0,
    "gradcam_images": 0,
    "per_class": 6,  # demo.MIN_PER_CLASS
    "max_frames": 1,
    "every_n": 1,
    "min_size": 1,
    "seed": 0,
}


def check_numeric_options(args: argparse.Namespace) -> None:
    """Raise ValueError naming the first numeric option that is out of range."""
    for dest, lowest in NUMERIC_OPTIONS.items():
        value = getattr(args, dest, None)  # None: unset, or an option this command does not have
        if value is not None and value < lowest:
            raise ValueError(f"--{dest.replace('_', '-')} must be at least {lowest}, got {value}.")


# --- main ---
def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="python -m fer_utils",
        description="Facial expression recognition on FER2013 with Keras transfer learning.",
    )
    parser.add_argument("--version", action="version", version=f"fer_utils {__version__}")
    parser.add_argument("--backend", choices=BACKENDS, default=None,
                        help="Keras backend to run on (default: $KERAS_BACKEND, else tensorflow).")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_info_parser(subparsers)
    _add_demo_data_parser(subparsers)
    _add_train_parser(subparsers)
    _add_evaluate_parser(subparsers)
    _add_compare_parser(subparsers)
    _add_predict_parser(subparsers)
    _add_export_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line and return the process exit status."""
    from fer_utils import backend

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        backend.select_backend(args.backend)  # before anything imports Keras, which fixes its backend
    except (ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    # Before anything imports TensorFlow: no C++ log lines on the console. `info` and `demo-data`
    # never load TensorFlow, so they only get the environment variable.
    backend.quiet_tensorflow(import_now=args.command not in ("info", "demo-data"))
    # SIGTERM (a scheduler's or `kill`'s stop) ends a command the way Ctrl-C does, with a message.
    previous = signal.signal(signal.SIGTERM, _terminate) if threading.current_thread() is threading.main_thread() else None
    try:
        check_numeric_options(args)
        result = args.handler(args)
    except (ValueError, OSError) as error:
        # A user-fixable problem: one clear line, no traceback.
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:
        name, status = ("SIGTERM", 143) if stop.args == ("SIGTERM",) else ("Ctrl-C", 130)
        resume = (" Run the same command again (without --overwrite) to resume from the last finished epoch."
                  * (args.command == "train"))
        print(f"error: stopped by {name}.{resume}", file=sys.stderr)
        return status
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return int(result or 0)


def _terminate(signum, frame):
    raise KeyboardInterrupt("SIGTERM")  # where Ctrl-C's would be: both stop a command the same way


if __name__ == "__main__":
    sys.exit(main())

"""End-to-end tests of `python -m fer_utils evaluate` and `compare`, and of compare_runs, on demo data."""

import json

import numpy as np
import pandas as pd
import pytest
from contract_models import tiny_contract_model

from fer_utils import CLASS_NAMES, data, evaluation, report
from fer_utils.cli import main
from fer_utils.runs import save_run


def _history():
    return pd.DataFrame(
        {
            "epoch": [1, 2, 3, 4],
            "phase": ["head", "head", "finetune", "finetune"],
            "loss": [1.9, 1.7, 1.5, 1.4],
            "accuracy": [0.2, 0.3, 0.35, 0.4],
            "val_loss": [1.9, 1.8, 1.7, 1.65],
            "val_accuracy": [0.2, 0.25, 0.3, 0.32],
        }
    )


def _write_run(run_dir, seed, class_names=CLASS_NAMES, name=None):
    model = tiny_contract_model(num_classes=len(class_names), seed=seed)
    config = {
        "name": name or f"tiny-{seed}",
        "backbone": "tiny",
        "class_names": list(class_names),
        "wall_time_s": {"head": 10.0 + seed, "finetune": 20.0},
        "n_params": int(model.count_params()),
    }
    return save_run(run_dir, model, config, history=_history(), val_metrics={"accuracy": 0.3})


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return {
        "first": _write_run(root / "first", seed=0),
        "second": _write_run(root / "second", seed=1),
        "reordered": _write_run(root / "reordered", seed=2, class_names=tuple(reversed(CLASS_NAMES))),
        "other_classes": _write_run(root / "other", seed=3, class_names=CLASS_NAMES[:-1] + ("contempt",)),
    }


@pytest.fixture(scope="module")
def test_split(demo_root):
    return data.load_labelled(demo_root, split="test", cache=False, progress=False)


def test_cli_evaluate_prints_metrics_and_writes_json(runs, demo_root, tmp_path, capsys):
    out = tmp_path / "metrics.json"
    status = main(["evaluate", "--model", str(runs["first"]), "--data", str(demo_root), "--json", str(out), "--n-boot", "50"])
    printed = capsys.readouterr().out
    assert status == 0
    for label in ("Accuracy", "Balanced accuracy", "Macro-F1", "Top-2 accuracy", "Log loss", "Expected calibration error", "images/s"):
        assert label in printed
    for class_name in CLASS_NAMES:
        assert class_name in printed
    payload = json.loads(out.read_text())
    for key in ("accuracy", "macro_f1", "balanced_accuracy", "n", "class_names", "confusion_matrix", "per_class"):
        assert key in payload
    split = data.load_labelled(demo_root, cache=False, progress=False)
    assert payload["n"] == len(split)
    assert payload["class_names"] == list(CLASS_NAMES)
    assert np.sum(payload["confusion_matrix"]) == len(split)
    assert set(payload["per_class"]) == set(CLASS_NAMES)
    assert payload["per_class"]["happy"]["support"] == int(np.sum(split.labels == CLASS_NAMES.index("happy")))
    assert payload["confidence_intervals"]["accuracy"]["low"] <= payload["accuracy"]


def test_cli_evaluate_accepts_a_single_split_folder_a_keras_file_and_tta(runs, demo_root, tmp_path):
    from_root, from_folder = tmp_path / "root.json", tmp_path / "folder.json"
    assert main(["evaluate", "--model", str(runs["first"]), "--data", str(demo_root), "--json", str(from_root), "--n-boot", "0"]) == 0
    model_file = runs["first"] / "model.keras"
    arguments = ["evaluate", "--model", str(model_file), "--data", str(demo_root / "test"), "--n-boot", "0", "--tta"]
    assert main([*arguments, "--json", str(from_folder)]) == 0
    root_payload, folder_payload = json.loads(from_root.read_text()), json.loads(from_folder.read_text())
    assert root_payload["n"] == folder_payload["n"]
    assert folder_payload["tta"] is True and root_payload["tta"] is False


def test_evaluation_reorders_a_model_trained_with_another_class_order(runs, test_split):
    result = evaluation.evaluate_model(runs["reordered"], test_split, n_boot=0)
    assert result.class_names == CLASS_NAMES
    # The reordered columns equal the raw model outputs read back to front.
    from fer_utils import loading, models

    raw = models.predict(loading.load_model(runs["reordered"]).model, test_split.images)
    np.testing.assert_allclose(result.proba, raw[:, ::-1], rtol=1e-5)


def test_cli_reports_a_class_name_mismatch_on_one_line(runs, demo_root, capsys):
    status = main(["evaluate", "--model", str(runs["other_classes"]), "--data", str(demo_root)])
    # The message is the last line of stderr (a progress bar may precede it), with no traceback.
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert status == 2
    assert error.startswith("error: ")
    assert "contempt" in error and "neutral" in error
    assert "Traceback" not in capsys.readouterr().err


def test_cli_reports_a_missing_run(demo_root, tmp_path, capsys):
    status = main(["evaluate", "--model", str(tmp_path / "nothing"), "--data", str(demo_root)])
    assert status == 2
    assert "No run folder" in capsys.readouterr().err
    status = main(["compare", str(tmp_path / "nothing"), "--data", str(demo_root), "--out", str(tmp_path / "out")])
    assert status == 2
    assert "No model" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_compare_writes_summary_and_figures(runs, demo_root, tmp_path, capsys):
    out = tmp_path / "comparison"
    status = main(
        ["compare", str(runs["first"]), str(runs["second"]), "--data", str(demo_root), "--out", str(out),
         "--n-boot", "50", "--gradcam-images", "3"]
    )
    printed = capsys.readouterr().out
    assert status == 0
    assert "tiny-0" in printed and "tiny-1" in printed and "ensemble" in printed and str(out) in printed

    summary = json.loads((out / "summary.json").read_text())
    assert [row["model"] for row in summary["summary"]] == ["tiny-0", "tiny-1", "ensemble"]
    first = summary["summary"][0]
    assert first["training_time_s"] == 30.0 and first["parameters"] > 0 and first["images_per_s"] > 0
    assert first["accuracy_ci_low"] <= first["accuracy"] <= first["accuracy_ci_high"]
    assert {f"f1_{name}" for name in CLASS_NAMES} <= set(first)
    assert summary["summary"][2]["parameters"] == first["parameters"] + summary["summary"][1]["parameters"]
    pairs = {(row["model_a"], row["model_b"]) for row in summary["mcnemar"]}
    assert pairs == {("tiny-0", "tiny-1"), ("tiny-0", "ensemble"), ("tiny-1", "ensemble")}
    assert all(0.0 <= row["p_value"] <= row["p_value_holm"] <= 1.0 for row in summary["mcnemar"])
    assert summary["models"]["ensemble"]["members"] == ["tiny-0", "tiny-1"]

    markdown = (out / "summary.md").read_text()
    assert "| model |" in markdown and "McNemar" in markdown and "tiny-1" in markdown
    expected_figures = {
        "training_curves_tiny-0.png", "training_curves_tiny-1.png", "validation_curves.png",
        "confusion_matrices.png", "per_class_f1.png", "reliability_diagram.png",
        "misclassified_tiny-0.png", "misclassified_ensemble.png", "gradcam_tiny-0.png", "gradcam_tiny-1.png",
    }
    written = {path.name for path in out.glob("*.png")}
    assert expected_figures <= written
    assert set(summary["figures"].values()) == written
    for name in expected_figures:
        assert (out / name).read_bytes()[:4] == b"\x89PNG"


def test_compare_runs_ensemble_equals_the_average_of_the_runs(runs, test_split, tmp_path):
    table, results = report.compare_runs(
        [runs["first"], runs["second"]], test_split, tmp_path, report.ComparisonSettings(n_boot=20, write_figures=False)
    )
    assert list(table["model"]) == ["tiny-0", "tiny-1", "ensemble"]
    np.testing.assert_allclose(results["ensemble"].proba, (results["tiny-0"].proba + results["tiny-1"].proba) / 2)
    assert not list(tmp_path.glob("*.png"))
    assert (tmp_path / "summary.json").is_file() and (tmp_path / "summary.md").is_file()


def test_compare_expands_a_folder_of_runs_and_fails_early_on_a_mismatch(runs, test_split, tmp_path):
    # The runs' parent folder holds the mismatched run too: nothing is evaluated or written.
    with pytest.raises(ValueError, match="contempt"):
        report.compare_runs([runs["first"].parent], test_split, tmp_path / "out", report.ComparisonSettings(n_boot=0))
    assert not (tmp_path / "out" / "summary.json").exists()
    with pytest.raises(FileNotFoundError, match="No model"):
        report.compare_runs([tmp_path / "missing"], test_split, tmp_path / "out", report.ComparisonSettings(n_boot=0))

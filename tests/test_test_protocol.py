"""FER2013's own test protocol: PrivateTest (what papers report), PublicTest, and the whole test folder."""

import shutil

import numpy as np
import pytest

from fer_utils import data, evaluation, report


def test_demo_test_folder_splits_into_public_and_private_by_file_name(demo_root):
    whole = data.load_labelled(demo_root, split="test", cache=False, progress=False)
    usages = data.test_usages(demo_root)
    assert usages is not None and len(usages) == len(whole)
    assert set(usages) == {"public_test", "private_test"}
    private = data.load_labelled(demo_root, split="private_test", cache=False, progress=False)
    public = data.load_labelled(demo_root, split="public_test", cache=False, progress=False)
    assert len(private) + len(public) == len(whole)
    assert len(private) == int((usages == "private_test").sum())
    np.testing.assert_array_equal(private.images, whole.images[usages == "private_test"])
    np.testing.assert_array_equal(public.labels, whole.labels[usages == "public_test"])
    assert private.source.endswith(":private_test")


def test_renamed_test_files_give_the_whole_folder_only(demo_root, tmp_path):
    copy = tmp_path / "fer"
    shutil.copytree(demo_root, copy)
    first = next((copy / "test").rglob("*.png"))
    first.rename(first.with_name("renamed.png"))
    assert data.test_usages(copy) is None
    with pytest.raises(ValueError, match="PublicTest_ or PrivateTest_"):
        data.load_labelled(copy, split="private_test", cache=False, progress=False)


def test_csv_usages_follow_the_test_split_order(tmp_path):
    rng = np.random.default_rng(0)
    rows = ["emotion,pixels,Usage"]
    for usage, count in (("Training", 4), ("PublicTest", 3), ("PrivateTest", 2)):
        for index in range(count):
            pixels = " ".join(str(value) for value in rng.integers(0, 256, 48 * 48))
            rows.append(f"{index % 7},{pixels},{usage}")
    csv = tmp_path / "fer2013.csv"
    csv.write_text("\n".join(rows) + "\n")
    usages = data.test_usages(csv)
    assert list(usages) == ["public_test"] * 3 + ["private_test"] * 2
    assert len(data.load_labelled(csv, split="test", cache=False, progress=False)) == 5


def test_protocol_table_has_private_public_and_whole_rows_with_intervals():
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 7, 200)
    proba = rng.dirichlet(np.ones(7), 200)
    proba[np.arange(150), y_true[:150]] += 2.0
    proba /= proba.sum(axis=1, keepdims=True)
    result = evaluation.evaluate_proba(y_true, proba, [str(i) for i in range(7)], name="m", n_boot=0)
    usages = np.array(["public_test", "private_test"] * 100)
    table = report.protocol_table([result], usages, n_boot=50, seed=0)
    assert list(table["test set"]) == ["PrivateTest", "PublicTest", "whole test folder"]
    assert list(table["images"]) == [100, 100, 200]
    assert "comparable to papers" not in table  # a claim only the headline makes, and never for demo data
    assert all("[" in cell for cell in table["accuracy [95% CI]"])
    private_accuracy = float((proba.argmax(1) == y_true)[usages == "private_test"].mean())
    assert table["accuracy [95% CI]"][0].startswith(f"{private_accuracy:.3f}")
    assert list(report.protocol_table([result], None, n_boot=0)["test set"]) == ["whole test folder"]
    with pytest.raises(ValueError, match="usages has 3 entries"):
        report.protocol_table([result], usages[:3], n_boot=0)


def test_protocol_headline_names_privatetest_or_says_it_is_not_the_papers_split():
    rng = np.random.default_rng(2)
    y_true = rng.integers(0, 7, 60)
    result = evaluation.evaluate_proba(y_true, rng.dirichlet(np.ones(7), 60), [str(i) for i in range(7)], name="m", n_boot=0)
    with_names = report.protocol_table([result], np.array(["public_test", "private_test"] * 30), n_boot=0)
    assert "PrivateTest set" in report.protocol_headline(with_names, [result])
    assert "30 images here, 3,589 in FER2013" in report.protocol_headline(with_names, [result])
    without = report.protocol_table([result], None, n_boot=0)
    assert "not the split papers report" in report.protocol_headline(without, [result])
    demo = report.protocol_headline(with_names, [result], demo=True)
    assert "drawn faces, not FER2013" in demo and "comparable with nothing published" in demo
    assert "papers report" not in demo

"""The notebooks' text sources: every `notebooks/NN_name.ipynb` has a jupytext twin `NN_name.py`.

The `.py` (percent format) is what reviewers read and contributors edit; `python tools/notebooks.py
sync` reconciles the pair. These tests fail when a pair has drifted, when the shared frame (badges,
Colab/Kaggle install lines) is not the canonical one derived from pyproject.toml, and they check that
editing a `.py` and syncing changes that cell of the notebook and nothing else.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import notebooks as notebook_tools  # noqa: E402  (tools/notebooks.py)

PATHS = notebook_tools.notebook_paths()


def test_there_are_six_notebooks_and_no_generator():
    assert [path.name[:2] for path in PATHS] == ["01", "02", "03", "04", "05", "06"]
    assert not (ROOT / "tools" / "build_notebooks.py").exists()


@pytest.mark.parametrize("path", PATHS, ids=lambda path: path.stem)
def test_notebook_and_its_py_source_agree(path):
    assert notebook_tools.pair_problems(path) == []
    assert nbformat.read(path, as_version=4).metadata["jupytext"]["formats"] == "ipynb,py:percent"


@pytest.mark.parametrize("path", PATHS, ids=lambda path: path.stem)
def test_badges_and_setup_cell_are_the_canonical_ones(path):
    notebook = nbformat.read(path, as_version=4)
    assert notebook_tools.frame_problems(notebook, path.name) == []
    url = notebook_tools.repository_url()
    assert f'%pip install --quiet --no-deps "git+{url}.git"' in notebook.cells[notebook_tools.setup_cell_index(notebook)].source
    assert path.name in notebook.cells[0].source and "Open In Colab" in notebook.cells[0].source


@pytest.mark.parametrize("path", PATHS, ids=lambda path: path.stem)
def test_every_notebook_opens_with_badges_parameters_and_one_setup_cell(path):
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code[0].metadata.get("tags") == ["parameters"]
    for name in ("SMOKE", "DATA", "SEED", "RUNS_ON_DRIVE"):
        assert f"\n{name} = " in "\n" + code[0].source
    assert "notebook.setup(" in code[1].source
    assert sum("notebook.setup(" in cell.source for cell in code) == 1
    ids = [cell.id for cell in notebook.cells]
    assert len(set(ids)) == len(ids)


def test_editing_the_py_and_syncing_changes_that_cell_only(tmp_path):
    source = PATHS[0]
    for suffix in (".ipynb", ".py"):
        shutil.copy2(source.with_suffix(suffix), tmp_path / source.with_suffix(suffix).name)
    notebook_path, text_path = tmp_path / source.name, tmp_path / source.with_suffix(".py").name
    before = nbformat.read(notebook_path, as_version=4)
    old = "## Introduction"
    text_path.write_text(text_path.read_text().replace(f"# {old}\n", "# ## Introduction, edited\n", 1))
    # jupytext --sync lets the newer file win; make sure the edit is the newer one.
    stamp = notebook_path.stat().st_mtime + 10
    import os

    os.utime(text_path, (stamp, stamp))
    subprocess.run([sys.executable, "-m", "jupytext", "--sync", "--quiet", str(notebook_path)], check=True, cwd=tmp_path)
    after = nbformat.read(notebook_path, as_version=4)

    assert [cell.id for cell in after.cells] == [cell.id for cell in before.cells]
    changed = [i for i, (a, b) in enumerate(zip(before.cells, after.cells)) if a != b]
    assert len(changed) == 1
    assert after.cells[changed[0]].source.startswith("## Introduction, edited")
    assert after.metadata == before.metadata


def test_training_notebooks_share_their_code_and_differ_only_in_backbone_and_batchnorm_cells():
    vgg, resnet = (nbformat.read(ROOT / "notebooks" / name, as_version=4) for name in ("03_train_vgg16.ipynb", "04_train_resnet50.ipynb"))
    vgg_code = [cell.source for cell in vgg.cells if cell.cell_type == "code"]
    resnet_code = [cell.source for cell in resnet.cells if cell.cell_type == "code"]
    batch_norm = [source for source in resnet_code if "BatchNormalization" in source and source not in vgg_code]
    assert len(batch_norm) == 2  # which layers are BatchNorm; what trainable=False does to one
    assert vgg_code[1:] == [source for source in resnet_code[1:] if source not in batch_norm]
    differing = [(a, b) for a, b in zip(vgg_code[0].splitlines(), resnet_code[0].splitlines()) if a != b]
    assert differing == [('BACKBONE = "vgg16"', 'BACKBONE = "resnet50"')]
    assert "BatchNorm" in resnet.cells[1].source and "BatchNorm" not in vgg.cells[1].source


@pytest.mark.parametrize("name", ["03_train_vgg16.py", "04_train_resnet50.py"])
def test_training_notebooks_show_the_recipe_in_their_cells(name):
    """The recipe in view: model, freeze, compile, fit, unfreeze, recompile, fit, save (issue 30)."""
    text = (ROOT / "notebooks" / name).read_text()
    for needle in ("models.build_backbone(", "models.input_block(", "keras.layers.GlobalAveragePooling2D(",
                   'keras.layers.Dense(128, activation="relu"', "keras.layers.Dropout(", "keras.Model(inputs, outputs",
                   "backbone.trainable = False", ".summary(", "keras.optimizers.AdamW(learning_rate=LEARNING_RATE",
                   "learning_rate=schedule", "training.unfreeze_top(", "training.save_run("):
        assert needle in text, needle
    assert text.count(".compile(") == 2 and text.count(".fit(") == 2
    assert "\nLEARNING_RATE = 1e-3" in text and "\nFINETUNE_LEARNING_RATE = 1e-4" in text

"""tools/run_notebooks.py: `make experiment` resumes, keeping notebooks that finished with the same parameters."""

import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import run_notebooks  # noqa: E402


def _executed(path, **papermill):
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["papermill"] = papermill
    nbformat.write(notebook, path)
    return path


def test_finished_needs_an_end_time_no_exception_and_the_same_parameters(tmp_path):
    parameters = {"DATA": "/data/fer2013"}
    done = _executed(tmp_path / "a.ipynb", end_time="2026-12-01T10:00", exception=None, parameters=parameters)
    assert run_notebooks.finished(done, parameters)
    assert not run_notebooks.finished(done, {"DATA": "/elsewhere"})
    failed = _executed(tmp_path / "b.ipynb", end_time="2026-12-01T10:00", exception=True, parameters=parameters)
    assert not run_notebooks.finished(failed, parameters)
    unfinished = _executed(tmp_path / "c.ipynb", end_time=None, exception=None, parameters=parameters)
    assert not run_notebooks.finished(unfinished, parameters)
    assert not run_notebooks.finished(tmp_path / "missing.ipynb", parameters)
    (tmp_path / "broken.ipynb").write_text("{not json")
    assert not run_notebooks.finished(tmp_path / "broken.ipynb", parameters)


def test_progress_bars_are_stored_as_their_final_line():
    cell = nbformat.v4.new_code_cell("")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text) for text in ("\r[head]  50%", "\r[head] 100%", "\n[head] 2 epochs in 1 s\n")]
    notebook = nbformat.v4.new_notebook(cells=[cell])
    run_notebooks.coalesce_streams(notebook)
    assert [output.text for output in notebook.cells[0].outputs] == ["[head] 100%\n[head] 2 epochs in 1 s\n"]

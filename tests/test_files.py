"""Tests for fer_utils.files: atomic writes, JSON numbers and the cache folder."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from fer_utils import files


def test_atomic_write_path_renames_a_complete_file_and_cleans_up_a_failed_one(tmp_path):
    target = tmp_path / "model.keras"
    written = files.atomic_write_path(target, lambda temporary: Path(temporary).write_text("complete"), suffix=".tmp.keras")
    assert written == target and target.read_text() == "complete"
    assert target.stat().st_mode & 0o777 == files.FILE_MODE

    def fail(temporary):
        Path(temporary).write_text("half")
        raise RuntimeError("killed half-way")

    with pytest.raises(RuntimeError, match="half-way"):
        files.atomic_write_path(target, fail)
    assert target.read_text() == "complete"
    assert [path.name for path in tmp_path.iterdir()] == ["model.keras"]  # no temporary left behind


def test_atomic_write_json_takes_numpy_values_and_paths(tmp_path):
    path = files.atomic_write_json(tmp_path / "a.json", {"n": np.int64(3), "v": np.arange(2), "p": tmp_path})
    assert json.loads(path.read_text()) == {"n": 3, "v": [0, 1], "p": str(tmp_path)}


def test_json_number_gives_plain_numbers_and_none_for_non_finite():
    assert files.json_number(np.int64(3)) == 3 and type(files.json_number(np.int64(3))) is int
    assert files.json_number(np.float32(0.5)) == 0.5 and type(files.json_number(np.float32(0.5))) is float
    assert files.json_number(math.nan) is None and files.json_number(-math.inf) is None
    assert files.json_number(None) is None
    assert files.json_number(True) == 1.0  # a bool is not kept as an integer
    assert files.json_number("n/a") == "n/a"


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(files.CACHE_VARIABLE, str(tmp_path / "cache"))
    assert files.default_cache_dir() == tmp_path / "cache"
    monkeypatch.delenv(files.CACHE_VARIABLE)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert files.default_cache_dir() == tmp_path / "xdg" / "fer_utils"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert files.default_cache_dir() == Path.home() / ".cache" / "fer_utils"

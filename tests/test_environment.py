"""environment.yml (conda users) and pyproject.toml (pip users) must declare the same dependencies."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _normalise(requirement: str) -> str:
    return re.sub(r"\s+", "", requirement).lower()


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _conda_environment():
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def _pip_section(environment):
    sections = [entry["pip"] for entry in environment["dependencies"] if isinstance(entry, dict)]
    assert len(sections) == 1, "environment.yml must have exactly one pip section"
    return sections[0]


def _make_setup_extras() -> list[str]:
    """The extras `make setup` installs, from its `pip install -e ".[...]"` line."""
    match = re.search(r'-e "\.\[([\w,-]+)\]"', (ROOT / "Makefile").read_text())
    assert match, "make setup should install the package with extras: -e \".[test,...]\""
    return match.group(1).split(",")


def test_pip_section_matches_pyproject_dependencies_and_the_extras_make_installs():
    project = _pyproject()
    extras = project["optional-dependencies"]
    expected = {_normalise(r) for r in project["dependencies"]}
    for extra in _make_setup_extras():
        expected |= {_normalise(r) for r in extras[extra]}
    listed = {_normalise(r) for r in _pip_section(_conda_environment()) if not r.startswith("-e")}
    assert listed == expected, (
        f"Only in environment.yml: {sorted(listed - expected)}; only in pyproject.toml: {sorted(expected - listed)}"
    )


def test_environment_installs_the_package_with_the_extras_make_installs():
    assert f"-e .[{','.join(_make_setup_extras())}]" in _pip_section(_conda_environment())
    assert {"test", "notebooks", "export", "jax"} <= set(_make_setup_extras())


def test_tensorflow_comes_from_pip_not_conda():
    conda_packages = [d for d in _conda_environment()["dependencies"] if isinstance(d, str)]
    assert not any(name.startswith(("tensorflow", "keras")) for name in conda_packages)


def test_python_version_satisfies_requires_python():
    minimum = tuple(int(part) for part in _pyproject()["requires-python"].lstrip(">=").split("."))
    pinned = next(d for d in _conda_environment()["dependencies"] if isinstance(d, str) and d.startswith("python"))
    version = tuple(int(part) for part in pinned.split("=")[-1].split("."))
    assert version >= minimum

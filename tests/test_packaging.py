"""A regular (non-editable) install works from any directory: conf/ ships inside the wheel as
nnexp.conf, and `--config-dir` adds the user's own config groups."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import cli_env

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_carries_the_configs_and_runs_from_elsewhere(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path / "dist"), str(ROOT)],
        check=True, capture_output=True, env=cli_env(),
    )  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("nnexp-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "nnexp/conf/config.yaml" in names
    assert "nnexp/conf/model/deep.yaml" in names
    assert "nnexp/conf/experiment/init_sweep/he.yaml" in names  # an experiment's arm
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    env = cli_env() | {"PYTHONPATH": str(site)}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", "import nnexp; print(nnexp.__file__)"],
        cwd=elsewhere, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert proc.stdout.strip().startswith(str(site))  # the wheel's copy, not the source tree
    proc = subprocess.run(
        [sys.executable, "-m", "nnexp", "--cfg", "job", "model=deep", "optimizer=adam"],
        cwd=elsewhere, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "hidden:\n  - 32" in proc.stdout and "beta2: 0.999" in proc.stdout


def test_user_config_dir_adds_a_group_option(tmp_path):
    (tmp_path / "my_conf/model").mkdir(parents=True)
    (tmp_path / "my_conf/model/tiny_tanh.yaml").write_text(
        "defaults: [/schema/model/model@_here_, _self_]\nhidden: [3]\nactivation: tanh\n"
    )
    args = ["--config-dir", "my_conf", "model=tiny_tanh", "--cfg", "job"]
    proc = subprocess.run(
        [sys.executable, "-m", "nnexp", *args],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "hidden:\n  - 3\n  activation: tanh" in proc.stdout


def _pyproject() -> dict:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_config_directory_is_a_declared_package():
    # An undeclared one makes setuptools print a screen of warnings per directory at install
    # and a wheel drop its YAML files; conf/local/ (a user's own overrides) must never ship.
    declared = set(_pyproject()["tool"]["setuptools"]["packages"])
    conf = ROOT / "conf"
    found = {
        ".".join(("nnexp.conf", *d.relative_to(conf).parts)).rstrip(".")
        for d in [conf, *conf.rglob("*")]
        if d.is_dir() and any(d.glob("*.yaml")) and d.relative_to(conf).parts[:1] != ("local",)
    }
    assert found <= declared, sorted(found - declared)
    assert "nnexp.conf.local" not in declared
    assert {p for p in declared if p.startswith("nnexp.conf")} <= found


def test_lint_skips_every_virtualenv_in_the_tree(tmp_path):
    # A second virtualenv in the repository (the README's advice for the Ray launcher) must
    # not break `make lint`: ruff and mypy skip them by the names pyproject.toml lists.
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    bad = "import os, sys\nx=1;y = 2\n"  # unused imports, two statements on a line
    venvs = [".venv-ray", "venv", "venv311", "ray-venv", "env", ".env"]
    for name in venvs:
        (tmp_path / name / "lib").mkdir(parents=True)
        (tmp_path / name / "lib" / "mod.py").write_text(bad)
    (tmp_path / "mine.py").write_text(bad)  # and a file of the project's is still linted
    ruff = Path(sys.executable).with_name("ruff")
    proc = subprocess.run(
        [str(ruff), "check", "--no-cache", "--output-format", "concise", "."],
        cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    flagged = {line.split(":")[0] for line in proc.stdout.splitlines() if ".py:" in line}
    assert flagged == {"mine.py"}, proc.stdout
    # mypy: `make lint` checks the package (files = nnexp); even `mypy .` skips the venvs.
    (tmp_path / "nnexp").mkdir()
    (tmp_path / "nnexp" / "__init__.py").write_text("X: int = 1\n")
    for name in venvs:
        (tmp_path / name / "lib" / "typed.py").write_text("x: int = 'not an int'\n")
    mypy = Path(sys.executable).with_name("mypy")
    proc = subprocess.run(
        [str(mypy), "--cache-dir", str(tmp_path / ".mypy_cache"), "."],
        cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0 and "Success: no issues found in 2 source files" in proc.stdout, (
        proc.stdout + proc.stderr
    )
